"""kernels/norm.cu through its launcher (backends/cuda_kernels/norm.py) against PyTorch (CPU, float64 on the
same rounded inputs): LayerNorm and RMSNorm forward (y, mean, rstd) and backward (dx, dw, db) for every
kernel variant (warp, block, looped; 16-byte and scalar access), every dtype, with and without weight and
bias, a bfloat16 input with float32 parameters, odd sizes; dw/db reproducible bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cuda_util import BF16, FLOAT_DTYPES, kernel_device, on_devices, rounded, tolerance
from oracle import oracle

from zigtensor.backends.cuda_kernels import norm

torch = oracle("torch")

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)

# (x shape, normalized shape): warp rows, block rows, looped rows (past the register caches), odd lengths,
# two normalized dims
SHAPES = [((1, 1), (1,)), ((3, 7), (7,)), ((16, 64), (64,)), ((5, 101), (101,)), ((33, 768), (768,)),
          ((4, 1023), (1023,)), ((2, 4096), (4096,)), ((3, 9000), (9000,)), ((2, 20000), (20000,)),
          ((2, 3, 5, 6), (5, 6))]
AFFINE = ["wb", "w", "none"]
CASES = [(x, n, dtype, dtype, affine) for x, n in SHAPES for dtype in FLOAT_DTYPES for affine in AFFINE]
CASES += [(x, n, BF16, F32, "wb") for x, n in SHAPES[2:8]]  # bf16 activations, float32 parameters
EMULATED = [((16, 64), (64,), F32, F32, "wb"), ((5, 1100), (1100,), BF16, BF16, "w"),
            ((5, 101), (101,), F16, F16, "none"), ((3, 300), (300,), F64, F64, "wb"),
            ((6, 96), (96,), BF16, F32, "wb"), ((2, 17000), (17000,), F32, F32, "wb"),
            ((2, 3, 5, 6), (5, 6), F32, F32, "w")]


def _inputs(case, seed):
    shape, nshape, dtype, wdtype, affine = case
    rng = np.random.default_rng(seed)
    x = rounded(rng, shape, dtype, -3, 5)  # an offset mean, as real activations have
    w = rounded(rng, nshape, wdtype, 0.5, 1.5) if affine != "none" else None
    b = rounded(rng, nshape, wdtype, -1, 1) if affine == "wb" else None
    dy = rounded(rng, shape, dtype, -1, 1)
    return x, w, b, dy


def _t(a, grad=False):
    return None if a is None else torch.from_numpy(a.astype(np.float64)).requires_grad_(grad)


def _check(name, got, want, dtype, scale=4.0, magnitude=None):
    rtol, atol = tolerance(dtype)
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    got = np.asarray(got).astype(np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    mag = float(np.abs(want).max()) if magnitude is None and want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=scale * rtol, atol=scale * max(atol, rtol * mag), err_msg=name)


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_layer_norm(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x, w, b, dy = _inputs(case, 0)
    dtype, nshape = case[2], case[1]
    d = [None if a is None else dev.asarray(a) for a in (x, w, b, dy)]
    y, mean, rstd = norm.layer_norm_forward(d[0], d[1], d[2], 1e-5, normalized_shape=nshape)
    tx, tw, tb = _t(x, True), _t(w, True), _t(b, True)
    ty, tmean, trstd = torch.native_layer_norm(tx, nshape, tw, tb, 1e-5)
    lead = x.shape[:x.ndim - len(nshape)]
    assert y.dtype == dtype and mean.shape == lead and rstd.shape == lead
    _check("y", dev.numpy(y), ty, dtype)
    _check("mean", dev.numpy(mean), tmean.reshape(lead), F32 if dtype != F64 else F64, magnitude=1.0)
    _check("rstd", dev.numpy(rstd), trstd.reshape(lead), F32 if dtype != F64 else F64, scale=40.0)

    dx, dw, db = norm.layer_norm_backward(d[3], d[0], d[1], mean, rstd, normalized_shape=nshape,
                                          has_bias=b is not None)
    ty.backward(_t(dy))
    _check("dx", dev.numpy(dx), tx.grad, dtype, scale=8.0)
    assert (dw is None) == (w is None) and (db is None) == (b is None)
    wdtype = case[3]
    rows = math.prod(lead)
    if w is not None:
        _check("dw", dev.numpy(dw), tw.grad, wdtype, scale=8.0 * max(1.0, math.sqrt(rows) / 8))
    if b is not None:
        _check("db", dev.numpy(db), tb.grad, wdtype, scale=8.0 * max(1.0, math.sqrt(rows) / 8))


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_rms_norm(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x, w, _, dy = _inputs(case, 1)
    dtype, nshape = case[2], case[1]
    eps = 1e-6
    d = [None if a is None else dev.asarray(a) for a in (x, w, dy)]
    y, rstd = norm.rms_norm_forward(d[0], d[1], eps, normalized_shape=nshape)
    tx, tw = _t(x, True), _t(w, True)
    ty = torch.nn.functional.rms_norm(tx, nshape, tw, eps)
    lead = x.shape[:x.ndim - len(nshape)]
    dims = tuple(range(x.ndim - len(nshape), x.ndim))
    want_rstd = torch.rsqrt(tx.detach().pow(2).mean(dims) + eps)
    _check("y", dev.numpy(y), ty, dtype)
    _check("rstd", dev.numpy(rstd), want_rstd.reshape(lead), F32 if dtype != F64 else F64, scale=40.0)

    dx, dw = norm.rms_norm_backward(d[2], d[0], d[1], rstd, normalized_shape=nshape)
    ty.backward(_t(dy))
    _check("dx", dev.numpy(dx), tx.grad, dtype, scale=8.0)
    assert (dw is None) == (w is None)
    if w is not None:
        rows = math.prod(lead)
        _check("dw", dev.numpy(dw), tw.grad, case[3], scale=8.0 * max(1.0, math.sqrt(rows) / 8))


@pytest.mark.parametrize("device,case", on_devices([(300, 64), (40, 3000)], [(37, 64)]))
def test_param_grads_are_deterministic(device, case, monkeypatch):
    """dw, db come from fixed-order sums (no float atomics): two runs give the same bits."""
    rows, cols = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(5)
    x, dy = dev.asarray(rounded(rng, (rows, cols), F32)), dev.asarray(rounded(rng, (rows, cols), F32))
    w, b = dev.asarray(rounded(rng, (cols,), F32)), dev.asarray(rounded(rng, (cols,), F32))
    _, mean, rstd = norm.layer_norm_forward(x, w, b, 1e-5)
    runs = [norm.layer_norm_backward(dy, x, w, mean, rstd) for _ in range(2)]
    for a, b_ in zip(runs[0], runs[1]):
        assert np.array_equal(dev.numpy(a), dev.numpy(b_))


def test_plan_caps_the_backward_registers():
    assert norm.plan(768, 4, np.float32) == ("warp", 128, 8)
    assert norm.plan(512, 4, np.float32, backward=True) == ("warp", 128, 4)  # 16 floats of each array
    assert norm.plan(600, 4, np.float32, backward=True) == ("block", 256, 1)
    assert norm.plan(1024, 8, np.float32, backward=True) == ("block", 128, 1)
    assert norm.plan(9000, 4, np.float32, backward=True) == ("looped", 512, 1)
    assert norm.plan(300, 2, np.float64, backward=True) == ("block", 256, 1)


def test_bad_inputs_name_the_problem():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"normalized_shape \(4,\) does not match"):
        norm.layer_norm_forward(x, None, None, normalized_shape=4)
    with pytest.raises(ValueError, match="weight of shape"):
        norm.layer_norm_forward(x, np.ones(4, np.float32), None)
    with pytest.raises(TypeError, match="weight and bias must have one dtype"):
        norm.layer_norm_forward(x, np.ones(3, np.float32), np.ones(3, np.float16))
    with pytest.raises(ValueError, match="eps must be"):
        norm.rms_norm_forward(x, None, -1.0)
    with pytest.raises(ValueError, match="rstd must be the forward's"):
        norm.rms_norm_backward(x, x, None, np.zeros(3, np.float32))


@pytest.mark.parametrize("device,case", on_devices([(6, 200), (40, 64)], [(6, 200)]))
def test_looped_baseline_on_short_rows(device, case, monkeypatch):
    """variant='looped' (the benchmarks' baseline) agrees with the cached kernels on rows they take."""
    rows, cols = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(7)
    x, dy = (dev.asarray(rounded(rng, (rows, cols), F32)) for _ in range(2))
    w, b = (dev.asarray(rounded(rng, (cols,), F32)) for _ in range(2))
    got = norm.layer_norm_forward(x, w, b, variant="looped")
    want = norm.layer_norm_forward(x, w, b)
    for g, v in zip(got, want):
        np.testing.assert_allclose(dev.numpy(g), dev.numpy(v), rtol=1e-5, atol=1e-6)
    got = norm.layer_norm_backward(dy, x, w, want[1], want[2], variant="looped")
    for g, v in zip(got, norm.layer_norm_backward(dy, x, w, want[1], want[2])):
        np.testing.assert_allclose(dev.numpy(g), dev.numpy(v), rtol=1e-5, atol=1e-5)
    got = norm.rms_norm_backward(dy, x, w, norm.rms_norm_forward(x, w, 1e-6)[1], variant="looped")
    want = norm.rms_norm_backward(dy, x, w, norm.rms_norm_forward(x, w, 1e-6)[1])
    for g, v in zip(got, want):
        np.testing.assert_allclose(dev.numpy(g), dev.numpy(v), rtol=1e-5, atol=1e-5)
