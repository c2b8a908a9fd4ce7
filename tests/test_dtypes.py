"""dtypes: names, PyTorch's promotion over every pair (dimensioned, 0-d, Python scalars), casts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from oracle import helper_test_op, to_numpy, torch, torch_dtype

import zigtensor as zt

DTYPES = [zt.float32, zt.float64, zt.float16, zt.bfloat16, zt.int8, zt.uint8, zt.int32, zt.int64, zt.bool]
PAIRS = list(itertools.product(DTYPES, DTYPES))
SCALARS = [True, 2, 2.5]


def _pair(dt, shape):
    return zt.ones(shape, dtype=dt), torch.ones(shape, dtype=torch_dtype(dt))


@pytest.mark.parametrize("a,b", PAIRS, ids=lambda d: d.name)
def test_promote_types(a, b):
    assert torch_dtype(zt.promote_types(a, b)) == torch.promote_types(torch_dtype(a), torch_dtype(b))


# (shape of a, shape of b): both dimensioned, 0-d with dimensioned (both orders), both 0-d
@pytest.mark.parametrize("sa,sb", [((2,), (2,)), ((), (2,)), ((2,), ()), ((), ())], ids=str)
@pytest.mark.parametrize("a,b", PAIRS, ids=lambda d: d.name)
def test_result_type_tensors(a, b, sa, sb):
    (za, ta), (zb, tb) = _pair(a, sa), _pair(b, sb)
    assert torch_dtype(zt.result_type(za, zb)) == torch.result_type(ta, tb)


@pytest.mark.parametrize("shape", [(2,), ()], ids=str)
@pytest.mark.parametrize("s", SCALARS, ids=repr)
@pytest.mark.parametrize("a", DTYPES, ids=lambda d: d.name)
def test_result_type_scalar(a, s, shape):
    za, ta = _pair(a, shape)
    assert torch_dtype(zt.result_type(za, s)) == torch.result_type(ta, s)
    assert torch_dtype(zt.result_type(s, za)) == torch.result_type(s, ta)


@pytest.mark.parametrize("a,b", PAIRS, ids=lambda d: d.name)
def test_add_promotes(a, b):
    # the op itself, not only result_type: values and dtype against torch, dimensioned and 0-d
    for sa, sb in [((3,), (3,)), ((), (3,)), ((3,), ())]:
        (za, ta), (zb, tb) = _pair(a, sa), _pair(b, sb)
        if a is zt.bool and b is zt.bool:
            z, t = za + zb, ta + tb
        else:
            z, t = za * 3 + zb, ta * 3 + tb
        assert torch_dtype(z.dtype) == t.dtype, (sa, sb)
        np.testing.assert_allclose(to_numpy(z).astype(np.float64), to_numpy(t).astype(np.float64))


@pytest.mark.parametrize("s", SCALARS, ids=repr)
@pytest.mark.parametrize("a", DTYPES, ids=lambda d: d.name)
def test_scalar_ops_promote(a, s):
    za, ta = _pair(a, (3,))
    for f in (lambda x, y: x + y, lambda x, y: y + x, lambda x, y: x * y, lambda x, y: y * x):
        z, t = f(za, s), f(ta, s)
        assert torch_dtype(z.dtype) == t.dtype
        np.testing.assert_allclose(to_numpy(z).astype(np.float64), to_numpy(t).astype(np.float64))


@pytest.mark.parametrize("a", DTYPES, ids=lambda d: d.name)
def test_true_division(a):
    za, ta = _pair(a, (3,))
    assert torch_dtype((za / 2).dtype) == (ta / 2).dtype
    assert torch_dtype((za / za).dtype) == (ta / ta).dtype


def test_defaults():
    assert zt.tensor([1.0]).dtype is zt.float32
    assert zt.tensor([1]).dtype is zt.int64
    assert zt.tensor([True]).dtype is zt.bool
    assert zt.tensor(1.5).dtype is zt.float32
    assert zt.get_default_dtype() is zt.float32
    assert zt.tensor(np.zeros(2, dtype=np.float64)).dtype is zt.float64
    assert zt.float is zt.float32 and zt.double is zt.float64
    assert zt.half is zt.float16 and zt.long is zt.int64


def test_set_default_dtype():
    try:
        zt.set_default_dtype(zt.float64)
        assert zt.tensor([1.0]).dtype is zt.float64
        assert zt.zeros(2).dtype is zt.float64
        assert (zt.tensor([1]) * 0.5).dtype is zt.float64
    finally:
        zt.set_default_dtype(zt.float32)
    with pytest.raises(TypeError, match="floating"):
        zt.set_default_dtype(zt.int32)


def test_dtype_attributes():
    assert zt.float32.is_floating_point and not zt.int32.is_floating_point
    assert zt.bfloat16.itemsize == 2 and zt.int64.itemsize == 8
    assert repr(zt.float16) == "zigtensor.float16"
    assert zt.dtypes.as_dtype("float64") is zt.float64
    assert zt.dtypes.as_dtype(float) is zt.float32 and zt.dtypes.as_dtype(int) is zt.int64
    with pytest.raises(TypeError, match="unknown dtype name"):
        zt.dtypes.as_dtype("float128")


@pytest.mark.parametrize("a,b", PAIRS, ids=lambda d: d.name)
def test_to_dtype(a, b):
    vals = np.array([0.0, 1.0, 2.0, 3.0, 100.0]) if a is zt.uint8 else np.array([0.0, 1.0, -2.0, 3.75, 100.0])
    if a is zt.bool:
        vals = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    z = zt.tensor(vals, dtype=a).to(b)
    t = torch.tensor(vals, dtype=torch_dtype(a)).to(torch_dtype(b))
    assert torch_dtype(z.dtype) == t.dtype
    np.testing.assert_array_equal(to_numpy(z), to_numpy(t))


def test_cast_methods():
    x = zt.tensor([1.5, -2.5])
    assert x.float().dtype is zt.float32 and x.half().dtype is zt.float16 and x.long().dtype is zt.int64
    assert x.double().dtype is zt.float64 and x.bfloat16().dtype is zt.bfloat16 and x.int().dtype is zt.int32
    assert x.bool().dtype is zt.bool
    assert x.long().tolist() == [1, -2]  # truncation toward zero, as torch
    assert x.to("float64").dtype is zt.float64
    assert x.to(zt.float32) is x  # no-op casts return the same tensor


def test_cast_gradient():
    x = zt.tensor([1.0, 2.0], requires_grad=True)
    y = x.double() * 3
    y.sum().backward()
    assert x.grad.dtype is zt.float32
    assert x.grad.tolist() == [3.0, 3.0]


# 16-bit floats: forward only, loose tolerances
LOOSE = {zt.float16: dict(atol=1e-2, rtol=1e-2), zt.bfloat16: dict(atol=5e-2, rtol=2e-2)}


@pytest.mark.parametrize("dtype", [zt.float16, zt.bfloat16], ids=lambda d: d.name)
def test_half_ops(dtype):
    tol = dict(dtype=dtype, forward_only=True, **LOOSE[dtype])
    helper_test_op([(4, 5), (4, 5)], lambda x, y: x + y, **tol)
    helper_test_op([(4, 5), (4, 5)], lambda x, y: x * y, **tol)
    helper_test_op([(4, 5)], lambda x: x.exp(), **tol)
    helper_test_op([(4, 5)], lambda x: x.tanh(), **tol)
    helper_test_op([(4, 5)], lambda x: x.sum(1), **tol)
    helper_test_op([(4, 5)], lambda x: x.mean(), **tol)
    helper_test_op([(4, 5)], lambda x: x.softmax(-1), **tol)
    helper_test_op([(4, 5), (5, 3)], lambda x, y: x @ y, **tol)
    helper_test_op([(4, 5)], lambda x: x.relu(), **tol)


def test_half_mixed():
    # float16 with bfloat16 promotes to float32
    z = zt.ones(2, dtype=zt.float16) + zt.ones(2, dtype=zt.bfloat16)
    assert z.dtype is zt.float32
    # a float32 0-d tensor does not widen a float16 tensor
    assert (zt.ones(2, dtype=zt.float16) * zt.tensor(2.0)).dtype is zt.float16
