"""kernels/index.cu through its launcher (backends/cuda_kernels/index.py) against NumPy: gather / put / add
through advanced indices (NumPy's placement of the index block), scans with split rows, nonzero, fill,
arange and the triangle patterns. GPU cases are marked `cuda`; a subset runs on the CPU kernel emulator."""

import numpy as np
import pytest
from cuda_util import BF16, assert_close, kernel_device, on_devices, rounded

from zigtensor.backends.cuda_kernels import index as ix

F32, F16, F64, I64, I32, B = (np.dtype(t) for t in (np.float32, np.float16, np.float64, np.int64, np.int32,
                                                     np.bool_))


@pytest.mark.parametrize("device,case", on_devices([F32, BF16, I64, B], emulated=[F32]))
def test_take_places_the_index_block_like_numpy(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.random((5, 6, 7)) > 0.5 if case == B else rounded(rng, (5, 6, 7), F32).astype(case)
    i0 = rng.integers(-5, 5, size=(2, 3))
    i2 = rng.integers(0, 7, size=(3,))
    i1 = rng.integers(0, 6, size=(4, 1))
    d = dev.asarray
    # non-adjacent advanced axes: the block goes first
    np.testing.assert_array_equal(dev.numpy(ix.take(d(x), (0, 2), [d(i0), d(i2)], 0)), x[i0, :, i2])
    # adjacent: the block stays where the indexed dims were
    np.testing.assert_array_equal(dev.numpy(ix.take(d(x), (1, 2), [d(i1), d(i2)], 1)), x[:, i1, i2])
    np.testing.assert_array_equal(dev.numpy(ix.take(d(x), (0,), [d(np.int32(3) * np.ones(2, np.int32))], 0)),
                                  x[[3, 3]])


@pytest.mark.parametrize("device,case", on_devices(["take", "put"], emulated=["take", "put"]))
def test_out_of_range_index_raises(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = dev.asarray(np.zeros((4, 3), np.float32))
    bad = dev.asarray(np.array([0, 4], np.int64))
    with pytest.raises(IndexError, match="out of bounds"):
        if case == "take":
            ix.take(x, (0,), [bad], 0)
        else:
            ix.put(x, (0,), [bad], 0, 1.0)


@pytest.mark.parametrize("device,case", on_devices([F32, F16, F64, I64, I32], emulated=[F32, I64]))
def test_put_and_index_add_accumulate_repeats(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(1)
    idx = np.array([0, 2, 2, 5, 0, 0], np.int64)
    vals = rng.integers(-3, 4, size=(6, 4)).astype(case)
    target = np.zeros((7, 4), case)
    got = dev.asarray(target.copy())
    ix.put(got, (0,), [dev.asarray(idx)], 0, dev.asarray(vals), accumulate=True)
    want = target.copy()
    np.add.at(want, idx, vals)
    np.testing.assert_array_equal(dev.numpy(got), want)
    # put with a broadcast value, unique indices
    got = dev.asarray(target.copy())
    ix.put(got, (0,), [dev.asarray(np.array([1, 3], np.int64))], 0, dev.asarray(vals[0]))
    want = target.copy()
    want[[1, 3]] = vals[0]
    np.testing.assert_array_equal(dev.numpy(got), want)


SCANS = [("add", F32, 0, (5, 7)), ("add", F32, 1, (3, 20_000)), ("mul", F64, 1, (4, 9)), ("add", B, 0, (300,)),
         ("add", I32, 1, (2, 5000)), ("mul", F16, 0, (6, 3))]


@pytest.mark.parametrize("device,case", on_devices(SCANS, emulated=SCANS[:4]))
def test_scan_matches_numpy(device, case, monkeypatch):
    op, dtype, axis, shape = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(2)
    x = rng.random(shape) > 0.5 if dtype == B else rounded(rng, shape, dtype, 0.9, 1.1).astype(dtype)
    got = ix.scan(op, dev.asarray(x), axis)
    want = (np.cumsum if op == "add" else np.cumprod)(x, axis=axis)
    assert np.dtype(got.dtype) == want.dtype
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(dev.numpy(got), want)
    else:
        ref = (np.cumsum if op == "add" else np.cumprod)(x.astype(np.float64), axis=axis)
        assert_close("scan", dev.numpy(got), ref, want.dtype, scale=20.0 if shape[-1] > 1000 else 2.0)
    excl = ix.scan("add", dev.asarray(x), axis, exclusive=True) if op == "add" and dtype != B else None
    if excl is not None:
        ref = np.cumsum(x.astype(np.float64), axis=axis) - x
        assert_close("exclusive", dev.numpy(excl), ref, want.dtype, scale=20.0 if shape[-1] > 1000 else 2.0)


@pytest.mark.parametrize("device,case", on_devices([B, F32], emulated=[B]))
def test_nonzero_c_order(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = (np.random.default_rng(3).random((6, 5, 4)) > 0.7).astype(case)
    coords = dev.numpy(ix.nonzero(dev.asarray(x)))
    np.testing.assert_array_equal(coords, np.stack(np.nonzero(x), axis=-1))
    assert dev.numpy(ix.nonzero(dev.asarray(np.zeros((3, 2), case)))).shape == (0, 2)


@pytest.mark.parametrize("device,case", on_devices([F32, BF16, I64, B], emulated=[F32, I64]))
def test_fill_arange_and_triangles(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = dev.asarray(np.zeros((3, 5), case))
    ix.fill(x, 1)
    np.testing.assert_array_equal(dev.numpy(x), np.ones((3, 5), case))
    xp = dev.xp
    if case != B:
        np.testing.assert_array_equal(dev.numpy(ix.arange(7, 2, 3, case, xp=xp)), np.arange(2, 23, 3).astype(case))
    m = np.arange(24).reshape(2, 3, 4).astype(case)
    for mode, k, want in (("tril", 0, np.tril(m)), ("triu", 1, np.triu(m, 1)), ("tril", -1, np.tril(m, -1))):
        np.testing.assert_array_equal(dev.numpy(ix.tri(dev.asarray(m), m.shape, k, mode, case)), want)
    np.testing.assert_array_equal(dev.numpy(ix.tri(None, (3, 4), 0, "tri", case, xp=xp)), np.tri(3, 4, dtype=case))
    np.testing.assert_array_equal(dev.numpy(ix.tri(None, (3, 4), 1, "eye", case, xp=xp)),
                                  np.eye(3, 4, 1, dtype=case))


@pytest.mark.cuda
def test_strided_fill_and_scan_on_views(monkeypatch):
    dev = kernel_device("cuda", monkeypatch)
    x = dev.asarray(np.zeros((6, 8), np.float32))
    ix.fill(x[:, ::3], 2.0)
    want = np.zeros((6, 8), np.float32)
    want[:, ::3] = 2
    np.testing.assert_array_equal(dev.numpy(x), want)
    y = np.arange(48, dtype=np.float32).reshape(6, 8)
    got = ix.scan("add", dev.asarray(y).T, 1)
    np.testing.assert_array_equal(dev.numpy(got), np.cumsum(y.T, axis=1))
