"""kernels/optim.cu through its launcher (backends/cuda_kernels/optim.py) against torch.optim (CPU, float64):
several steps of SGD (momentum, dampening, Nesterov, weight decay, maximize) and Adam / AdamW (amsgrad,
maximize) over many tensors at once, tensors spanning several chunks, odd sizes, float64 parameters, and
bfloat16 / float16 parameters with float32 master copies (with a gradient scale)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices
from oracle import oracle

from zigtensor.backends.cuda_kernels import optim

torch = oracle("torch")

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)
SIZES = [(3,), (7, 11), (1001,), (70001,), (2, 65536)]  # last two: several 65536-element chunks
EMU_SIZES = [(3,), (7, 11), (1500,)]  # with 512-element chunks (see _sizes)
STEPS = 3


def _sizes(dev, monkeypatch):
    """The tensor sizes of a case; under the emulator with small chunks, so that small tensors span several."""
    if dev.emulated:
        monkeypatch.setattr(optim, "CHUNK", 512)
        return EMU_SIZES
    return SIZES


def _run(dev, sizes, dtype, make_opt, step_fn, masters: bool, grad_scale: float = 1.0, seed: int = 0):
    """STEPS steps of our kernel and of torch (float64) on the same gradients; returns (ours, torch's) params
    (the masters' values when there are masters) and our parameters."""
    rng = np.random.default_rng(seed)
    init = [rng.uniform(-1, 1, s) for s in sizes]
    ref = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in init]
    opt = make_opt(ref)
    state_dtype = F64 if dtype == F64 else F32
    params = [dev.asarray(a.astype(dtype)) for a in init]
    master = [dev.asarray(a.astype(dtype).astype(F32)) for a in init] if masters else None
    if masters:  # torch starts from the same (rounded) values the masters hold
        with torch.no_grad():
            for r, a in zip(ref, init):
                r.copy_(torch.from_numpy(a.astype(dtype).astype(np.float64)))
    state = {"zeros": lambda: [dev.xp.zeros(s, dtype=state_dtype) for s in sizes]}
    for t in range(1, STEPS + 1):
        grads = [rng.uniform(-1, 1, s).astype(dtype) for s in sizes]
        for r, g in zip(ref, grads):
            r.grad = torch.from_numpy(g.astype(np.float64) * grad_scale)
        opt.step()
        step_fn([dev.asarray(g) for g in grads], params, master, state, t)
    ours = [dev.numpy(m) for m in master] if masters else [dev.numpy(p) for p in params]
    return ours, [r.detach().numpy() for r in ref], [dev.numpy(p) for p in params]


SGD_CASES = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
             dict(momentum=0.8, nesterov=True, weight_decay=0.1), dict(momentum=0.9, maximize=True)]
EMU_SGD = [SGD_CASES[1], SGD_CASES[3]]



@pytest.mark.parametrize("device,case", on_devices([(c, F32) for c in SGD_CASES] + [(SGD_CASES[2], F64)],
                                                   [(c, F32) for c in EMU_SGD]))
def test_sgd_matches_torch(device, case, monkeypatch):
    kw, dtype = case
    dev = kernel_device(device, monkeypatch)
    sizes = _sizes(dev, monkeypatch)

    def step(grads, params, masters, state, t):
        if kw.get("momentum"):
            state.setdefault("buf", state["zeros"]())
        optim.sgd_step(params, grads, state.get("buf"), t == 1, lr=0.1, **kw)

    ours, want, _ = _run(dev, sizes, dtype, lambda ps: torch.optim.SGD(ps, lr=0.1, **kw), step, masters=False)
    for o, w in zip(ours, want):
        np.testing.assert_allclose(o, w, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-6 if dtype == F32 else 1e-13)


ADAM_CASES = [dict(), dict(weight_decay=0.1), dict(decoupled=True, weight_decay=0.1), dict(amsgrad=True),
              dict(decoupled=True, weight_decay=0.01, amsgrad=True, maximize=True)]
