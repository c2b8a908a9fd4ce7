"""Optimizers against PyTorch: the same gradients give the same parameters, step after step."""

import pickle

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt

CASES = [
    ("Adam", {}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.05}),  # 6 steps: rho_t passes 5 at step 6, so both branches run
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "weight_decay": 0.1, "maximize": True}),
]


def _run(name, kwargs, steps=6, resume_at=None):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    b0 = rng.standard_normal(3).astype(np.float32)
    zp = [zt.tensor(w0, requires_grad=True), zt.tensor(b0, requires_grad=True)]
    tp = [torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)]
    zo, to = getattr(zt.optim, name)(zp, **kwargs), getattr(torch.optim, name)(tp, **kwargs)
    for step in range(steps):
        if step == resume_at:  # a fresh optimizer continues exactly from the saved state
            sd = zo.state_dict()
            zo = getattr(zt.optim, name)(zp, **kwargs)
            zo.load_state_dict(sd)
        for z, t in zip(zp, tp):
            g = rng.standard_normal(z.shape).astype(np.float32)
            z.grad, t.grad = zt.tensor(g), torch.tensor(g)
        zo.step()
        to.step()
    return zp, tp


@pytest.mark.parametrize("name,kwargs", CASES)
def test_matches_pytorch(name, kwargs):
    zp, tp = _run(name, kwargs)
    for z, t in zip(zp, tp):
        np.testing.assert_allclose(z.numpy(), t.detach().numpy(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs", CASES[:1] + CASES[3:4] + CASES[8:9] + CASES[10:11])
def test_state_dict_resumes_exactly(name, kwargs):
    zp, _ = _run(name, kwargs, resume_at=3)
    ref, _ = _run(name, kwargs)
    for a, b in zip(zp, ref):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_zero_grad_and_skips_params_without_grad():
    p, q = zt.ones(2, requires_grad=True), zt.ones(2, requires_grad=True)
    opt = zt.optim.Adam([p, q], lr=0.1)
    (p * 2).sum().backward()
    opt.step()
    assert not np.allclose(p.numpy(), 1) and np.allclose(q.numpy(), 1)
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.numpy().any()
    opt.zero_grad()
    assert p.grad is None


def test_param_groups_have_their_own_options():
    p, q = zt.ones(2, requires_grad=True), zt.ones(2, requires_grad=True)
    opt = zt.optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -1.0}, "learning rate -1.0"),
    ({"betas": (1.0, 0.9)}, "beta parameter at index 0 1.0"),
    ({"betas": (0.9, -0.1)}, "beta parameter at index 1 -0.1"),
    ({"eps": -1e-8}, "epsilon value -1e-08"),
    ({"weight_decay": -0.1}, "weight_decay value -0.1"),
])
def test_bad_hyperparameters_are_quoted(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zt.optim.Adam([zt.ones(1, requires_grad=True)], **kwargs)


def test_rejects_empty_and_non_leaf():
    with pytest.raises(ValueError, match="empty parameter list"):
        zt.optim.Adam([])
    x = zt.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        zt.optim.Adam([x * 2])


# ---------------------------------------------------------------------------------- a 2-layer MLP, 25 steps
# Both frameworks train the same float64 MLP, each with its own autograd and optimizer; the parameters must
# agree after every step. Weights and biases are two parameter groups, the biases with their own lr.
MLP_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.3, "centered": True, "momentum": 0.5, "eps": 1e-6}),
    ("RMSprop", {"lr": 0.01, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.2,
                 "eps": 1e-6}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "maximize": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Lion", {"lr": 0.01}),
    ("Lion", {"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.5}),
]
MLP_STEPS, BIAS_LR = 25, 0.02


def _mlp_problem():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 5)), rng.standard_normal((16, 3))
    init = [rng.standard_normal((5, 8)) * 0.5, rng.standard_normal(8) * 0.1,
            rng.standard_normal((8, 3)) * 0.5, rng.standard_normal(3) * 0.1]
    return x, y, init


