"""Creation functions: values, dtypes, devices and requires_grad against PyTorch; the seeded RNG."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import to_numpy, torch, torch_dtype

import zigtensor as zt


def same(z, t):
    assert z.shape == tuple(t.shape), f"shape {z.shape} != torch's {tuple(t.shape)}"
    assert torch_dtype(z.dtype) == t.dtype, f"dtype {z.dtype} != torch's {t.dtype}"
    np.testing.assert_allclose(to_numpy(z).astype(np.float64), to_numpy(t).astype(np.float64), rtol=1e-6,
                               atol=1e-7)


@pytest.mark.parametrize("data", [
    1.5, 3, True, [1, 2, 3], [1.0, 2, 3], [True, False], [[1, 2], [3, 4]], [[1.5], [2.5]], [], [[]],
    [[True, 1], [0, 2]], [1, 2.5, True], np.arange(6, dtype=np.int32).reshape(2, 3), np.float64(2.5),
    np.array([1.0, 2.0], dtype=np.float16), np.array([[0, 255]], dtype=np.uint8),
], ids=repr)
def test_tensor_infers(data):
    same(zt.tensor(data), torch.tensor(data))


ALL_DTYPES = [zt.float32, zt.float64, zt.float16, zt.bfloat16, zt.int8, zt.uint8, zt.int32, zt.int64, zt.bool]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: d.name)
def test_tensor_dtype(dtype):
    data = [[0, 1, 2], [3, 1, 0]]
    same(zt.tensor(data, dtype=dtype), torch.tensor(data, dtype=torch_dtype(dtype)))
    frac = [[1.75, 0.5]] if dtype is zt.uint8 else [[1.75, -0.5]]  # rounding toward zero for integers
    same(zt.tensor(frac, dtype=dtype), torch.tensor(frac, dtype=torch_dtype(dtype)))


def test_tensor_copies_and_from_tensor():
    a = np.array([1.0, 2.0])
    t = zt.tensor(a)
    a[0] = 9
    assert t.tolist() == [1.0, 2.0]
    u = zt.tensor(t, dtype=zt.float64)
    assert u.dtype is zt.float64 and u.tolist() == [1.0, 2.0]
    # a list of 0-d tensors
    assert zt.tensor([zt.tensor(1.0), zt.tensor(2.0)]).tolist() == [1.0, 2.0]


def test_tensor_requires_grad_and_device():
    t = zt.tensor([1.0, 2.0], requires_grad=True, device="cpu")
    assert t.requires_grad and t.is_leaf and t.grad is None and t.device == zt.device("cpu")
    with pytest.raises(RuntimeError, match="floating point"):
        zt.tensor([1, 2], requires_grad=True)


def test_tensor_bad_data():
    with pytest.raises(ValueError, match="rectangular"):
        zt.tensor([[1, 2], [3]])
    with pytest.raises(TypeError, match="tensor: expected"):
        zt.tensor("abc")


@pytest.mark.parametrize("fn", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", [(), (0,), (3,), (2, 3), (2, 0, 4)], ids=str)
def test_filled(fn, size):
    z, t = getattr(zt, fn)(*size), getattr(torch, fn)(size)
    assert z.shape == tuple(t.shape) and torch_dtype(z.dtype) == t.dtype
    if fn != "empty":
        same(z, t)
    # the size as one tuple, and with a dtype
    z = getattr(zt, fn)(size, dtype=zt.int32)
    assert z.shape == size and z.dtype is zt.int32


@pytest.mark.parametrize("value,dtype", [(1.5, None), (3, None), (True, None), (2, zt.float16), (7, zt.int8),
                                         (-1.25, zt.float64)], ids=str)
def test_full(value, dtype):
    td = torch_dtype(dtype) if dtype else None
    same(zt.full((2, 3), value, dtype=dtype), torch.full((2, 3), value, dtype=td))
    same(zt.full((), value, dtype=dtype), torch.full((), value, dtype=td))


@pytest.mark.parametrize("dtype", [None, zt.float64, zt.int32], ids=str)
def test_like(dtype):
    base_z, base_t = zt.ones(2, 3, dtype=zt.float16), torch.ones(2, 3, dtype=torch.float16)
    td = torch_dtype(dtype) if dtype else None
    same(zt.zeros_like(base_z, dtype=dtype), torch.zeros_like(base_t, dtype=td))
    same(zt.ones_like(base_z, dtype=dtype), torch.ones_like(base_t, dtype=td))
    same(zt.full_like(base_z, 3, dtype=dtype), torch.full_like(base_t, 3, dtype=td))
    assert zt.empty_like(base_z, dtype=dtype).shape == (2, 3)


def test_like_requires_grad():
    x = zt.zeros_like(zt.ones(3), requires_grad=True)
    assert x.requires_grad and x.is_leaf


@pytest.mark.parametrize("args", [(5,), (0,), (1, 4), (2, 10, 3), (10, 2, -3), (0, 1, 0.25), (1.0, 2.5, 0.5),
                                  (-1, 1, 0.3), (3.5,), (0, 0)], ids=str)
def test_arange(args):
    same(zt.arange(*args), torch.arange(*args))


def test_arange_dtype_and_errors():
    same(zt.arange(5, dtype=zt.float64), torch.arange(5, dtype=torch.float64))
    same(zt.arange(0, 2, 0.5, dtype=zt.float16), torch.arange(0, 2, 0.5, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        zt.arange(0, 5, 0)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        zt.arange(5, 0, 1)


@pytest.mark.parametrize("args", [(0, 1, 5), (-2, 2, 1), (3, -1, 4), (0, 1, 0), (1, 10, 10)], ids=str)
def test_linspace(args):
    same(zt.linspace(*args), torch.linspace(*args))
    same(zt.linspace(*args, dtype=zt.float64), torch.linspace(*args, dtype=torch.float64))


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2), (0,)], ids=str)
def test_eye(args):
    same(zt.eye(*args), torch.eye(*args))
    same(zt.eye(*args, dtype=zt.int64), torch.eye(*args, dtype=torch.int64))


@pytest.mark.parametrize("fn", ["rand", "randn"])
def test_random_float(fn):
    f = getattr(zt, fn)
    zt.manual_seed(123)
    a = f(2, 3)
    b = f(2, 3)
    zt.manual_seed(123)
    c = f((2, 3))
    assert a.shape == (2, 3) and a.dtype is zt.float32
    np.testing.assert_array_equal(a.numpy(), c.numpy())  # reproducible
    assert not np.array_equal(a.numpy(), b.numpy())  # and the stream moves on
    assert f(3, dtype=zt.float64).dtype is zt.float64
    assert f(3, dtype=zt.float16).dtype is zt.float16
    assert f(3, dtype=zt.bfloat16).dtype is zt.bfloat16
    assert f(0).shape == (0,) and f().shape == ()
    assert f(2, requires_grad=True).requires_grad
    with pytest.raises(TypeError, match="floating"):
        f(3, dtype=zt.int32)


def test_random_statistics():
    zt.manual_seed(0)
    u = zt.rand(20000).numpy()
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    n = zt.randn(20000).numpy()
    assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03


def test_randint():
    zt.manual_seed(7)
    a = zt.randint(0, 10, (50,))
    zt.manual_seed(7)
    b = zt.randint(10, (50,))
    assert a.dtype is zt.int64 and a.shape == (50,)
    assert a.tolist() == b.tolist()
    assert a.numpy().min() >= 0 and a.numpy().max() < 10 and len(set(a.tolist())) > 5
    c = zt.randint(-3, 3, (4, 5), dtype=zt.int32)
    assert c.dtype is zt.int32 and c.shape == (4, 5) and c.numpy().min() >= -3 and c.numpy().max() < 3
    with pytest.raises(RuntimeError, match="low < high"):
        zt.randint(5, 5, (2,))


def test_manual_seed_checks():
    with pytest.raises(TypeError, match="manual_seed"):
        zt.manual_seed(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        zt.manual_seed(-1)


@pytest.mark.cpu_only  # get_rng_state() is the CPU generator, as in PyTorch
def test_rng_state_roundtrip():
    zt.manual_seed(3)
    state = zt.get_rng_state()
    a = zt.randn(4)
    zt.set_rng_state(state)
    np.testing.assert_array_equal(a.numpy(), zt.randn(4).numpy())


def test_size_errors():
    with pytest.raises(RuntimeError, match="zeros: negative dimension"):
        zt.zeros(2, -1)
    with pytest.raises(TypeError, match="ones: size must be"):
        zt.ones("a")


def test_from_numpy_shares_memory():
    a = np.zeros(3, dtype=np.float32)
    t = zt.from_numpy(a)
    a[1] = 5
    assert t.tolist() == [0.0, 5.0, 0.0]
    assert zt.as_tensor(t) is t