EMU_ADAM = [ADAM_CASES[2], ADAM_CASES[3]]


def _adam_step(kw):
    def step(grads, params, masters, state, t):
        m = state.setdefault("m", state["zeros"]())
        v = state.setdefault("v", state["zeros"]())
        vmax = state.setdefault("vmax", state["zeros"]()) if kw.get("amsgrad") else None
        optim.adam_step(params, grads, m, v, vmax, t, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, masters=masters,
                        **kw)
    return step


def _torch_adam(kw):
    cls = torch.optim.AdamW if kw.get("decoupled") else torch.optim.Adam
    args = {k: v for k, v in kw.items() if k in ("weight_decay", "amsgrad", "maximize")}
    args.setdefault("weight_decay", 0.0)
    return lambda ps: cls(ps, lr=0.01, betas=(0.9, 0.99), eps=1e-8, **args)


@pytest.mark.parametrize("device,case", on_devices([(c, F32) for c in ADAM_CASES] + [(ADAM_CASES[2], F64)],
                                                   [(c, F32) for c in EMU_ADAM]))
def test_adam_matches_torch(device, case, monkeypatch):
    kw, dtype = case
    dev = kernel_device(device, monkeypatch)
    sizes = _sizes(dev, monkeypatch)
    ours, want, _ = _run(dev, sizes, dtype, _torch_adam(kw), _adam_step(kw), masters=False)
    for o, w in zip(ours, want):
        np.testing.assert_allclose(o, w, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-6 if dtype == F32 else 1e-13)


@pytest.mark.parametrize("device,case", on_devices([BF16, F16], [BF16]))
def test_low_precision_params_with_float32_masters(device, case, monkeypatch):
    dtype = case
    dev = kernel_device(device, monkeypatch)
    sizes = _sizes(dev, monkeypatch)
    kw = dict(decoupled=True, weight_decay=0.01, grad_scale=0.5)
    ours, want, params = _run(dev, sizes, dtype, _torch_adam(kw), _adam_step(kw), masters=True, grad_scale=0.5)
    for o, w, p in zip(ours, want, params):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)  # the float32 masters follow torch
        np.testing.assert_array_equal(p, o.astype(dtype))  # the parameters are the masters rounded


@pytest.mark.parametrize("device,case", on_devices(["groups"], ["groups"]))
def test_mixed_dtypes_in_one_call(device, case, monkeypatch):
    """float32 and float64 parameters in one list: one launch per dtype group, each correct."""
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(3)
    init = [rng.uniform(-1, 1, 5).astype(F32), rng.uniform(-1, 1, 6), rng.uniform(-1, 1, 7).astype(F32)]
    grads = [rng.uniform(-1, 1, a.shape).astype(a.dtype) for a in init]
    params = [dev.asarray(a) for a in init]
    optim.sgd_step(params, [dev.asarray(g) for g in grads], lr=0.5)
    for p, a, g in zip(params, init, grads):
        np.testing.assert_allclose(dev.numpy(p), a - 0.5 * g.astype(a.dtype), rtol=1e-6)


def test_bad_arguments_name_the_problem():
    p = [np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="momentum=0.9 needs momentum_buffers"):
        optim.sgd_step(p, p, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="2 grads for 1 params"):
        optim.sgd_step(p, p * 2, lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[0\] has shape \(4,\)"):
        optim.sgd_step(p, [np.zeros(4, np.float32)], lr=0.1)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] must be float32"):
        optim.adam_step(p, p, [np.zeros(3, np.float16)], p, None, 1, lr=0.1)
    with pytest.raises(ValueError, match="step must be an int >= 1"):
        optim.adam_step(p, p, p, p, None, 0, lr=0.1)
    with pytest.raises(ValueError, match="amsgrad needs max_exp_avg_sqs"):
        optim.adam_step(p, p, p, p, None, 1, lr=0.1, amsgrad=True)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        optim.sgd_step(p, p, lr=float("nan"))
