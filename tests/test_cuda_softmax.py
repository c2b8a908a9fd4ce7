"""kernels/softmax.cu through its launcher (backends/cuda_kernels/softmax.py) against PyTorch (CPU, float64 on
the same rounded inputs): every kernel variant (warp, block, online; VEC 16-byte and scalar), every dtype,
odd sizes. GPU cases are marked `cuda`; a subset runs on the CPU kernel emulator everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, FLOAT_DTYPES, assert_close, kernel_device, on_devices, rounded, tolerance
from oracle import oracle

from zigtensor.backends.cuda_kernels import softmax as sm

torch = oracle("torch")

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)

# (shape, axis): short rows (warp kernel), rows past 32*VEC*8 (block kernel), rows past 512*VEC*8 (online),
# odd lengths (VEC=1), another axis than the last.
SHAPES = [((1, 1), -1), ((7, 3), -1), ((5, 32), 1), ((33, 100), -1), ((4, 127), -1), ((9, 513), -1),
          ((3, 1000), -1), ((2, 1100), -1), ((3, 4096), -1), ((2, 5003), -1), ((2, 20000), -1), ((1, 70001), -1),
          ((4, 6, 10), 1), ((3, 5, 7), 0), ((2, 3, 300), -1)]
CASES = [(shape, axis, dtype, log) for shape, axis in SHAPES for dtype in FLOAT_DTYPES for log in (False, True)]
EMULATED = [((33, 100), -1, F32, False), ((4, 127), -1, BF16, True), ((2, 1100), -1, F16, False),
            ((3, 1000), -1, F64, True), ((2, 17000), -1, F32, True), ((4, 6, 10), 1, F32, False),
            ((2, 5003), -1, F32, False)]


def _torch_softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    t = torch.from_numpy(x.astype(np.float64))
    return (torch.log_softmax if log else torch.softmax)(t, dim=axis).numpy()


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_softmax_forward(device, case, monkeypatch):
    shape, axis, dtype, log = case
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(1), shape, dtype)
    y = sm.softmax(dev.asarray(x), axis, log=log)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close("softmax", dev.numpy(y), _torch_softmax(x, axis, log), dtype, scale=4.0)


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_softmax_backward(device, case, monkeypatch):
    shape, axis, dtype, log = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(2)
    y = _torch_softmax(rounded(rng, shape, dtype), axis, log).astype(dtype)  # a forward output, rounded
    dy = rounded(rng, shape, dtype, -1.0, 1.0)
    dx = sm.softmax_backward(dev.asarray(y), dev.asarray(dy), axis, log=log)
    ty, tdy = torch.from_numpy(y.astype(np.float64)), torch.from_numpy(dy.astype(np.float64))
    backward = torch._log_softmax_backward_data if log else torch._softmax_backward_data
    want = backward(tdy, ty, axis % len(shape), torch.float64).numpy()
    assert dx.dtype == dtype and dx.shape == y.shape
    rtol, _ = tolerance(dtype)
    # NOTE: dx subtracts a row sum from each element; its error scales with the row's magnitude, not dx's
    np.testing.assert_allclose(dev.numpy(dx).astype(np.float64), want, rtol=4 * rtol,
                               atol=4 * rtol * max(1.0, float(np.abs(want).max())))


LSE_CASES = [((5, 7), -1, F32), ((3, 2000), -1, BF16), ((2, 3, 40), (0, 2), F32), ((6, 9), 0, F16),
             ((4, 300), -1, F64), ((2, 9000), 1, F32)]


@pytest.mark.parametrize("device,case", on_devices(LSE_CASES, LSE_CASES[:3] + LSE_CASES[5:]))  # [5]: block variant
def test_logsumexp(device, case, monkeypatch):
    shape, axis, dtype = case
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(3), shape, dtype, -20, 20)
    got = sm.logsumexp(dev.asarray(x), axis)
    want = torch.logsumexp(torch.from_numpy(x.astype(np.float64)), dim=axis).numpy()
    assert got.dtype == dtype
    assert_close("logsumexp", dev.numpy(got), want, dtype, scale=4.0)
    kept = sm.logsumexp(dev.asarray(x), axis, keepdims=True)
    assert kept.shape == torch.logsumexp(torch.from_numpy(x.astype(np.float64)), dim=axis, keepdim=True).shape


@pytest.mark.parametrize("device,case", on_devices(["special"], ["special"]))
def test_special_values(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0], [np.nan, 0.0, 1.0]], dtype=np.float32)
    y = dev.numpy(sm.softmax(dev.asarray(x), -1))
    want = torch.softmax(torch.from_numpy(x), -1).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-6, equal_nan=True)  # all -inf: NaN, as PyTorch
    lse = dev.numpy(sm.logsumexp(dev.asarray(x[:2]), -1))
    np.testing.assert_allclose(lse, torch.logsumexp(torch.from_numpy(x[:2]), -1).numpy(), rtol=1e-6)
    empty = dev.numpy(sm.logsumexp(dev.asarray(np.zeros((3, 0), np.float32)), -1))
    assert empty.shape == (3,) and np.all(empty == -np.inf)
    assert dev.numpy(sm.softmax(dev.asarray(np.zeros((0, 5), np.float32)), -1)).shape == (0, 5)
    assert dev.numpy(sm.softmax(dev.asarray(np.float32(3.0)), 0)) == 1.0


def test_strided_input_runs_on_a_copy(monkeypatch):
    """A transposed view goes through the same kernels (moved and copied contiguous by the launcher)."""
    dev = kernel_device("emulator", monkeypatch)
    x = rounded(np.random.default_rng(4), (40, 6), np.float32)
    y = sm.softmax(dev.asarray(x).T, 0)  # softmax along the view's axis 0 = x's axis 1
    assert_close("softmax of a transposed view", dev.numpy(y), _torch_softmax(x.T, 0, False), np.float32)


def test_plan_picks_the_kernel_by_row_length():
    assert sm.plan(100, 4) == ("warp", 128, 1)
    assert sm.plan(1024, 4) == ("warp", 128, 8)
    assert sm.plan(4096, 4) == ("block", 256, 4)  # 1024 vectors: 256 threads x 4
    assert sm.plan(16384, 4) == ("block", 512, 8)
    assert sm.plan(16388, 4) == ("online", 512, 1)
    assert sm.plan(2048, 8, backward=True) == ("block", 256, 1)  # half: backward caches at most 4 vectors
    assert sm.plan(2048, 8, backward=False) == ("warp", 128, 8)


def test_bad_inputs_name_the_problem():
    with pytest.raises(TypeError, match="softmax: x must be float16"):
        sm.softmax(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        sm.softmax(np.zeros((2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="dy .* must match y"):
        sm.softmax_backward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("device,case", on_devices([((5, 300), F32), ((3, 64), BF16)], [((5, 300), F32)]))
def test_online_baseline_on_short_rows(device, case, monkeypatch):
    """variant='online' (the benchmarks' baseline) gives the same results on rows the cached kernels take."""
    shape, dtype = case
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(6), shape, dtype)
    for log in (False, True):
        y = sm.softmax(dev.asarray(x), -1, log=log, variant="online")
        assert_close("online softmax", dev.numpy(y), _torch_softmax(x, -1, log), dtype, scale=4.0)
        dx = sm.softmax_backward(y, y, -1, log=log, variant="online")
        want = dev.numpy(sm.softmax_backward(y, y, -1, log=log)).astype(np.float64)
        assert_close("online softmax backward", dev.numpy(dx), want, dtype, scale=4.0)
    with pytest.raises(ValueError, match="variant must be None"):
        sm.softmax(dev.asarray(x), -1, variant="warp")
