"""Elementwise ops: arithmetic, comparisons, unary math, activations, casts and where."""

from __future__ import annotations

import math

from ..autograd.function import Function
from ..dtypes import FLOAT, as_dtype, bool_, get_default_dtype
from .common import Tensor, as_scalar, check_broadcast, promote, to_float, unbroadcast


def _shape(x):
    return x.shape if isinstance(x, Tensor) else None


# --------------------------------------------------------------------------------------------- arithmetic
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        a, b = self.inputs
        return (
            unbroadcast(g, a.shape) if isinstance(a, Tensor) else None,
            unbroadcast(g, b.shape) if isinstance(b, Tensor) else None,
        )


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        a, b = self.inputs
        return (
            unbroadcast(g, a.shape) if isinstance(a, Tensor) else None,
            unbroadcast(-g, b.shape) if isinstance(b, Tensor) else None,
        )


class Mul(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, g):
        a, b = self.inputs
        return (
            unbroadcast(g * b, a.shape) if isinstance(a, Tensor) else None,
            unbroadcast(g * a, b.shape) if isinstance(b, Tensor) else None,
        )


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, g):
        a, b = self.inputs
        ga = unbroadcast(g / b, a.shape) if isinstance(a, Tensor) else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if isinstance(b, Tensor) else None
        return ga, gb


class Pow(Function):
    def forward(self, a, b):
        return self.xp.power(a, b)

    def backward(self, g):
        a, b = self.inputs
        ga = gb = None
        if isinstance(a, Tensor) and a.requires_grad:
            if isinstance(b, Tensor):
                ga = g * b * a ** (b - 1)
            elif b == 0:
                ga = g * 0
            else:
                ga = g * b * a ** (b - 1)
            ga = unbroadcast(ga, a.shape)
        if isinstance(b, Tensor) and b.requires_grad:
            if isinstance(a, Tensor):
                # d/db a**b = a**b log a, taken as 0 where a == 0 and b >= 0 (PyTorch's convention)
                safe = where((a == 0) & (b >= 0), 0.0, g * a**b * a.log())
            else:
                safe = g * a**b * math.log(a) if a > 0 else g * 0 if a == 0 else g * a**b * math.nan
            gb = unbroadcast(safe, b.shape)
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class FloorDivide(Function):
    differentiable = False

    def forward(self, a, b):
        return self.xp.floor_divide(a, b)


class Remainder(Function):
    # Python's sign convention (result takes the divisor's sign), like torch.remainder and NumPy.
    def forward(self, a, b):
        return self.xp.remainder(a, b)

    def backward(self, g):
        a, b = self.inputs
        ga = unbroadcast(g, a.shape) if isinstance(a, Tensor) else None
        gb = None
        if isinstance(b, Tensor):
            gb = unbroadcast(-g * (a / b).floor(), b.shape)
        return ga, gb


def _binary(cls, op):
    def fn(a, b):
        a, b = promote(op, a, b)
        check_broadcast(op, a, b)
        return cls.apply(a, b)

    fn.__name__ = op
    return fn


add, sub, mul = _binary(Add, "add"), _binary(Sub, "sub"), _binary(Mul, "mul")
remainder = _binary(Remainder, "remainder")


def div(a, b, rounding_mode=None):
    a, b = promote("div", a, b)
    check_broadcast("div", a, b)
    if rounding_mode == "floor":
        return FloorDivide.apply(a, b)
    if rounding_mode == "trunc":
        if _floating(a, b):
            return (a / b).trunc()
        # integer division rounding toward zero: |a| // |b| with the sign of a * b
        q = FloorDivide.apply(_abs(a), _abs(b))
        both = isinstance(a, Tensor) and isinstance(b, Tensor)
        return where((a < 0) ^ (b < 0) if both else _neg_mask(a, b), -q, q)
    if rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")
    # true division of integers gives the default float
    if not _floating(a, b):
        a = a.to(get_default_dtype()) if isinstance(a, Tensor) else float(a)
        b = b.to(get_default_dtype()) if isinstance(b, Tensor) else float(b)
    return Div.apply(a, b)


def _floating(a, b) -> bool:
    t = a if isinstance(a, Tensor) else b
    return t.dtype.category == FLOAT


def _abs(x):
    return x.abs() if isinstance(x, Tensor) else -x if x < 0 else x


