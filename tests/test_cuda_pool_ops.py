"""The pooling ops (F.max_pool1d/2d, F.avg_pool1d/2d) on 'cuda' run kernels/pool.cu forward and backward, and
agree with PyTorch (CPU, float64 on the same rounded inputs): values, return_indices, gradients, gradients of
gradients; odd sizes, padding, stride != kernel, ceil_mode, dilation, count_include_pad, divisor_override,
float16/bfloat16/float64, unbatched and non-contiguous inputs. Cases pool.cu does not take (integer dtypes)
keep the composed ops and match the CPU.

Each test runs on the emulated backend (tests/emulated_cuda.py: kernels under g++, no GPU), where the kernel
launches are counted to show that the kernels ran and the composition did not, and on a real GPU where there is
one (no launch counts there).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from cuda_util import tolerance
from oracle import torch

import zigtensor as zt
import zigtensor.nn.functional as F

TF = torch.nn.functional
BF16 = np.dtype(ml_dtypes.bfloat16)
ZT_DTYPES = {np.dtype(np.float32): zt.float32, np.dtype(np.float64): zt.float64,
             np.dtype(np.float16): zt.float16, BF16: zt.bfloat16}


def _launches(request) -> dict | None:
    """The emulator's kernel launch counts since the last _reset (None on a real GPU, which has no counter)."""
    import emulated_cuda

    return dict(emulated_cuda.LAUNCHES) if "emulator" in request.node.name else None


def _reset() -> None:
    import emulated_cuda

    emulated_cuda.LAUNCHES.clear()


def _rounded(shape, dtype, seed: int) -> np.ndarray:
    """Normal values rounded to dtype (exactly representable there), held as float64."""
    return np.random.default_rng(seed).normal(size=shape).astype(dtype).astype(np.float64)


def _on_cuda(a: np.ndarray, dtype, device, grad: bool = False):
    return zt.tensor(a.astype(dtype), device=device, requires_grad=grad)


def _close(name, got, want, dtype) -> None:
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(np.asarray(got.numpy(), np.float64), want.detach().numpy(), rtol=4 * rtol,
                               atol=4 * atol, err_msg=name)


MAX_CASES = [
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1), np.float32),  # odd sizes, padding
    ((1, 2, 10, 11), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True), np.float32),
    ((2, 2, 11, 11), dict(kernel_size=2, dilation=(2, 3), ceil_mode=True), np.float32),
    ((2, 3, 9, 9), dict(kernel_size=2, stride=3), np.float32),  # stride > kernel: rows in no window
    ((1, 1, 5, 5), dict(kernel_size=5, padding=2), np.float32),
    ((3, 8, 7), dict(kernel_size=2), np.float32),  # unbatched
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), np.float16),
    ((2, 3, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)), BF16),
    ((1, 2, 10, 11), dict(kernel_size=3, stride=2, padding=1, dilation=2), np.float64),
]


@pytest.mark.parametrize("shape, kwargs, dtype", MAX_CASES)
def test_max_pool2d_values_indices_and_gradient(cuda_dev, request, shape, kwargs, dtype):
    x = _rounded(shape, dtype, 0)
    xt = _on_cuda(x, dtype, cuda_dev, grad=True)
    _reset()
    y, idx = F.max_pool2d(xt, return_indices=True, **kwargs)
    launched = _launches(request)
    # the kernel and one copy of its indices (the user's own), no composed ops
    assert launched in (None, {"pool.max_pool2d_forward": 1, "elementwise.ew1_vec": 1}), launched
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = TF.max_pool2d(tx, return_indices=True, **kwargs)
    assert y.dtype is ZT_DTYPES[np.dtype(dtype)] and idx.dtype is zt.int64
    np.testing.assert_array_equal(y.numpy().astype(np.float64), ty.detach().numpy())  # a max: exact
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    dy = _rounded(ty.shape, dtype, 1)
    g = _on_cuda(dy, dtype, cuda_dev)
    _reset()
    y.backward(g)
    launched = _launches(request)
    assert launched is None or launched.get("pool.max_pool2d_backward") == 1, launched
    ty.backward(torch.tensor(dy))
    _close("x.grad", xt.grad, tx.grad, dtype)


AVG_CASES = [
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1), np.float32),
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), np.float32),
    ((1, 2, 10, 11), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True), np.float32),
    ((2, 2, 9, 9), dict(kernel_size=3, padding=1, divisor_override=4), np.float32),
    ((2, 2, 9, 9), dict(kernel_size=2, stride=3, divisor_override=-3), np.float32),  # negative, as PyTorch allows
    ((3, 8, 7), dict(kernel_size=2, stride=1), np.float32),  # unbatched
    ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), np.float16),
    ((2, 3, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True), BF16),
    ((1, 2, 10, 11), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False), np.float64),
]


@pytest.mark.parametrize("shape, kwargs, dtype", AVG_CASES)
def test_avg_pool2d_values_and_gradient(cuda_dev, request, shape, kwargs, dtype):
    x = _rounded(shape, dtype, 2)
    xt = _on_cuda(x, dtype, cuda_dev, grad=True)
    _reset()
    y = F.avg_pool2d(xt, **kwargs)
    launched = _launches(request)
    assert launched in (None, {"pool.avg_pool2d_forward": 1}), launched
    tx = torch.tensor(x, requires_grad=True)
    ty = TF.avg_pool2d(tx, **kwargs)
    assert y.dtype is ZT_DTYPES[np.dtype(dtype)]
    _close("y", y, ty, dtype)
    dy = _rounded(ty.shape, dtype, 3)
    g = _on_cuda(dy, dtype, cuda_dev)
    _reset()
    y.backward(g)
    launched = _launches(request)
    assert launched is None or launched.get("pool.avg_pool2d_backward") == 1, launched
    ty.backward(torch.tensor(dy))
    _close("x.grad", xt.grad, tx.grad, dtype)