def _mlp_loss(params, x, y):  # the same code for torch and zigtensor tensors
    w1, b1, w2, b2 = params
    return (((x @ w1 + b1).tanh() @ w2 + b2 - y) ** 2).mean()


def _groups(params):
    return [{"params": [params[0], params[2]]}, {"params": [params[1], params[3]], "lr": BIAS_LR}]


def _zt_train(name, kwargs, steps=MLP_STEPS, save_at=None):
    """Parameters after each step; with save_at, also (parameters, optimizer state) saved after that step."""
    x, y, init = _mlp_problem()
    x, y = zt.tensor(x), zt.tensor(y)
    params = [zt.tensor(a, requires_grad=True) for a in init]
    opt = getattr(zt.optim, name)(_groups(params), **kwargs)
    history, saved = [], None
    for step in range(steps):
        opt.zero_grad()
        _mlp_loss(params, x, y).backward()
        opt.step()
        history.append([p.numpy().copy() for p in params])
        if step == save_at:
            saved = ([p.numpy().copy() for p in params], pickle.dumps(opt.state_dict()))
    return history, saved


def _lion_reference(params, grads, state, groups, betas=(0.9, 0.99), weight_decay=0.0):
    """The paper's Algorithm 2, written out on NumPy arrays (PyTorch has no Lion)."""
    b1, b2 = betas
    for i, (p, g) in enumerate(zip(params, grads)):
        lr = groups[i]
        m = state.setdefault(i, np.zeros_like(p))
        c = b1 * m + (1 - b1) * g
        p -= lr * (np.sign(c) + weight_decay * p)
        state[i] = b2 * m + (1 - b2) * g


def _torch_train(name, kwargs, steps=MLP_STEPS):
    x, y, init = _mlp_problem()
    x, y = torch.tensor(x), torch.tensor(y)
    params = [torch.tensor(a, requires_grad=True) for a in init]
    if name == "Lion":
        lion_state, lrs = {}, [kwargs["lr"], BIAS_LR, kwargs["lr"], BIAS_LR]
        extra = {k: v for k, v in kwargs.items() if k != "lr"}
    else:
        opt = getattr(torch.optim, name)(_groups(params), **kwargs)
    history = []
    for _ in range(steps):
        for p in params:
            p.grad = None
        _mlp_loss(params, x, y).backward()
        if name == "Lion":
            with torch.no_grad():
                arrays = [p.numpy() for p in params]  # shares memory: updated in place
                _lion_reference(arrays, [p.grad.numpy() for p in params], lion_state, lrs, **extra)
        else:
            opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def _case_id(case):
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("name,kwargs", MLP_CASES, ids=[_case_id(c) for c in MLP_CASES])
def test_mlp_training_matches_pytorch(name, kwargs):
    ours, _ = _zt_train(name, kwargs)
    ref = _torch_train(name, kwargs)
    assert not np.allclose(ours[-1][0], _mlp_problem()[2][0])  # it did train
    for step, (zs, ts) in enumerate(zip(ours, ref)):
        for i, (z, t) in enumerate(zip(zs, ts)):
            np.testing.assert_allclose(z, t, rtol=1e-9, atol=1e-12, err_msg=f"step {step}, parameter {i}")


@pytest.mark.parametrize("name,kwargs", MLP_CASES, ids=[_case_id(c) for c in MLP_CASES])
def test_mlp_resume_from_state_dict_is_exact(name, kwargs):
    """Save after step 9, let the first run go on (mutating its state), restore into a fresh optimizer."""
    full, (saved_params, saved_state) = _zt_train(name, kwargs, save_at=9)
    x, y, _ = _mlp_problem()
    x, y = zt.tensor(x), zt.tensor(y)
    params = [zt.tensor(a, requires_grad=True) for a in saved_params]
    opt = getattr(zt.optim, name)(_groups(params), lr=123.0)  # lr is restored from the state
    opt.load_state_dict(pickle.loads(saved_state))
    for step in range(10, MLP_STEPS):
        opt.zero_grad()
        _mlp_loss(params, x, y).backward()
        opt.step()
        for z, want in zip(params, full[step]):
            np.testing.assert_array_equal(z.numpy(), want, err_msg=f"step {step}")