def _neg_mask(a, b):
    """(a < 0) xor (b < 0) when one side is a Python number."""
    if isinstance(a, Tensor):
        return a < 0 if b >= 0 else a >= 0
    return b < 0 if a >= 0 else b >= 0


def floor_divide(a, b):
    a, b = promote("floor_divide", a, b)
    check_broadcast("floor_divide", a, b)
    return FloorDivide.apply(a, b)


def pow(a, b):
    a, b = promote("pow", a, b)
    check_broadcast("pow", a, b)
    if isinstance(a, Tensor) and a.dtype.category != FLOAT and isinstance(b, Tensor) is False and b < 0:
        raise RuntimeError(f"pow: integers to negative integer powers are not allowed (exponent {b})")
    return Pow.apply(a, b)


def neg(a):
    if a.dtype is bool_:
        raise RuntimeError("neg: negation, the `-` operator, on a bool tensor is not supported; use ~ or "
                           "logical_not() to invert a mask")
    return Neg.apply(a)


# --------------------------------------------------------------------------------------------- comparisons
class Compare(Function):
    differentiable = False

    def forward(self, a, b, op):
        return op(a, b)


def _compare(name, ufunc_name):
    def fn(a, b):
        a, b = promote(name, a, b)
        check_broadcast(name, a, b)
        t = a if isinstance(a, Tensor) else b
        return Compare.apply(a, b, op=getattr(t.device.backend.xp, ufunc_name))

    fn.__name__ = name
    return fn


eq, ne = _compare("eq", "equal"), _compare("ne", "not_equal")
lt, le = _compare("lt", "less"), _compare("le", "less_equal")
gt, ge = _compare("gt", "greater"), _compare("ge", "greater_equal")
logical_and, logical_or = _compare("logical_and", "logical_and"), _compare("logical_or", "logical_or")
logical_xor = _compare("logical_xor", "logical_xor")


class BitwiseOrLogical(Function):
    differentiable = False

    def forward(self, a, b, op):
        return op(a, b)


def _bitwise(name, ufunc_name):
    def fn(a, b):
        a, b = promote(name, a, b)
        t = a if isinstance(a, Tensor) else b
        if t.dtype.category == FLOAT:
            raise TypeError(f"{name}: not defined for floating tensors "
                            f"(got {_dtype_name(a)} and {_dtype_name(b)})")
        check_broadcast(name, a, b)
        return BitwiseOrLogical.apply(a, b, op=getattr(t.device.backend.xp, ufunc_name))

    fn.__name__ = name
    return fn


def _dtype_name(x):
    return x.dtype.name if isinstance(x, Tensor) else type(x).__name__


bitwise_and, bitwise_or = _bitwise("bitwise_and", "bitwise_and"), _bitwise("bitwise_or", "bitwise_or")
bitwise_xor = _bitwise("bitwise_xor", "bitwise_xor")


class LogicalNot(Function):
    differentiable = False

    def forward(self, a):
        return self.xp.logical_not(a) if a.dtype == bool else self.xp.invert(a)


def logical_not(a):
    return LogicalNot.apply(a) if a.dtype is bool_ else Compare.apply(a, 0, op=a.device.backend.xp.equal)


def invert(a):
    if a.dtype.category == FLOAT:
        raise TypeError(f"bitwise_not: not defined for floating tensors (got {a.dtype})")
    return LogicalNot.apply(a)


# --------------------------------------------------------------------------------------------- unary math
class Exp(Function):
    save_output = True

    def forward(self, a):
        return self.xp.exp(a)

    def backward(self, g):
        return g * self.output()


class Log(Function):
    def forward(self, a):
        return self.xp.log(a)

    def backward(self, g):
        return g / self.inputs[0]


class Log1p(Function):
    def forward(self, a):
        return self.xp.log1p(a)

    def backward(self, g):
        return g / (self.inputs[0] + 1)


class Sqrt(Function):
    save_output = True

    def forward(self, a):
        return self.xp.sqrt(a)

    def backward(self, g):
        return g / (2 * self.output())


class Rsqrt(Function):
    save_output = True

    def forward(self, a):
        xp = self.xp
        return xp.reciprocal(xp.sqrt(a))

    def backward(self, g):
        out = self.output()
        return g * -0.5 * out * out * out


class Sin(Function):
    def forward(self, a):
        return self.xp.sin(a)

    def backward(self, g):
        return g * self.inputs[0].cos()


