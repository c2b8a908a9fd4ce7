"""kernels/conv.cu (im2col, col2im) and the convolution built on it with our GEMM (backends/cuda_kernels/conv.py)
against PyTorch (CPU, float64 on the same rounded inputs): F.unfold / F.fold, conv2d forward, and its input,
weight and bias gradients from autograd, with strides, padding, dilation, groups and every float dtype. GPU
cases are marked `cuda`; a subset runs on the CPU kernel emulator."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices
from oracle import oracle

from zigtensor.backends.cuda_kernels import conv as C

torch = oracle("torch")
F = torch.nn.functional if torch is not None else None

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# normwise tolerance against float64 (GEMM accumulation in float, one rounding to the dtype)
TOL = {F64: 1e-12, F32: 3e-5, F16: 3e-3, BF16: 2e-2}

# (N, C, H, W), C_out, kernel, stride, padding, dilation, groups
GEOMETRIES = [
    ((2, 3, 7, 9), 4, (3, 3), 1, 1, 1, 1),
    ((1, 1, 5, 5), 1, (1, 1), 1, 0, 1, 1),
    ((2, 4, 11, 8), 6, (3, 2), (2, 1), (1, 0), 1, 2),
    ((3, 6, 9, 10), 6, (3, 3), 2, 2, 2, 3),
    ((2, 8, 16, 16), 16, (5, 5), 1, 2, 1, 1),
    ((1, 4, 6, 6), 8, (2, 2), 2, 0, 1, 4),
    ((4, 16, 28, 28), 32, (3, 3), 1, 1, 1, 1),
]
DTYPES = (F32, F64, F16, BF16)
CASES = [(geo, dtype) for geo in GEOMETRIES for dtype in DTYPES]
EMULATED = [(GEOMETRIES[0], F32), (GEOMETRIES[2], F64), (GEOMETRIES[3], F32), (GEOMETRIES[5], BF16)]


def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))


def _check(name, got, want, tol):
    got = np.asarray(got).astype(np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(got - want).max())
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol} * max |want| {scale:.3g}"


def _inputs(rng, geo, dtype):
    shape, c_out, k, _, _, _, groups = geo
    x = rng.uniform(-1, 1, shape).astype(dtype)
    w = rng.uniform(-1, 1, (c_out, shape[1] // groups, *k)).astype(dtype)
    b = rng.uniform(-1, 1, (c_out,)).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_im2col_col2im(device, case, monkeypatch):
    geo, dtype = case
    dev = kernel_device(device, monkeypatch)
    shape, _, k, stride, padding, dilation, _ = geo
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, shape).astype(dtype)
    col = C.im2col(dev.asarray(x), k, stride, padding, dilation)
    want = F.unfold(_t(x), k, dilation=dilation, padding=padding, stride=stride).numpy()
    assert col.dtype == dtype
    np.testing.assert_array_equal(dev.numpy(col).astype(np.float64), want)  # a copy: exact
    g = rng.uniform(-1, 1, want.shape).astype(dtype)
    back = C.col2im(dev.asarray(g), shape, k, stride, padding, dilation)
    want_back = F.fold(_t(g), shape[2:], k, dilation=dilation, padding=padding, stride=stride).numpy()
    _check("col2im", dev.numpy(back), want_back, TOL[dtype])


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_conv2d_forward_backward(device, case, monkeypatch):
    geo, dtype = case
    dev = kernel_device(device, monkeypatch)
    shape, c_out, k, stride, padding, dilation, groups = geo
    rng = np.random.default_rng(2)
    x, w, b = _inputs(rng, geo, dtype)
    y = C.conv2d_forward(dev.asarray(x), dev.asarray(w), dev.asarray(b), stride, padding, dilation, groups)
    tx, tw, tb = (_t(v).requires_grad_() for v in (x, w, b))
    ty = F.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    assert y.dtype == dtype
    _check("forward", dev.numpy(y), ty.detach().numpy(), TOL[dtype])
    dy = rng.uniform(-1, 1, ty.shape).astype(dtype)
    ty.backward(_t(dy))
    dx, dw, db = C.conv2d_backward(dev.asarray(dy), dev.asarray(x), dev.asarray(w), stride, padding, dilation,
                                   groups)
    _check("dx", dev.numpy(dx), tx.grad.numpy(), TOL[dtype])
    _check("dweight", dev.numpy(dw), tw.grad.numpy(), TOL[dtype])
    _check("dbias", dev.numpy(db), tb.grad.numpy(), TOL[dtype])
    none_dx, only_dw, none_db = C.conv2d_backward(dev.asarray(dy), dev.asarray(x), dev.asarray(w), stride, padding,
                                                  dilation, groups, needs=(False, True, False))
    assert none_dx is None and none_db is None
    _check("dweight alone", dev.numpy(only_dw), tw.grad.numpy(), TOL[dtype])


@pytest.mark.parametrize("device,case", on_devices(["chunks"], ["chunks"]))
def test_batch_chunks(device, case, monkeypatch):
    """A col buffer larger than COL_BYTES is processed in batch chunks; the weight gradient sums over them."""
    dev = kernel_device(device, monkeypatch)
    geo = ((5, 2, 6, 6), 3, (3, 3), 1, 1, 1, 1)
    monkeypatch.setattr(C, "COL_BYTES", 2 * 18 * 36 * 4)  # two samples of float32 col per chunk
    rng = np.random.default_rng(3)
    x, w, b = _inputs(rng, geo, F32)
    y = C.conv2d_forward(dev.asarray(x), dev.asarray(w), None, 1, 1)
    tx, tw = _t(x).requires_grad_(), _t(w).requires_grad_()
    ty = F.conv2d(tx, tw, None, 1, 1)
    _check("forward", dev.numpy(y), ty.detach().numpy(), TOL[F32])
    dy = rng.uniform(-1, 1, ty.shape).astype(np.float32)
    ty.backward(_t(dy))
    dx, dw, db = C.conv2d_backward(dev.asarray(dy), dev.asarray(x), dev.asarray(w), 1, 1)
    _check("dx", dev.numpy(dx), tx.grad.numpy(), TOL[F32])
    _check("dweight", dev.numpy(dw), tw.grad.numpy(), TOL[F32])


def test_geometry_and_errors():
    g = C.geometry((2, 3, 7, 9), (3, 3), 2, 1, 1)
    assert (g["oh"], g["ow"], g["col_srow"], g["col_sn"]) == (4, 5, 20, 27 * 20)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        C.geometry((1, 1, 3, 3), (5, 5))
    with pytest.raises(ValueError, match="stride"):
        C.geometry((1, 1, 3, 3), (1, 1), stride=0)
    with pytest.raises(ValueError, match="pair of ints"):
        C.geometry((1, 1, 3, 3), (1, 1, 1))
    x, w = np.zeros((1, 4, 5, 5), np.float32), np.zeros((6, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="groups"):
        C.conv2d_forward(x, w, groups=2)
    with pytest.raises(TypeError, match="weight dtype"):
        C.conv2d_forward(x, np.zeros((6, 4, 3, 3), np.float64))
    with pytest.raises(TypeError, match="float16, bfloat16"):
        C.im2col(np.zeros((1, 1, 3, 3), np.int32), 1)
    with pytest.raises(ValueError, match="expected col of shape"):
        C.col2im(np.zeros((1, 9, 5), np.float32), (1, 1, 3, 3), (3, 3), padding=1)
