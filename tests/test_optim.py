"""Optimizers against PyTorch: the same gradients give the same parameters, step after step."""

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


@pytest.mark.parametrize("name,kwargs", CASES[:1] + CASES[3:4])
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