class Cos(Function):
    def forward(self, a):
        return self.xp.cos(a)

    def backward(self, g):
        return -g * self.inputs[0].sin()


class Atan(Function):
    def forward(self, a):
        return self.xp.arctan(a)

    def backward(self, g):
        x = self.inputs[0]
        return g / (x * x + 1)


class Asin(Function):
    def forward(self, a):
        return self.xp.arcsin(a)

    def backward(self, g):
        x = self.inputs[0]
        return g * (1 - x * x).rsqrt()


class Acos(Function):
    def forward(self, a):
        return self.xp.arccos(a)

    def backward(self, g):
        x = self.inputs[0]
        return -g * (1 - x * x).rsqrt()


class Atan2(Function):
    """atan2(y, x): the angle of the point (x, y); d/dy = x / r^2, d/dx = -y / r^2."""

    def forward(self, y, x):
        return self.xp.arctan2(y, x)

    def backward(self, g):
        y, x = self.inputs
        r2 = x * x + y * y
        return unbroadcast(g * x / r2, y.shape), unbroadcast(-g * y / r2, x.shape)


class Tanh(Function):
    save_output = True

    def forward(self, a):
        return self.xp.tanh(a)

    def backward(self, g):
        out = self.output()
        return g * (1 - out * out)


class Sigmoid(Function):
    save_output = True

    def forward(self, a):
        xp = self.xp
        # NOTE: split by sign so exp never overflows (float32 exp(89) is inf)
        e = xp.exp(-xp.abs(a))
        return xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)

    def backward(self, g):
        out = self.output()
        return g * out * (1 - out)


class Abs(Function):
    def forward(self, a):
        return self.xp.abs(a)

    def backward(self, g):
        return g * self.inputs[0].sign()


class Sign(Function):
    def forward(self, a):
        return self.xp.sign(a)

    def backward(self, g):
        return g * 0


class Relu(Function):
    def forward(self, a):
        return self.xp.maximum(a, 0).astype(a.dtype, copy=False)

    def backward(self, g):
        return g * (self.inputs[0] > 0)


class Round(Function):
    """floor / ceil / round / trunc: piecewise constant, so the gradient is zero (as in PyTorch)."""

    def forward(self, a, fn):
        return fn(a)

    def backward(self, g):
        return g * 0


