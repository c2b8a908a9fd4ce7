"""Elementwise ops against PyTorch: forward values, dtypes and gradients, one line per case."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import helper_test_op, torch

import zigtensor as zt

POS = dict(low=0.5, high=2.0)  # for ops defined (or smooth) only away from zero


# ------------------------------------------------------------------------------------------ binary arithmetic
def test_add():
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x + y)
    helper_test_op([(3, 4), (4,)], lambda x, y: x + y)
    helper_test_op([(3, 1), (1, 4)], lambda x, y: x + y)
    helper_test_op([(2, 1, 4), (3, 1)], lambda x, y: x + y)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x + y, layout="T")
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x + y, layout="sliced")
    helper_test_op([(0, 4), (4,)], lambda x, y: x + y)
    helper_test_op([(), ()], lambda x, y: x + y)
    helper_test_op([(), (3, 4)], lambda x, y: x + y)
    helper_test_op([(3, 4)], lambda x: x + 2)
    helper_test_op([(3, 4)], lambda x: 2.5 + x)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x.add(y, alpha=2))
    helper_test_op([(3, 4), (4,)], lambda x, y: torch.add(x, y), lambda x, y: zt.add(x, y))


def test_sub():
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x - y)
    helper_test_op([(3, 4), (4,)], lambda x, y: x - y)
    helper_test_op([(3, 1), (1, 4)], lambda x, y: y - x, layout="T")
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x - y, layout="sliced")
    helper_test_op([(0, 4), (4,)], lambda x, y: x - y)
    helper_test_op([(), (2,)], lambda x, y: x - y)
    helper_test_op([(3, 4)], lambda x: x - 1.5)
    helper_test_op([(3, 4)], lambda x: 1 - x)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x.sub(y, alpha=3))
    helper_test_op([(3, 4), (4,)], lambda x, y: torch.sub(x, y), lambda x, y: zt.sub(x, y))


def test_mul():
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x * y)
    helper_test_op([(3, 4), (4,)], lambda x, y: x * y)
    helper_test_op([(2, 3, 1), (1, 4)], lambda x, y: x * y)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x * y, layout="T")
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x * y, layout="sliced")
    helper_test_op([(2, 0, 3), (3,)], lambda x, y: x * y)
    helper_test_op([(), ()], lambda x, y: x * y)
    helper_test_op([(3, 4), ()], lambda x, y: x * y)
    helper_test_op([(3, 4)], lambda x: x * 3)
    helper_test_op([(3, 4)], lambda x: -0.5 * x)
    helper_test_op([(3, 4)], lambda x: x * x)
    helper_test_op([(3, 4), (4,)], lambda x, y: torch.mul(x, y), lambda x, y: zt.mul(x, y))


def test_div():
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x / y, **POS)
    helper_test_op([(3, 4), (4,)], lambda x, y: x / y, **POS)
    helper_test_op([(3, 1), (1, 4)], lambda x, y: x / y, layout="T", **POS)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x / y, layout="sliced", **POS)
    helper_test_op([(0, 4), (4,)], lambda x, y: x / y, **POS)
    helper_test_op([(), ()], lambda x, y: x / y, **POS)
    helper_test_op([(3, 4)], lambda x: x / 4)
    helper_test_op([(3, 4)], lambda x: 2 / x, **POS)
    helper_test_op([(3, 4), (4,)], lambda x, y: torch.div(x, y), lambda x, y: zt.div(x, y), **POS)
    helper_test_op([(3, 4), (4,)], lambda x, y: x.div(y, rounding_mode="trunc"), forward_only=True, **POS)
    helper_test_op([(3, 4), (4,)], lambda x, y: x.div(y, rounding_mode="floor"), forward_only=True, **POS)


def test_floor_divide():
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x // y, forward_only=True, **POS)
    helper_test_op([(3, 4), (4,)], lambda x, y: x // -y, forward_only=True, **POS)
    helper_test_op([(3, 4)], lambda x: x // 0.3, forward_only=True)
    helper_test_op([(3, 4)], lambda x: 3 // x, forward_only=True, **POS)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: torch.floor_divide(x, y),
                   lambda x, y: zt.floor_divide(x, y),
                   forward_only=True, **POS)


def test_remainder():
    helper_test_op([(3, 4)], lambda x: x % 0.7)
    helper_test_op([(3, 4)], lambda x: x % -0.7)
    helper_test_op([(3, 4), (4,)], lambda x, y: x % y, **POS)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x % -y, layout="T", **POS)
    helper_test_op([(3, 4)], lambda x: 3 % x, forward_only=True, **POS)  # torch has no gradient here
    helper_test_op([(3, 4), (3, 4)], lambda x, y: torch.remainder(x, y), lambda x, y: zt.remainder(x, y),
                   **POS)


INTS = [np.array([[7, -7, 5], [-5, 0, 3]]), np.array([[2, 2, -3], [-3, 4, -2]])]


def test_integer_arithmetic():
    kw = dict(dtype=zt.int64, values=INTS, forward_only=True)
    helper_test_op(None, lambda x, y: x + y, **kw)
    helper_test_op(None, lambda x, y: x * y - 3, **kw)
    helper_test_op(None, lambda x, y: x // y, **kw)
    helper_test_op(None, lambda x, y: x % y, **kw)
    helper_test_op(None, lambda x, y: x / y, **kw)
    helper_test_op(None, lambda x, y: x.div(y, rounding_mode="trunc"), **kw)
    helper_test_op(None, lambda x, y: x.div(y, rounding_mode="floor"), **kw)
    helper_test_op(None, lambda x, y: x ** y.abs(), **kw)
    helper_test_op(None, lambda x, y: x * 2.5, **kw)
    helper_test_op(None, lambda x, y: -x, **kw)
    helper_test_op(None, lambda x, y: x.abs(), **kw)
    helper_test_op(None, lambda x, y: x.sign(), **kw)
    helper_test_op(None, lambda x, y: x.clamp(-2, 4), **kw)
    helper_test_op(None, lambda x, y: x.exp(), **kw)  # integers go to the default float
    helper_test_op(None, lambda x, y: torch.maximum(x, y), lambda x, y: zt.maximum(x, y), **kw)


def test_small_int_scalars_wrap_around():
    # a Python int beyond a small integer dtype's range wraps around, as in PyTorch (no OverflowError)
    i8, u8 = [np.array([100, -100, 7])], [np.array([1, 250, 7])]
    helper_test_op(None, lambda x: x + 200, dtype=zt.int8, values=i8)
    helper_test_op(None, lambda x: 300 * x, dtype=zt.int8, values=i8)
    helper_test_op(None, lambda x: x + (-1), dtype=zt.uint8, values=u8)
    helper_test_op(None, lambda x: x < 300, dtype=zt.uint8, values=u8)
    helper_test_op(None, lambda x: x * 70000, dtype=zt.int16, values=i8)


def test_bool_arithmetic():
    v = [np.array([True, False, True]), np.array([True, True, False])]
    helper_test_op(None, lambda x, y: x + y, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: x * y, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: x * 2, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: x + 0.5, dtype=zt.bool, values=v)
    with pytest.raises(RuntimeError, match="neg: .* bool tensor is not supported"):
        -zt.tensor([True])


def test_pow():
    helper_test_op([(3, 4)], lambda x: x ** 2)
    helper_test_op([(3, 4)], lambda x: x ** 3)
    helper_test_op([(3, 4)], lambda x: x ** -1, **POS)
    helper_test_op([(3, 4)], lambda x: x ** 0.5, **POS)
    helper_test_op([(3, 4)], lambda x: x ** 0)
    helper_test_op([(3, 4)], lambda x: 2 ** x)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x ** y, **POS)
    helper_test_op([(3, 4), (4,)], lambda x, y: x ** y, layout="T", **POS)
    helper_test_op([(3, 4), ()], lambda x, y: x ** y, **POS)
    helper_test_op([(0, 4)], lambda x: x ** 2)
    helper_test_op([()], lambda x: x ** 3)
    helper_test_op([(3, 4), (4,)], lambda x, y: torch.pow(x, y), lambda x, y: zt.pow(x, y), **POS)


def test_pow_at_zero():
    # d/dy 0**y is 0 for y >= 0 (PyTorch's convention), and d/dx x**0 is 0
    z = np.array([0.0, 0.0, 1.5, 2.0])
    helper_test_op(None, lambda x, y: x ** y, values=[z, np.array([0.5, 2.0, 1.0, 3.0])])
    helper_test_op(None, lambda x: x ** 0, values=[z])


# --------------------------------------------------------------------------------------------- comparisons
@pytest.mark.parametrize("name", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons(name):
    op = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
          "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}[name]
    half = [np.array([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0]]), np.array([0.5, 0.0, 1.0])]  # ties included
    helper_test_op(None, op, values=half)
    helper_test_op([(3, 4), (3, 4)], op)
    helper_test_op([(3, 4)], lambda x: op(x, 0.5))
    helper_test_op([(3, 4)], lambda x: op(0.5, x))
    helper_test_op([(3, 4), (4,)], op, layout="T")
    helper_test_op([(0, 3), (3,)], op)
    helper_test_op([(), ()], op)
    helper_test_op(None, op, dtype=zt.int64, values=INTS)
    helper_test_op(None, lambda x, y: op(x, 1.5), dtype=zt.int64, values=INTS)
    helper_test_op([(3, 4), (3, 4)], lambda x, y: getattr(torch, name)(x, y),
                   lambda x, y: getattr(zt, name)(x, y))
    helper_test_op([(3, 4), (3, 4)], lambda x, y: getattr(x, name)(y))


def test_comparison_mixed_dtypes():
    a = zt.tensor([1, 2, 3])
    assert (a == zt.tensor([1.0, 2.5, 3.0])).tolist() == [True, False, True]
    assert (a < 2.5).tolist() == [True, True, False]


def test_logical():
    v = [np.array([True, False, True, False]), np.array([True, True, False, False])]
    helper_test_op(None, lambda x, y: x & y, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: x | y, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: x ^ y, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: ~x, dtype=zt.bool, values=v)
    helper_test_op(None, lambda x, y: torch.logical_and(x, y), lambda x, y: zt.logical_and(x, y),
                   dtype=zt.bool,
                   values=v)
    helper_test_op(None, lambda x, y: torch.logical_or(x, y), lambda x, y: zt.logical_or(x, y), dtype=zt.bool,
                   values=v)
    helper_test_op(None, lambda x, y: torch.logical_not(x), lambda x, y: zt.logical_not(x), dtype=zt.bool,
                   values=v)
    helper_test_op([(3, 4)], lambda x: torch.logical_not(x), lambda x: zt.logical_not(x))


# --------------------------------------------------------------------------------------------- unary math
UNARY = {
    "neg": {}, "abs": {}, "exp": {}, "log": POS, "log1p": dict(low=-0.5, high=2.0), "sqrt": POS, "rsqrt": POS,
    "sin": {}, "cos": {}, "tanh": {}, "sigmoid": {}, "relu": {}, "sign": {},
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name):
    kw = UNARY[name]
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(), **kw)
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x), lambda x: getattr(zt, name)(x), **kw)
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(), layout="T", **kw)
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(), layout="sliced", **kw)
    helper_test_op([(0, 4)], lambda x: getattr(x, name)(), **kw)
    helper_test_op([()], lambda x: getattr(x, name)(), **kw)
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(), dtype=zt.float64, atol=1e-12, rtol=1e-10,
                   grad_atol=1e-12, grad_rtol=1e-10, **kw)


def test_unary_operators():
    helper_test_op([(3, 4)], lambda x: -x)
    helper_test_op([(3, 4)], lambda x: abs(x))
    helper_test_op([(3, 4)], lambda x: +x)


def test_exp_log_large():
    helper_test_op([(3, 4)], lambda x: x.exp(), low=-80, high=80)
    helper_test_op([(3, 4)], lambda x: x.sigmoid(), low=-100, high=100)
    helper_test_op([(3, 4)], lambda x: x.tanh(), low=-30, high=30)
    helper_test_op([(3, 4)], lambda x: x.log(), low=1e-3, high=1e3)


def test_unary_integer_inputs():
    kw = dict(dtype=zt.int64, values=[np.array([[1, 4], [9, 16]])], forward_only=True)
    for name in ("exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu", "abs",
                 "neg"):
        helper_test_op(None, lambda x, name=name: getattr(x, name)(), **kw)


def test_clamp():
    helper_test_op([(3, 4)], lambda x: x.clamp(-0.5, 0.5))
    helper_test_op([(3, 4)], lambda x: x.clamp(min=0.1))
    helper_test_op([(3, 4)], lambda x: x.clamp(max=-0.2))
    helper_test_op([(3, 4)], lambda x: x.clamp(-1, 1), layout="T")
    helper_test_op([(0, 4)], lambda x: x.clamp(-1, 1))
    helper_test_op([()], lambda x: x.clamp(0, 1))
    helper_test_op([(3, 4)], lambda x: torch.clamp(x, -1, 1), lambda x: zt.clamp(x, -1, 1))
    helper_test_op([(3, 4)], lambda x: torch.clip(x, -1, 1), lambda x: zt.clip(x, -1, 1))
    helper_test_op([(3, 4), (4,), (4,)], lambda x, lo, hi: x.clamp(lo, lo + 1))
    helper_test_op([(3, 4), (3, 4)], lambda x, hi: x.clamp(max=hi))
    helper_test_op(None, lambda x: x.clamp(-1, 2), dtype=zt.int64, values=INTS[:1])
    helper_test_op(None, lambda x: x.clamp(-1.5, 2.5), dtype=zt.int64, values=INTS[:1])
    # at the boundary the gradient passes, as in PyTorch
    helper_test_op(None, lambda x: x.clamp(-1.0, 1.0), values=[np.array([-1.0, 1.0, 0.0, 2.0])])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum(name):
    def f(mod):
        return lambda x, y: getattr(mod, name)(x, y)

    helper_test_op([(3, 4), (3, 4)], f(torch), f(zt))
    helper_test_op([(3, 4), (4,)], f(torch), f(zt))
    helper_test_op([(3, 1), (1, 4)], f(torch), f(zt), layout="T")
    helper_test_op([(3, 4), (3, 4)], f(torch), f(zt), layout="sliced")
    helper_test_op([(0, 4), (4,)], f(torch), f(zt))
    helper_test_op([(), ()], f(torch), f(zt))
    helper_test_op([(3, 4), (3, 4)], lambda x, y: getattr(x, name)(y))
    # ties split the gradient evenly
    helper_test_op(None, f(torch), f(zt), values=[np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])])


def test_max_min_elementwise_form():
    helper_test_op([(3, 4), (3, 4)], lambda x, y: x.max(y))
    helper_test_op([(3, 4), (4,)], lambda x, y: torch.min(x, y), lambda x, y: zt.min(x, y))


def test_where():
    helper_test_op([(3, 4), (3, 4), (3, 4)], lambda c, x, y: torch.where(c > 0, x, y),
                   lambda c, x, y: zt.where(c > 0, x, y))
    helper_test_op([(3, 1), (1, 4), (4,)], lambda c, x, y: torch.where(c > 0, x, y),
                   lambda c, x, y: zt.where(c > 0, x, y))
    helper_test_op([(3, 4), (3, 4)], lambda c, x: torch.where(c > 0, x, 0.5),
                   lambda c, x: zt.where(c > 0, x, 0.5))
    helper_test_op([(3, 4), (3, 4)], lambda c, x: torch.where(c > 0, 2.0, x),
                   lambda c, x: zt.where(c > 0, 2.0, x))
    helper_test_op([(3, 4), (3, 4), (3, 4)], lambda c, x, y: torch.where(c > 0, x, y),
                   lambda c, x, y: zt.where(c > 0, x, y), layout="T")
    helper_test_op([(0, 4), (4,), (4,)], lambda c, x, y: torch.where(c > 0, x, y),
                   lambda c, x, y: zt.where(c > 0, x, y))
    helper_test_op([(), (), ()], lambda c, x, y: torch.where(c > 0, x, y),
                   lambda c, x, y: zt.where(c > 0, x, y))
    helper_test_op([(3, 4), (3, 4)], lambda c, x: x.where(c > 0, c))


def test_where_promotes():
    c = zt.tensor([True, False])
    assert zt.where(c, zt.tensor([1, 2]), zt.tensor([0.5, 1.5])).dtype is zt.float32
    assert zt.where(c, zt.tensor([1, 2]), 0).dtype is zt.int64
    assert zt.where(c, zt.tensor([1, 2], dtype=zt.int32), 2.5).dtype is zt.float32
    assert zt.where(c, zt.ones(2, dtype=zt.float16), 2.5).dtype is zt.float16
    idx = zt.where(zt.tensor([[True, False], [False, True]]))
    assert [i.tolist() for i in idx] == [[0, 1], [0, 1]]


def test_rounding():
    for name in ("floor", "ceil", "round", "trunc"):
        helper_test_op([(3, 4)], lambda x, name=name: getattr(x, name)())
        helper_test_op([(3, 4)], lambda x, name=name: getattr(torch, name)(x),
                       lambda x, name=name: getattr(zt, name)(x))


def test_erf():
    helper_test_op([(3, 4)], lambda x: x.erf())
    helper_test_op([(3, 4)], lambda x: torch.erf(x), lambda x: zt.erf(x))


def test_square_reciprocal():
    helper_test_op([(3, 4)], lambda x: x.square())
    helper_test_op([(3, 4)], lambda x: x.reciprocal(), **POS)


def test_chained_expression():
    helper_test_op([(4, 5), (5,), (4, 1)],
                   lambda x, y, z: ((x * y).exp() - z.sigmoid() * x / (y.abs() + 1)).tanh())
    helper_test_op([(4, 5)], lambda x: (x * x).sum() * x)  # a 0-d result broadcast back in


# ------------------------------------------------------------------------------------ more math and tests
SPECIALS = np.array([[1.5, -2.25, np.nan, 0.0], [np.inf, -np.inf, 0.3, -7.0]])


@pytest.mark.parametrize("name", ["exp2", "log2", "log10", "sinh", "cosh", "frac"])
def test_more_unary_math(name):
    low, high = (0.1, 4.0) if name.startswith("log") else (-3.0, 3.0)
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x), lambda x: getattr(zt, name)(x), low=low, high=high)
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(), low=low, high=high)


@pytest.mark.parametrize("name", ["logaddexp", "hypot", "fmod"])
def test_more_binary_math(name):
    helper_test_op([(3, 4), (4,)], lambda a, b: getattr(torch, name)(a, b), lambda a, b: getattr(zt, name)(a, b),
                   low=0.5, high=3.0)
    helper_test_op([], lambda a, b: getattr(torch, name)(a, b), lambda a, b: getattr(zt, name)(a, b),
                   values=[np.array([-5.5, 7.25, -1.0, 40.0]), np.array([2.0, -3.0, 0.75, 39.0])])


def test_predicates_and_nan_to_num():
    for name in ("isnan", "isinf", "isfinite"):
        helper_test_op([], lambda x, name=name: getattr(x, name)(), values=[SPECIALS], forward_only=True)
        helper_test_op([], lambda x, name=name: getattr(x, name)(), values=[np.array([1, -2, 3])], forward_only=True)
    helper_test_op([], lambda x: x.nan_to_num(), values=[SPECIALS], forward_only=True)
    helper_test_op([], lambda x: x.nan_to_num(nan=1.0, posinf=9.0, neginf=-9.0), values=[SPECIALS])
    a = zt.tensor(SPECIALS)
    assert zt.allclose(a, a, equal_nan=True) and not zt.allclose(a, a) and not a.allclose(a + 1e-3)
    assert a.allclose(a + 1e-9, equal_nan=True) and zt.equal(a[1:, :1], a[1:, :1]) and not zt.equal(a, a[:1])


@pytest.mark.parametrize("repeats, dim", [(2, 1), ([1, 0, 3], 0), (3, None), (2, -1)])
def test_repeat_interleave(repeats, dim):
    helper_test_op([(3, 4)], lambda x: torch.repeat_interleave(x, torch.tensor(repeats) if isinstance(repeats, list)
                                                               else repeats, dim=dim),
                   lambda x: zt.repeat_interleave(x, repeats, dim=dim))


def test_tile_and_masked_select():
    helper_test_op([(2, 3)], lambda x: x.tile((2,)))
    helper_test_op([(2, 3)], lambda x: x.tile((2, 1, 3)))
    helper_test_op([(2, 3), ], lambda x: x.masked_select(torch.tensor([True, False, True])),
                   lambda x: x.masked_select(zt.tensor([True, False, True])))


@pytest.mark.parametrize("name", ["atan", "asin", "acos", "arctan"])
def test_inverse_trigonometry(name):
    low, high = (-3.0, 3.0) if name in ("atan", "arctan") else (-0.95, 0.95)
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x), lambda x: getattr(zt, name)(x), low=low, high=high)
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(), low=low, high=high)


def test_atan2():
    helper_test_op([(3, 4), (4,)], lambda y, x: torch.atan2(y, x), lambda y, x: zt.atan2(y, x))
    helper_test_op([], lambda y, x: torch.atan2(y, x), lambda y, x: zt.atan2(y, x), forward_only=True,
                   values=[np.array([1.0, -1.0, 0.0, 2.0, -0.0]), np.array([-1.0, -1.0, 1.0, 0.0, -1.0])])