def test_1d_pooling_and_indices(cuda_dev, request):
    x = _rounded((2, 3, 13), np.float32, 4)
    xt = _on_cuda(x, np.float32, cuda_dev, grad=True)
    tx = torch.tensor(x, requires_grad=True)
    _reset()
    y, idx = F.max_pool1d(xt, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    z = F.avg_pool1d(xt, 4, stride=3, padding=2, count_include_pad=False)
    launched = _launches(request)
    assert launched in (None, {"pool.max_pool2d_forward": 1, "pool.avg_pool2d_forward": 1,
                               "elementwise.ew1_vec": 1}), launched
    ty, tidx = TF.max_pool1d(tx, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    tz = TF.avg_pool1d(tx, 4, stride=3, padding=2, count_include_pad=False)
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    _close("avg", z, tz, np.float32)
    ((y * y).sum() + (z * z).sum()).backward()
    ((ty * ty).sum() + (tz * tz).sum()).backward()
    _close("x.grad", xt.grad, tx.grad, np.float32)


def test_non_contiguous_input_ties_and_nan(cuda_dev):
    # a strided, transposed view; after a ReLU most windows tie at 0 (the first maximum wins, as in PyTorch)
    x = np.maximum(_rounded((2, 3, 8, 12), np.float32, 5), 0)
    x[0, 0, 1, 2] = x[1, 2, 5, 4] = np.nan  # NaN wins its windows and propagates
    xt = _on_cuda(x, np.float32, cuda_dev, grad=True)
    tx = torch.tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(xt[..., ::2].transpose(2, 3), 2, padding=1, return_indices=True)
    ty, tidx = TF.max_pool2d(tx[..., ::2].transpose(2, 3), 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y.numpy().astype(np.float64), ty.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    y.backward(zt.ones(*y.shape, device=cuda_dev))
    ty.backward(torch.ones(ty.shape, dtype=torch.float64))
    _close("x.grad", xt.grad, tx.grad, np.float32)


@pytest.mark.parametrize("op, kwargs", [
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
])
def test_gradient_of_gradient(cuda_dev, request, op, kwargs):
    """The gradient of the pooling gradient, with respect to both the input and the incoming gradient."""
    x, w = _rounded((1, 2, 7, 6), np.float64, 6), _rounded((1, 2, 7, 6), np.float64, 8)
    xt, tx = _on_cuda(x, np.float64, cuda_dev, grad=True), torch.tensor(x, requires_grad=True)
    _reset()
    y, ty = getattr(F, op)(xt, **kwargs), getattr(TF, op)(tx, **kwargs)
    dy = _rounded(ty.shape, np.float64, 7)
    gt, tg = _on_cuda(dy, np.float64, cuda_dev, grad=True), torch.tensor(dy, requires_grad=True)
    (gx,) = zt.autograd.grad(y**2, xt, gt, create_graph=True)
    (tgx,) = torch.autograd.grad(ty**2, tx, tg, create_graph=True)
    _close("dx", gx, tgx, np.float64)
    (gx * zt.tensor(w, device=cuda_dev)).sum().backward()
    (tgx * torch.tensor(w)).sum().backward()
    _close("d(dx)/dx", xt.grad, tx.grad, np.float64)
    _close("d(dx)/dy", gt.grad, tg.grad, np.float64)
    launched = _launches(request)
    kind = op.split("_")[0]
    # the backward of the backward is a gather (max) or the forward kernel again (avg): pool.cu throughout
    assert launched is None or {f"pool.{kind}_pool2d_forward", f"pool.{kind}_pool2d_backward"} <= set(launched)
    assert launched is None or kind == "max" or launched["pool.avg_pool2d_forward"] >= 2, launched


def test_integer_input_keeps_the_composed_ops(cuda_dev, request):
    """pool.cu takes float dtypes only: integer pooling runs the composition, with the CPU's results."""
    x = np.random.default_rng(9).integers(-50, 50, (2, 3, 7, 9))
    _reset()
    got_max, got_idx = F.max_pool2d(zt.tensor(x, device=cuda_dev), 3, 2, 1, return_indices=True)
    got_avg = F.avg_pool2d(zt.tensor(x, device=cuda_dev), 3, 2, 1, ceil_mode=True)
    launched = _launches(request)
    assert launched is None or not any(k.startswith("pool.") for k in launched), launched
    want_max, want_idx = F.max_pool2d(zt.tensor(x), 3, 2, 1, return_indices=True)
    want_avg = F.avg_pool2d(zt.tensor(x), 3, 2, 1, ceil_mode=True)
    np.testing.assert_array_equal(got_max.numpy(), want_max.numpy())
    np.testing.assert_array_equal(got_idx.numpy(), want_idx.numpy())
    np.testing.assert_array_equal(got_avg.numpy(), want_avg.numpy())
    assert got_max.dtype is zt.int64 and got_avg.dtype is zt.int64


def test_returned_indices_are_the_users_own(cuda_dev):
    """Changing the returned indices in place does not move the gradient (backward keeps its own)."""
    x = _rounded((1, 1, 4, 4), np.float32, 7)
    xt = _on_cuda(x, np.float32, cuda_dev, grad=True)
    y, idx = F.max_pool2d(xt, 2, return_indices=True)
    want = idx.numpy().copy()
    idx.data[...] = 0
    y.sum().backward()
    grad = np.zeros(16)
    grad[want.reshape(-1)] = 1
    np.testing.assert_array_equal(xt.grad.numpy().reshape(-1), grad)