class Erf(Function):
    def forward(self, a):
        return self.device.backend.erf(a)

    def backward(self, g):
        x = self.inputs[0]
        return g * (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp()


class Clamp(Function):
    def forward(self, a, lo, hi):
        xp = self.xp
        out = a
        if lo is not None:
            out = xp.maximum(out, lo)
        if hi is not None:
            out = xp.minimum(out, hi)
        return out.astype(a.dtype, copy=False) if out is not a else out.copy()

    def backward(self, g):
        x, lo, hi = self.inputs
        mask = None
        if lo is not None:
            mask = x >= lo
        if hi is not None:
            m = x <= hi
            mask = m if mask is None else mask & m
        return (g * mask, None, None)


class Maximum(Function):
    def forward(self, a, b):
        return self.xp.maximum(a, b)

    def backward(self, g):
        a, b = self.inputs
        # ties split the gradient evenly, as PyTorch does
        gt_, eq_ = (a > b), (a == b)
        wa = gt_ + eq_ * 0.5
        return unbroadcast(g * wa, a.shape), unbroadcast(g * (1 - wa), b.shape)


class Minimum(Function):
    def forward(self, a, b):
        return self.xp.minimum(a, b)

    def backward(self, g):
        a, b = self.inputs
        lt_, eq_ = (a < b), (a == b)
        wa = lt_ + eq_ * 0.5
        return unbroadcast(g * wa, a.shape), unbroadcast(g * (1 - wa), b.shape)


class Cast(Function):
    def forward(self, a, dtype):
        if a.dtype.kind in "fV" and dtype.np.kind == "u":  # ("V": ml_dtypes' bfloat16 and float8 types)
            # NOTE: float -> unsigned of a negative value is undefined in C; NumPy's result differs by platform
            # and ml_dtypes version. PyTorch wraps modulo 2^bits, as going through int64 does.
            return a.astype(self.xp.int64).astype(dtype.np)
        return a.astype(dtype.np)

    def backward(self, g):
        x = self.inputs[0]
        return (g.to(x.dtype) if x.dtype.category == FLOAT else None, None)


class Where(Function):
    def forward(self, cond, a, b):
        return self.xp.where(cond, a, b)

    def backward(self, g):
        cond, a, b = self.inputs
        ga = unbroadcast(where(cond, g, 0.0), a.shape) if isinstance(a, Tensor) else None
        gb = unbroadcast(where(cond, 0.0, g), b.shape) if isinstance(b, Tensor) else None
        return None, ga, gb


def _unary_float(cls, name):
    def fn(a):
        return cls.apply(to_float(a))

    fn.__name__ = name
    return fn


exp, log, log1p = _unary_float(Exp, "exp"), _unary_float(Log, "log"), _unary_float(Log1p, "log1p")
sqrt, rsqrt = _unary_float(Sqrt, "sqrt"), _unary_float(Rsqrt, "rsqrt")
sin, cos, tanh = _unary_float(Sin, "sin"), _unary_float(Cos, "cos"), _unary_float(Tanh, "tanh")
sigmoid, erf = _unary_float(Sigmoid, "sigmoid"), _unary_float(Erf, "erf")
atan, asin, acos = _unary_float(Atan, "atan"), _unary_float(Asin, "asin"), _unary_float(Acos, "acos")


def atan2(y, x):
    """The angle of the point (x, y) in (-pi, pi], elementwise with broadcasting."""
    y, x = _tensors(to_float(y) if isinstance(y, Tensor) else y, to_float(x) if isinstance(x, Tensor) else x)
    return Atan2.apply(y, x)


def abs(a):
    return Abs.apply(a)


def sign(a):
    return Sign.apply(a)


def relu(a):
    return Relu.apply(a)


def _rounding(name):
    def fn(a):
        if a.dtype.category != FLOAT:
            return a.clone()
        return Round.apply(a, fn=getattr(a.device.backend.xp, name))

    fn.__name__ = name
    return fn


floor, ceil, round, trunc = _rounding("floor"), _rounding("ceil"), _rounding("round"), _rounding("trunc")


def clamp(a, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = a
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    lo = None if min is None else as_scalar(min, "clamp")
    hi = None if max is None else as_scalar(max, "clamp")
    if a.dtype.category != FLOAT and (isinstance(lo, float) or isinstance(hi, float)):
        a = to_float(a)
    return Clamp.apply(a, lo, hi)


def maximum(a, b):
    a, b = promote("maximum", a, b)
    check_broadcast("maximum", a, b)
    return Maximum.apply(*_tensors(a, b))


def minimum(a, b):
    a, b = promote("minimum", a, b)
    check_broadcast("minimum", a, b)
    return Minimum.apply(*_tensors(a, b))


def _tensors(a, b):
    from ..creation import tensor

    t = a if isinstance(a, Tensor) else b
    if not isinstance(a, Tensor):
        a = tensor(a, dtype=t.dtype, device=t.device)
    if not isinstance(b, Tensor):
        b = tensor(b, dtype=t.dtype, device=t.device)
    return a, b


def cast(a: Tensor, dtype) -> Tensor:
    dtype = as_dtype(dtype)
    if a.dtype is dtype:
        return a
    return Cast.apply(a, dtype)


def where(cond, a=None, b=None):
    """where(cond, a, b): a where cond is true, else b. where(cond) alone gives the indices (nonzero)."""
    if b is None and a is None:
        return cond.nonzero(as_tuple=True)
    if not isinstance(cond, Tensor):
        raise TypeError(f"where: condition must be a bool Tensor, got {type(cond).__name__}")
    if cond.dtype is not bool_:
        raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    a, b = promote("where", a, b)
    for x in (a, b):
        if isinstance(x, Tensor) and x.device is not cond.device:
            raise RuntimeError(
                f"where: expected all tensors on the same device, found {cond.device} and {x.device}"
            )
    shapes = [cond.shape] + [x.shape for x in (a, b) if isinstance(x, Tensor)]
    from .common import broadcast_shapes

    broadcast_shapes("where", *shapes)
    return Where.apply(cond, a, b)


# --------------------------------------------------------------------------------------------- activations
_GELU_C = math.sqrt(2.0 / math.pi)  # the tanh form: 0.5 x (1 + tanh(C (x + K x^3)))
_GELU_K = 0.044715
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _widen(a):
    # 16-bit floats are computed in float32 and rounded once, as PyTorch's CPU kernels do; a 0-d array
    # becomes 1-d, since NumPy's in-place ops need arrays (not scalars) to write into
    a = a.reshape(1) if a.ndim == 0 else a
    return a.astype("float32") if a.dtype.itemsize == 2 else a


class Gelu(Function):
    """x * Phi(x), Phi the standard normal CDF (or its tanh approximation), in one op: the composed form
    made a dozen full-size temporaries per call, forward and backward."""

    def forward(self, a, approximate):
        fused = getattr(self.device.backend, "gelu", None)
        if fused is not None:  # the backend's kernel; its backward takes what it saved (aux)
            self.fused = True
            out, self.aux = fused(a, approximate)
            return out
        self.fused = False
        xp, x = self.xp, _widen(a)
        if approximate == "tanh":
            t = x * x  # t = tanh(C (x + K x^3)), computed in place
            t *= _GELU_K
            t += 1
            t *= x
            t *= _GELU_C
            self.aux = xp.tanh(t, out=t)
            out = t + 1
        else:
            self.aux = cdf = self.device.backend.erf(x * (1 / math.sqrt(2.0)))  # Phi(x) = (1 + erf) / 2
            cdf += 1
            cdf *= 0.5
            out = cdf * 2
        out *= x
        out *= 0.5
        return out.astype(a.dtype, copy=False).reshape(a.shape)

    def backward(self, g):
        x, approximate = self.inputs
        return GeluBackward.apply(g, x, approximate, self.aux, self.fused), None

    def release(self) -> None:
        super().release()
        self.aux = None


class GeluBackward(Function):
    """g * gelu'(x), an op of its own so that gelu's backward is differentiable again (create_graph).
    aux: what gelu's forward kept, so it is not computed twice: the backend kernel's saved array (fused), or
    the composed form's Phi(x) or tanh."""

    def forward(self, g, a, approximate, aux, fused):
        if fused:
            return self.device.backend.gelu_backward(g, a, approximate, aux)
        xp, x = self.xp, _widen(a)
        if approximate == "tanh":
            # 0.5 (1 + t) + 0.5 x (1 - t^2) u', u' = C (1 + 3 K x^2)
            d = x * x
            d *= 3 * _GELU_K * _GELU_C
            d += _GELU_C
            sech2 = aux * aux
            xp.subtract(1, sech2, out=sech2)
            d *= sech2
            d *= x
            d += aux
            d += 1
            d *= 0.5
        else:
            # Phi(x) + x phi(x)
            d = x * x
            d *= -0.5
            d = xp.exp(d, out=d)
            d *= _INV_SQRT_2PI
            d *= x
            d += aux
        d *= _widen(g)
        return d.astype(a.dtype, copy=False).reshape(a.shape)

    def backward(self, gg):
        g, x, approximate, aux, fused = self.inputs
        dg = GeluBackward.apply(gg, x, approximate, aux, fused) if g.requires_grad else None
        dx = None
        if x.requires_grad:
            if approximate == "tanh":
                # with u = C (x + K x^3), u' = C (1 + 3 K x^2), u'' = 6 C K x:
                # gelu'' = (1 - t^2) (u' - x t u'^2 + x u'' / 2)
                x2 = x * x
                t = tanh((x + _GELU_K * x2 * x) * _GELU_C)
                du = (1 + 3 * _GELU_K * x2) * _GELU_C
                second = (1 - t * t) * (du - x * t * du * du + x * x * (3 * _GELU_C * _GELU_K))
            else:
                second = (x * x * -0.5).exp() * _INV_SQRT_2PI * (2 - x * x)  # phi(x) (2 - x^2)
            dx = gg * g * second
        return dg, dx, None, None, None


def gelu(x, approximate: str = "none"):
    """x * Phi(x) (approximate='none'), or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ('tanh')."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(to_float(x), approximate)


def silu(x):
    return x * sigmoid(x)


def leaky_relu(x, negative_slope: float = 0.01):
    return where(x > 0, x, x * negative_slope)


def lerp(start, end, weight):
    """start + weight * (end - start): linear interpolation, weight a number or a tensor (an exponential moving
    average of weights is lerp(avg, w, 1 - decay))."""
    return start + (end - start) * weight


def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2."""
    return input + tensor1 * tensor2 * value


def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 / tensor2."""
    return input + tensor1 / tensor2 * value
