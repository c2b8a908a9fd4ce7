"""The CUDA backend's array module (backends/cuda_array.py) against NumPy: the API the ops use, on our kernels.
GPU cases are marked `cuda`; the pure parts (no-copy reshape rule) and the no-GPU error run everywhere."""

import numpy as np
import pytest

import zigtensor as zt
from zigtensor.backends.cuda_array import _nocopy_strides


def test_nocopy_reshape_rule_matches_numpy():
    rng = np.random.default_rng(0)
    for _ in range(500):
        base = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2)
        a = base.transpose(rng.permutation(4))[..., ::2] if rng.random() < 0.5 else base[:, 1:, :, :1]
        sizes = [int(s) for s in a.shape]
        new = tuple(rng.permutation(sizes + [1] * int(rng.integers(0, 2))))
        strides = tuple(s // a.itemsize for s in a.strides)
        v = a.view()
        try:
            v.shape = new
            want = tuple(s // a.itemsize for s in v.strides)
        except AttributeError:
            want = None
        got = _nocopy_strides(a.shape, strides, new)
        assert (got is None) == (want is None), (a.shape, strides, new, got, want)


def test_cuda_device_without_gpu_is_a_one_line_error():
    from zigtensor import cuda

    if cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA is not available") as e:
        zt.zeros(2, device="cuda")
    assert "\n" not in str(e.value)


@pytest.fixture
def xp():
    from zigtensor import cuda

    try:
        cuda.require_cupy()
    except RuntimeError as e:
        pytest.skip(str(e))
    from zigtensor.backends import cuda_array

    return cuda_array




@pytest.mark.cuda
def test_creation_and_host_copies(xp):
    np.testing.assert_array_equal(xp.zeros((2, 3), np.float32).get(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(xp.full((2,), 7, np.int64).get(), [7, 7])
    np.testing.assert_array_equal(xp.arange(1, 10, 2).get(), np.arange(1, 10, 2))
    np.testing.assert_array_equal(xp.eye(3, 4, 1).get(), np.eye(3, 4, 1))
    np.testing.assert_array_equal(xp.tri(3, 3, dtype=bool).get(), np.tri(3, 3, dtype=bool))
    a = xp.asarray(np.arange(6.0).reshape(2, 3))
    assert a.shape == (2, 3) and a.dtype == np.float64 and a.T.get().tolist() == np.arange(6.0).reshape(2, 3).T.tolist()
    assert float(a[1, 2]) == 5.0 and int(a.sum()) == 15 and bool((a > 4).any())
    with pytest.raises(TypeError, match="not converted to NumPy implicitly"):
        np.asarray(a)


@pytest.mark.cuda
def test_operators_inplace_and_promotion(xp):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    a = xp.asarray(x)
    np.testing.assert_allclose((a * 2 + 1).get(), x * 2 + 1)
    np.testing.assert_allclose((1 / (a + 10)).get(), 1 / (x + 10), rtol=1e-6)
    np.testing.assert_array_equal((a // 3).get(), x // 3)
    np.testing.assert_array_equal((a % 3).get(), x % 3)
    np.testing.assert_array_equal((-a).get(), -x)
    assert (a.astype(np.float16) * 2.5).dtype == np.float16  # weak scalars, as NumPy
    b = a.copy()
    b += xp.asarray(np.ones(4, np.float32))
    b *= 2
    np.testing.assert_array_equal(b.get(), (x + 1) * 2)
    i = xp.asarray(np.arange(4))
    with pytest.raises(TypeError, match="cannot cast"):
        i += 0.5
    np.testing.assert_array_equal((~(a > 0)).get(), ~(x > 0))
    np.testing.assert_array_equal(xp.maximum(a, 0).get(), np.maximum(x, 0))
    out = xp.empty((3, 4), np.float32)
    xp.exp(a, out=out)
    np.testing.assert_allclose(out.get(), np.exp(x), rtol=1e-6)


@pytest.mark.cuda
def test_views_reshape_and_shape_setter(xp):
    x = np.arange(24.0).reshape(2, 3, 4)
    a = xp.asarray(x)
    v = a.transpose(1, 0, 2)
    assert v.base is a and not v.flags.c_contiguous
    np.testing.assert_array_equal(v.reshape(3, 8).get(), x.transpose(1, 0, 2).reshape(3, 8))  # a copy by our kernel
    w = a.view()
    w.shape = (6, 4)
    assert w.base is a
    t = a.transpose(2, 1, 0).view()
    with pytest.raises(AttributeError, match="incompatible shape"):
        t.shape = (24,)
    b = xp.broadcast_to(a[0, 0], (5, 4))
    assert not b.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        b[...] = 1
    np.testing.assert_array_equal(xp.flip(a, 1).get(), np.flip(x, 1))
    np.testing.assert_array_equal(xp.tile(a[0], (2, 1)).get(), np.tile(x[0], (2, 1)))
    np.testing.assert_array_equal(xp.pad(a[0], ((1, 0), (0, 2))).get(), np.pad(x[0], ((1, 0), (0, 2))))
    np.testing.assert_array_equal(xp.concatenate([a, a[:1]], 0).get(), np.concatenate([x, x[:1]], 0))
    np.testing.assert_array_equal(xp.stack([a[0], a[1]], -1).get(), np.stack([x[0], x[1]], -1))
    s = xp.lib.stride_tricks.as_strided(a, (2, 3), (8 * 12, 8))
    np.testing.assert_array_equal(s.get(), np.lib.stride_tricks.as_strided(x, (2, 3), (8 * 12, 8)))


@pytest.mark.cuda
def test_advanced_indexing_get_and_set(xp):
    x = np.arange(60.0).reshape(3, 4, 5)
    a = xp.asarray(x)
    i, j = np.array([[0, 2], [1, 1]]), np.array([4, 0])
    di, dj = xp.asarray(i), xp.asarray(j)
    for key, dkey in (((i, slice(None), j), (di, slice(None), dj)), ((slice(None), i, j), (slice(None), di, dj)),
                      ((0, slice(None), j), (0, slice(None), dj)), ((Ellipsis, j), (Ellipsis, dj)),
                      ((x > 30,), (a > 30,)), ((slice(1, None), [0, 3]), (slice(1, None), [0, 3])),
                      ((None, 1, j), (None, 1, dj))):
        np.testing.assert_array_equal(a[dkey].get(), x[key], err_msg=str(key))
    b, y = a.copy(), x.copy()
    b[a > 30] = -1.0
    y[x > 30] = -1.0
    b[di[0], 0, dj] = xp.asarray(np.array([7.0, 8.0]))
    y[i[0], 0, j] = [7.0, 8.0]
    np.testing.assert_array_equal(b.get(), y)
    with pytest.raises(IndexError, match="out of bounds"):
        a[xp.asarray(np.array([3]))]
    with pytest.raises(IndexError, match="too many indices"):
        a[0, 0, 0, 0]


@pytest.mark.cuda
def test_reductions_scans_and_nonzero(xp):
    x = np.random.default_rng(1).standard_normal((6, 7, 8)).astype(np.float32)
    a = xp.asarray(x)
    for axis in (None, 0, 1, (0, 2), -1):
        np.testing.assert_allclose(a.sum(axis=axis).get(), x.sum(axis=axis), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.mean(axis=axis, keepdims=True).get(), x.mean(axis=axis, keepdims=True),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.max(axis=axis).get(), x.max(axis=axis))
        np.testing.assert_allclose(a.var(axis=axis).get(), x.var(axis=axis), rtol=1e-4)
    np.testing.assert_array_equal(a.argmax(axis=1).get(), x.argmax(axis=1))
    np.testing.assert_array_equal(xp.argmin(a).get(), np.argmin(x))
    np.testing.assert_allclose(xp.cumsum(a, axis=2).get(), np.cumsum(x, axis=2), rtol=1e-5, atol=1e-5)
    for got, want in zip(xp.nonzero(a > 1), np.nonzero(x > 1)):
        np.testing.assert_array_equal(got.get(), want)
    assert a.sum(dtype=np.float64).dtype == np.float64 and (a > 0).sum().dtype == np.int64


@pytest.mark.cuda
def test_tensors_on_cuda_end_to_end():
    from zigtensor import cuda

    if not cuda.is_available():
        pytest.skip("no GPU")
    x = zt.randn(4, 5, device="cuda", requires_grad=True)
    w = zt.randn(5, 3, device="cuda", requires_grad=True)
    y = (x @ w).relu().sum()
    y.backward()
    xn, wn = x.detach().cpu().numpy(), w.detach().cpu().numpy()
    np.testing.assert_allclose(y.item(), np.maximum(xn @ wn, 0).sum(), rtol=1e-4)
    assert x.grad.device == zt.device("cuda") and x.grad.shape == (4, 5)
    zt.manual_seed(3)
    a = zt.rand(100, device="cuda").numpy()
    zt.manual_seed(3)
    np.testing.assert_array_equal(zt.rand(100, device="cuda").numpy(), a)
    assert a.min() >= 0 and a.max() < 1
