"""kernels/pool.cu through its launcher (backends/cuda_kernels/pool.py) against PyTorch's max_pool2d and
avg_pool2d (CPU, float64 on the same rounded inputs): values, argmax indices and gradients, with stride,
padding, dilation, ceil_mode, count_include_pad, divisor_override (negative too), every dtype, 3-d and 4-d
inputs. The ops on 'cuda' (F.max_pool2d etc. through backends/cuda.py) are tested in test_cuda_pool_ops.py."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, FLOAT_DTYPES, kernel_device, on_devices, rounded, tolerance
from oracle import oracle

from zigtensor.backends.cuda_kernels import pool

torch = oracle("torch")

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)

# (input shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_GEOMETRY = [((2, 3, 8, 8), 2, None, 0, 1, False), ((1, 2, 9, 7), 3, 2, 1, 1, True),
                ((2, 1, 10, 11), (3, 2), (2, 1), (1, 1), (2, 1), False), ((3, 7, 7), 3, 1, 1, 1, False),
                ((1, 4, 13, 13), 3, 3, 1, 2, True), ((1, 1, 5, 5), 5, 1, 2, 1, False)]
MAX_CASES = [(g, dtype) for g in MAX_GEOMETRY for dtype in FLOAT_DTYPES]
MAX_EMULATED = [(MAX_GEOMETRY[1], F32), (MAX_GEOMETRY[2], BF16), (MAX_GEOMETRY[4], F64), (MAX_GEOMETRY[3], F16)]


def _t(a, grad=False):
    return torch.from_numpy(np.asarray(a).astype(np.float64)).requires_grad_(grad)


@pytest.mark.parametrize("device,case", on_devices(MAX_CASES, MAX_EMULATED))
def test_max_pool2d(device, case, monkeypatch):
    (shape, k, s, p, d, ceil), dtype = case
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(0), shape, dtype)
    y, idx = pool.max_pool2d_forward(dev.asarray(x), k, s, p, d, ceil)
    tx = _t(x, True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(dev.numpy(y).astype(np.float64), ty.detach().numpy())  # a max: exact
    np.testing.assert_array_equal(dev.numpy(idx), tidx.numpy())
    dy = rounded(np.random.default_rng(1), ty.shape, dtype, -1, 1)
    dx = pool.max_pool2d_backward(dev.asarray(dy), idx, x.shape, k, s, p, d, ceil)
    ty.backward(_t(dy))
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(dev.numpy(dx).astype(np.float64), tx.grad.numpy(), rtol=4 * rtol, atol=4 * atol)


# (input shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_GEOMETRY = [((2, 3, 8, 8), 2, None, 0, False, True, None), ((1, 2, 9, 7), 3, 2, 1, True, True, None),
                ((1, 2, 9, 7), 3, 2, 1, True, False, None),
                ((2, 1, 10, 11), (3, 2), (2, 1), (1, 1), False, False, None),
                ((3, 6, 6), 3, 1, 1, False, True, 4), ((1, 3, 11, 11), 4, 3, 2, True, False, None),
                ((2, 2, 9, 9), 2, 3, 0, False, True, -3)]  # a negative divisor_override, as PyTorch allows
AVG_CASES = [(g, dtype) for g in AVG_GEOMETRY for dtype in FLOAT_DTYPES]
AVG_EMULATED = [(AVG_GEOMETRY[2], F32), (AVG_GEOMETRY[5], BF16), (AVG_GEOMETRY[4], F64), (AVG_GEOMETRY[3], F16),
                (AVG_GEOMETRY[6], F32)]


@pytest.mark.parametrize("device,case", on_devices(AVG_CASES, AVG_EMULATED))
def test_avg_pool2d(device, case, monkeypatch):
    (shape, k, s, p, ceil, include_pad, divisor), dtype = case
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(2), shape, dtype)
    y = pool.avg_pool2d_forward(dev.asarray(x), k, s, p, ceil, include_pad, divisor)
    tx = _t(x, True)
    ty = torch.nn.functional.avg_pool2d(tx, k, s, p, ceil, include_pad, divisor)
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(dev.numpy(y).astype(np.float64), ty.detach().numpy(), rtol=4 * rtol, atol=4 * atol)
    dy = rounded(np.random.default_rng(3), ty.shape, dtype, -1, 1)
    dx = pool.avg_pool2d_backward(dev.asarray(dy), x.shape, k, s, p, ceil, include_pad, divisor)
    ty.backward(_t(dy))
    np.testing.assert_allclose(dev.numpy(dx).astype(np.float64), tx.grad.numpy(), rtol=4 * rtol, atol=4 * atol)


@pytest.mark.parametrize("device,case", on_devices(["nan"], ["nan"]))
def test_max_pool_propagates_nan_like_pytorch(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 3, 3] = np.nan
    y, idx = pool.max_pool2d_forward(dev.asarray(x), 3, 1)
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 1, return_indices=True)
    np.testing.assert_array_equal(dev.numpy(y), ty.numpy())
    np.testing.assert_array_equal(dev.numpy(idx), tidx.numpy())


def test_output_size_matches_pytorch():
    for size, k, s, p, d in [(9, 3, 2, 1, 1), (10, 3, 3, 1, 2), (5, 2, 2, 0, 1), (7, 4, 3, 2, 1)]:
        for ceil in (False, True):
            want = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), k, s, p, d, ceil).shape[-1]
            assert pool.output_size(size, k, s, p, d, ceil) == want


def test_bad_arguments_name_the_problem():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="pad should be non-negative and at most half of kernel size"):
        pool.max_pool2d_forward(x, 2, padding=2)
    with pytest.raises(ValueError, match="stride must be greater than zero"):
        pool.avg_pool2d_forward(x, 2, stride=0)
    with pytest.raises(ValueError, match="calculated output size"):
        pool.max_pool2d_forward(np.zeros((1, 1, 2, 2), np.float32), 3)
    with pytest.raises(ValueError, match="expected a 3-d"):
        pool.max_pool2d_forward(np.zeros((4, 4), np.float32), 2)
    with pytest.raises(ValueError, match="divisor_override must be a non-zero int"):
        pool.avg_pool2d_forward(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="must both have the output shape"):
        pool.max_pool2d_backward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 2, 2), np.int64), x.shape, 2)
