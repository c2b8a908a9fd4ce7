"""kernels/reduce.cu through its launcher (backends/cuda_kernels/reduce.py) against NumPy: every op over
leading, trailing, middle and all axes, split-K, NaN and tie rules, result dtypes. GPU cases are marked `cuda`;
a subset runs on the CPU kernel emulator everywhere; the planning is pure and runs here."""

import numpy as np
import pytest
from cuda_util import BF16, assert_close, kernel_device, on_devices, rounded

from zigtensor.backends.cuda_kernels import reduce as rd

F32, F16, F64, I64, I8, B = (np.dtype(t) for t in (np.float32, np.float16, np.float64, np.int64, np.int8,
                                                     np.bool_))


# ------------------------------------------------------------------------------------------ planning (no GPU)
def test_plan_rows_for_trailing_axes_with_16_byte_loads():
    p = rd.plan((4096, 1024), (1024, 1), (1,), 4, 0, sms=132)
    assert p.mode == "inner" and p.M == 4096 and p.K == 1024 and p.vec and p.P == 1


def test_plan_columns_for_leading_axes():
    p = rd.plan((8192, 768), (768, 1), (0,), 4, 0, sms=132)
    assert p.mode == "outer" and p.M == 768 and p.K == 8192 and p.P > 1 and p.chunk * p.P >= p.K


def test_plan_splits_a_full_reduction_over_the_gpu():
    p = rd.plan((16 * 2**20,), (1,), (0,), 4, 0, sms=132)
    assert p.mode == "inner" and p.M == 1 and p.tpr == 256 and p.P > 500 and p.chunk % 4 == 0
    assert (p.P - 1) * p.chunk < p.K <= p.P * p.chunk


def test_plan_unaligned_or_strided_rows_use_scalar_loads():
    assert not rd.plan((10, 64), (64, 1), (1,), 4, 4, sms=132).vec  # the base is not 16-byte aligned
    assert not rd.plan((10, 63), (63, 1), (1,), 4, 0, sms=132).vec  # rows do not start aligned
    p = rd.plan((6, 5, 7), (35, 7, 1), (0, 2), 4, 0, sms=132)  # middle axis kept: rows of 7 over 6 blocks
    assert p.M == 5 and p.K == 42 and p.red_shape == (6, 7)


def test_result_dtypes_are_numpys():
    assert rd.result_dtype("sum", I8) == I64 and rd.result_dtype("mean", I64) == F64
    assert rd.result_dtype("sum", BF16) == BF16 and rd.result_dtype("sum", F16, F32) == F32
    assert rd.result_dtype("argmax", F16) == I64 and rd.result_dtype("any", F32) == B


# ------------------------------------------------------------------------------------------ kernels
CASES = [("sum", F32, (1,)), ("sum", F32, (0,)), ("sum", F16, None), ("mean", BF16, (0, 2)), ("max", F32, (2,)),
         ("min", F64, (1,)), ("prod", F32, (1,)), ("var", F32, (1,)), ("var", F64, (0, 1)), ("any", B, (1,)),
         ("all", F32, (0,)), ("sum", B, None), ("sum", I8, (0,)), ("max", I64, None), ("mean", I64, (2,))]


def _x(rng, dtype, shape=(37, 45, 23)):
    if dtype == B:
        return rng.random(shape) > 0.3
    if dtype.kind in "iu":
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return rounded(rng, shape, dtype, 0.5, 1.5)


@pytest.mark.parametrize("device,case", on_devices(CASES, emulated=[("sum", F32, (1,)), ("sum", F32, (0,)),
                                                                  ("var", F32, (1,)), ("max", I64, None)]))
def test_reduce_matches_numpy(device, case, monkeypatch):
    op, dtype, axes = case
    dev = kernel_device(device, monkeypatch)
    x = _x(np.random.default_rng(0), dtype)
    got = rd.reduce(op, dev.asarray(x), axes)
    want = getattr(np, op)(x, axis=axes)
    assert np.dtype(got.dtype) == want.dtype and got.shape == want.shape
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(dev.numpy(got), want)
    else:
        ref = getattr(np, op)(x.astype(np.float64), axis=axes)
        assert_close(op, dev.numpy(got), ref, want.dtype, scale=4.0)


@pytest.mark.parametrize("device,case", on_devices([F32, F16], emulated=[F32]))
def test_keepdims_and_large_split_k(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(1), (3, 200_003), case, -1, 1)
    got = rd.reduce("sum", dev.asarray(x), (1,), keepdims=True)
    assert got.shape == (3, 1)
    assert_close("sum", dev.numpy(got), x.astype(np.float64).sum(1, keepdims=True), case, scale=50.0)
    assert_close("max", dev.numpy(rd.reduce("max", dev.asarray(x))), np.max(x), case)


@pytest.mark.parametrize("device,case", on_devices(["argmax", "argmin"], emulated=["argmax"]))
def test_arg_reduce_first_index_and_nan(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = np.array([[1.0, 5.0, 5.0, -2.0], [np.nan, 3.0, np.nan, 0.0], [-7.0, -7.0, 2.0, 2.0]], np.float32)
    for axis in (None, 0, 1):
        got = rd.arg_reduce(case, dev.asarray(x), axis)
        np.testing.assert_array_equal(dev.numpy(got), getattr(np, case)(x, axis=axis), err_msg=f"axis {axis}")
    assert rd.arg_reduce(case, dev.asarray(x), 1, keepdims=True).shape == (3, 1)


@pytest.mark.parametrize("device,case", on_devices(["max", "sum"], emulated=["max"]))
def test_nan_propagates_and_empty_reductions(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = np.ones((4, 6), np.float32)
    x[2, 3] = np.nan
    got = dev.numpy(rd.reduce(case, dev.asarray(x), (1,)))
    assert np.isnan(got[2]) and not np.isnan(got[[0, 1, 3]]).any()
    empty = dev.asarray(np.ones((0, 3), np.float32))
    if case == "max":
        with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
            rd.reduce("max", empty, (0,))
    else:
        np.testing.assert_array_equal(dev.numpy(rd.reduce("sum", empty, (0,))), np.zeros(3, np.float32))


@pytest.mark.cuda
def test_strided_input_transposed(monkeypatch):
    dev = kernel_device("cuda", monkeypatch)
    x = rounded(np.random.default_rng(2), (64, 48), F32)
    for axes in ((0,), (1,), None):
        got = rd.reduce("sum", dev.asarray(x).T[::2], axes)
        assert_close(f"axes {axes}", dev.numpy(got), x.T[::2].astype(np.float64).sum(axis=axes), F32, scale=4.0)