# ---------------------------------------------------------------------------------- float32, same gradients
CASES_F32 = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adam", {"lr": 0.05, "maximize": True}),
]


@pytest.mark.parametrize("name,kwargs", CASES_F32)
def test_float32_matches_pytorch(name, kwargs):
    zp, tp = _run(name, kwargs, steps=20)
    for z, t in zip(zp, tp):
        assert z.dtype == zt.float32
        np.testing.assert_allclose(z.numpy(), t.detach().numpy(), atol=1e-6, rtol=1e-5)


def test_lion_float32_keeps_dtype_and_moves_by_lr():
    p = zt.zeros(5, requires_grad=True)
    opt = zt.optim.Lion([p], lr=0.5)
    p.grad = zt.tensor([1.0, -2.0, 0.0, 3.0, -0.1])
    opt.step()
    assert p.dtype == zt.float32
    np.testing.assert_array_equal(p.numpy(), [-0.5, 0.5, 0.0, -0.5, 0.5])


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adagrad", "Adam", "AdamW"])
def test_defaults_match_pytorch(name):
    p = torch.zeros(1, requires_grad=True)
    ours = getattr(zt.optim, name)([zt.zeros(1, requires_grad=True)]).defaults
    theirs = getattr(torch.optim, name)([p]).defaults
    for k, v in ours.items():
        assert theirs[k] == v, f"{name} default {k}: {v!r}, PyTorch {theirs[k]!r}"


def test_sgd_first_momentum_buffer_is_the_gradient():
    p = zt.zeros(2, requires_grad=True)
    opt = zt.optim.SGD([p], lr=1.0, momentum=0.9, dampening=0.5)
    p.grad = zt.tensor([1.0, 2.0])
    opt.step()
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"].numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(p.numpy(), [-1.0, -2.0])
    opt.step()  # buf = 0.9 buf + 0.5 g
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(), [1.4, 2.8])


def test_sgd_without_momentum_keeps_no_buffer():
    p = zt.zeros(2, requires_grad=True)
    opt = zt.optim.SGD([p], lr=0.5)
    p.grad = zt.ones(2)
    opt.step()
    assert opt.state[p]["momentum_buffer"] is None
    opt.param_groups[0]["momentum"] = 0.9
    with pytest.raises(RuntimeError, match="momentum was turned on after the first step"):
        opt.step()


@pytest.mark.parametrize("name,kwargs,match", [
    ("SGD", {"lr": -0.1}, "SGD: invalid learning rate -0.1"),
    ("SGD", {"momentum": -0.5}, "momentum value -0.5"),
    ("SGD", {"weight_decay": -1}, "weight_decay value -1"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum > 0.*momentum=0"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening=0.1"),
    ("RMSprop", {"alpha": -0.1}, "RMSprop: invalid alpha value -0.1"),
    ("RMSprop", {"eps": -1.0}, "epsilon value -1.0"),
    ("RMSprop", {"momentum": -0.9}, "momentum value -0.9"),
    ("Adagrad", {"lr_decay": -1}, "Adagrad: invalid lr_decay value -1"),
    ("Adagrad", {"initial_accumulator_value": -0.5}, "initial_accumulator_value -0.5"),
    ("Adagrad", {"eps": -1e-10}, "epsilon value -1e-10"),
    ("Lion", {"lr": -1e-4}, "Lion: invalid learning rate -0.0001"),
    ("Lion", {"betas": (1.0, 0.9)}, "beta parameter at index 0 1.0"),
    ("Lion", {"betas": (0.9, 1.5)}, "beta parameter at index 1 1.5"),
    ("Lion", {"weight_decay": -0.1}, "weight_decay value -0.1"),
])
def test_new_optimizers_quote_bad_hyperparameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(zt.optim, name)([zt.ones(1, requires_grad=True)], **kwargs)
