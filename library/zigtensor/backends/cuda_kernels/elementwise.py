"""Launchers of kernels/elementwise.cu: every unary, binary and ternary op over CuPy arrays with NumPy's
broadcasting, type promotion and casting, plus the fused bias + activation (+ residual) epilogue.

    unary(op, x, out=None, dtype=None)          op in UNARY: "exp", "negative", "isnan", "gelu", ...
    binary(op, a, b, out=None, dtype=None)      op in BINARY: "add", "less", "floor_divide", ...; a or b may be
                                                a Python/NumPy scalar (passed by value, NumPy's weak scalars)
    ternary(op, a, b, c, out=None)              "where" (a is the condition), "clip", "lerp"
    where(cond, a, b), cast(x, dtype), copy(dst, src)
    bias_act(x, bias, act, residual=None)       ACT(x + bias) + residual over rows of x; act in ACTIVATIONS

Result dtypes are NumPy's (asked from the NumPy ufunc of the same name with `resolve_dtypes`, which knows
ml_dtypes' bfloat16), so an op written against NumPy gives the same dtype here. The computation runs in
float for 16/32-bit floats, double for float64 and 64-bit integers otherwise (PyTorch's "opmath").
Kernels: vec (C-contiguous, 16-byte aligned), contig (C-contiguous), strided (anything, dims merged first).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import strided as S
from ._launch import array_module, compute_ctype, ctype, data_ptr, kernel

FAMILY = "elementwise"
_CTYPE_SIZES = {"bool": 1, "signed char": 1, "unsigned char": 1, "short": 2, "__half": 2, "__nv_bfloat16": 2,
                "int": 4, "float": 4, "long long": 8, "double": 8}

# op -> the NumPy ufunc that decides dtypes (None: our own rule in _resolve)
UNARY = {
    "identity": None, "negative": np.negative, "positive": np.positive, "absolute": np.absolute, "sign": np.sign,
    "square": np.square, "reciprocal": np.reciprocal, "exp": np.exp, "expm1": np.expm1, "log": np.log,
    "log1p": np.log1p, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "arctan": np.arctan,
    "arcsin": np.arcsin, "arccos": np.arccos, "floor": np.floor,
    "ceil": np.ceil, "rint": np.rint, "trunc": np.trunc, "logical_not": np.logical_not, "invert": np.invert,
    "isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite, "isposinf": np.isinf, "isneginf": np.isinf,
    # not NumPy ufuncs: float results like exp's
    "rsqrt": np.sqrt, "erf": np.exp, "sigmoid": np.exp, "gelu": np.exp, "gelu_tanh": np.exp, "silu": np.exp,
    "relu": np.positive,
}
BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "floor_divide": np.floor_divide, "remainder": np.remainder, "power": np.power, "arctan2": np.arctan2,
    "maximum": np.maximum,
    "minimum": np.minimum, "fmax": np.fmax, "fmin": np.fmin, "equal": np.equal, "not_equal": np.not_equal,
    "less": np.less, "less_equal": np.less_equal, "greater": np.greater, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
    "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
    # g * activation'(x): float results like multiply's
    "gelu_backward": np.multiply, "gelu_tanh_backward": np.multiply, "silu_backward": np.multiply,
    "relu_backward": np.multiply,
}
TERNARY = ("where", "clip", "lerp")
ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh", "silu")
_FLOAT_ONLY = {"rsqrt", "erf", "sigmoid", "gelu", "gelu_tanh", "silu", "gelu_backward", "gelu_tanh_backward",
               "silu_backward"}


class ScalarOperand:
    """A Python or NumPy scalar operand: its value and the dtype (or weak Python type) NumPy would see."""

    __slots__ = ("value", "kind")

    def __init__(self, value):
        if isinstance(value, np.generic):
            self.value, self.kind = value.item(), value.dtype
        elif isinstance(value, (bool, np.bool_)):
            self.value, self.kind = bool(value), np.dtype(bool)
        elif isinstance(value, numbers.Integral):
            self.value, self.kind = int(value), int
        elif isinstance(value, numbers.Real):
            self.value, self.kind = float(value), float
        else:
            raise TypeError(f"elementwise: operand must be an array or a real scalar, got {type(value).__name__} "
                            f"({value!r})")


def _is_array(x) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and not isinstance(x, np.generic)


def _operand(x):
    return x if _is_array(x) else ScalarOperand(x)


def _kind(x):
    return x.dtype if _is_array(x) else x.kind


_resolved: dict = {}


def _resolve(op: str, operands: list, dtype) -> tuple[list, np.dtype]:
    """(loop dtypes of the inputs, result dtype), NumPy's answer for this op, operand kinds and dtype=."""
    kinds = tuple(_kind(x) for x in operands)
    key = (op, kinds, dtype)
    hit = _resolved.get(key)
    if hit is not None:
        return hit
    if op == "identity":
        loops, out = [kinds[0] if dtype is None else np.dtype(dtype)], np.dtype(kinds[0] if dtype is None else dtype)
    elif op in ("where", "clip", "lerp"):
        vals = operands[1:] if op == "where" else operands
        parts = [np.empty(0, x.dtype) if _is_array(x) else x.value for x in vals]
        out = np.result_type(*parts) if dtype is None else np.dtype(dtype)
        if op == "lerp" and out.kind in "iub":
            out = np.dtype(np.float64)
        loops = ([np.dtype(bool)] if op == "where" else []) + [out] * len(vals)
    else:
        ufunc = UNARY.get(op) if len(operands) == 1 else BINARY.get(op)
        if ufunc is None:
            raise ValueError(f"elementwise: unknown op {op!r} for {len(operands)} operand(s); known: "
                             f"{sorted(UNARY) if len(operands) == 1 else sorted(BINARY)}")
        sig = tuple(np.dtype(dtype) if dtype is not None else k for k in kinds) + (None,)
        try:
            resolved = ufunc.resolve_dtypes(sig)
        except TypeError as e:
            described = ", ".join(getattr(k, "name", getattr(k, "__name__", str(k))) for k in kinds)
            raise TypeError(f"{op}: not supported for operands of types ({described}): {e}") from None
        loops, out = list(resolved[:-1]), resolved[-1]
        if op in _FLOAT_ONLY and out.kind not in "fV":
            raise TypeError(f"{op}: expected floating-point operands, got {kinds}")
        if op in ("isposinf", "isneginf", "isnan", "isinf", "isfinite"):
            out = np.dtype(bool)
    hit = _resolved[key] = (loops, np.dtype(out))
    return hit


def _scalar_value(s: ScalarOperand, loop: np.dtype, compute: str):
    if compute == "long long":
        v = int(s.value)
        if loop.kind in "iu":
            info = np.iinfo(loop)
            if not info.min <= v <= info.max:
                raise OverflowError(f"Python integer {v} out of bounds for {loop.name}")
        return v
    return float(s.value)


def _check_out(op: str, out, shape: tuple, result: np.dtype, casting: str):
    if tuple(out.shape) != shape:
        raise ValueError(f"{op}: non-broadcastable output operand with shape {tuple(out.shape)} doesn't match the "
                         f"broadcast shape {shape}")
    if casting != "unsafe" and not np.can_cast(result, out.dtype, casting):
        raise TypeError(f"{op}: cannot cast the result from {result.name} to the output's {out.dtype.name} with "
                        f"casting rule {casting!r}")


def apply(op: str, operands: list, out=None, dtype=None, casting: str = "same_kind"):
    """op over 1 to 3 operands (arrays or scalars), NumPy semantics; the result (out when given)."""
    operands = [_operand(x) for x in operands]
    arity = len(operands)
    arrays = [x for x in operands if _is_array(x)]
    if not arrays:
        raise TypeError(f"{op}: at least one operand must be an array")
    loops, result = _resolve(op, operands, dtype)
    shapes = [tuple(x.shape) for x in arrays]
    try:
        shape = tuple(np.broadcast_shapes(*shapes, *(() if out is None else (tuple(out.shape),))))
    except ValueError:
        described = " ".join(map(str, shapes)) + ("" if out is None else f" and output {tuple(out.shape)}")
        raise ValueError(f"{op}: operands could not be broadcast together with shapes {described}") from None
    xp = array_module(arrays[0])
    if out is None:
        out = xp.empty(shape, dtype=result)
    else:
        _check_out(op, out, shape, result, casting)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n == 0:
        return out
    compute = compute_ctype(out.dtype, *loops, *(x.dtype for x in arrays))
    if op == "invert" and operands[0].dtype == np.bool_:
        op = "logical_not"  # NumPy's ~ on bool is logical not (the integer ~1 would be -2, i.e. True)
    scal = S.scalar_ctype(compute)
    # storage types: arrays as they are (the load converts), scalars as their loop dtype
    types = [ctype(x.dtype if _is_array(x) else loops[i]) for i, x in enumerate(operands)]
    while len(types) < 3:
        types.append(types[0])
    defines = (("ZT_ARITY", str(arity)), ("OP", f"op_{op}"), ("TO", ctype(out.dtype)), ("TA", types[0]),
               ("TB", types[1]), ("TC", types[2]), ("CT", compute), ("ST", scal))
    smask = 0
    scalars = [0.0 if scal == "double" else 0] * arity
    ptrs = []
    for i, x in enumerate(operands):
        if _is_array(x):
            ptrs.append(x)
        else:
            smask |= 1 << i
            scalars[i] = _scalar_value(x, np.dtype(loops[i]), compute)
            ptrs.append(None)
    tail = () if arity == 1 else (*scalars, smask)
    same_shape = all(tuple(x.shape) == shape for x in arrays)
    if same_shape and out.flags.c_contiguous and all(x.flags.c_contiguous for x in arrays):
        # VEC exactly as the kernel computes it: 16 bytes over the widest of TO, TA, TB, TC
        vec = 16 // max(out.dtype.itemsize, *(_CTYPE_SIZES[t] for t in types))
        aligned = all(data_ptr(x) % (vec * x.dtype.itemsize) == 0 for x in (out, *arrays))
        name = f"ew{arity}_vec" if aligned else f"ew{arity}_contig"
        work = -(-n // vec) if aligned else n
        kernel(FAMILY, name, defines)(S.grid_for(work, xp), S.BLOCK, (out, *ptrs, *tail, n))
        return out
    # strided: out's strides, each array's broadcast strides, scalars' zeros
    strides = [S.element_strides(out)]
    for x in operands:
        strides.append(S.broadcast_strides(tuple(x.shape), S.element_strides(x), shape) if _is_array(x)
                       else (0,) * len(shape))
    m_shape, m_strides = S.merge_dims(shape, strides)
    if len(m_shape) > S.MAX_DIMS:
        raise ValueError(f"{op}: {len(m_shape)} dims remain after merging contiguous ones (shape {shape}); the "
                         f"strided kernels take at most {S.MAX_DIMS}")
    defines += (("IDX", S.index_ctype(m_shape, m_strides)),)
    meta = S.meta_array(tuple(m_shape) + tuple(v for s in m_strides for v in s), xp)
    kernel(FAMILY, f"ew{arity}_strided", defines)(S.grid_for(n, xp), S.BLOCK,
                                                     (out, *ptrs, *tail, n, len(m_shape), meta))
    return out


# ------------------------------------------------------------------------------------------ public
def unary(op: str, x, out=None, dtype=None):
    return apply(op, [x], out, dtype)


def binary(op: str, a, b, out=None, dtype=None):
    return apply(op, [a, b], out, dtype)


def ternary(op: str, a, b, c, out=None):
    if op not in TERNARY:
        raise ValueError(f"elementwise: unknown ternary op {op!r}; known: {TERNARY}")
    return apply(op, [a, b, c], out)


def where(cond, a, b, out=None):
    """cond ? a : b with NumPy's broadcasting and result dtype; cond must be a bool array."""
    if not _is_array(cond) or cond.dtype != np.bool_:
        raise TypeError(f"where: the condition must be a bool array, got {getattr(cond, 'dtype', type(cond))}")
    return apply("where", [cond, a, b], out)


def cast(x, dtype):
    """A new C-contiguous array of x's values converted to dtype (NumPy's astype, unsafe casting)."""
    return apply("identity", [x], None, dtype)


def copy(dst, src) -> None:
    """dst[...] = src, src (array or scalar) broadcast to dst's shape and converted to its dtype."""
    if not _is_array(src):
        from . import index

        index.fill(dst, src)
        return
    apply("identity", [src], dst, dst.dtype, casting="unsafe")


def bias_act(x, bias, act: str = "none", residual=None, out=None):
    """ACT(x + bias) + residual: x (..., N) and residual C-contiguous of one shape and dtype, bias (N,) or None.

    One pass over memory instead of three (the Linear layer's epilogue, the transformer's residual add);
    other layouts fall back to the general kernels.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: act must be one of {ACTIVATIONS}, got {act!r}")
    if x.dtype.kind not in "fV":
        raise TypeError(f"bias_act: expected a floating-point x, got {x.dtype}")
    ncols = x.shape[-1] if x.ndim else 1
    for name, t, shape in (("bias", bias, (ncols,)), ("residual", residual, tuple(x.shape))):
        if t is not None and (tuple(t.shape) != shape or t.dtype != x.dtype):
            raise ValueError(f"bias_act: expected {name} of shape {shape} and dtype {x.dtype}, got shape "
                             f"{tuple(t.shape)} and dtype {t.dtype}")
    contiguous = all(t is None or t.flags.c_contiguous for t in (x, bias, residual, out))
    if not contiguous:
        y = x if bias is None else binary("add", x, bias)
        if act != "none":
            y = unary(act, y)
        return y if residual is None else binary("add", y, residual, out=out)
    if out is None:
        out = array_module(x).empty(x.shape, dtype=x.dtype)
    n = int(x.size)
    if n == 0:
        return out
    compute = compute_ctype(x.dtype)
    defines = (("ZT_ARITY", "0"), ("ACT", f"act_{act}"), ("TO", ctype(out.dtype)), ("TA", ctype(x.dtype)),
               ("CT", compute), ("ST", S.scalar_ctype(compute)))
    vec = 16 // max(x.dtype.itemsize, out.dtype.itemsize)
    aligned = ncols % vec == 0 and all(t is None or data_ptr(t) % 16 == 0 for t in (x, bias, residual, out))
    flags = (bias is not None) | ((residual is not None) << 1)
    name = "bias_act_vec" if aligned else "bias_act_contig"
    work = -(-n // vec) if aligned else n
    kernel(FAMILY, name, defines)(S.grid_for(work, array_module(x)), S.BLOCK,
                                    (out, x, bias, residual, n, ncols, flags))
    return out


def add_residual(x, residual, bias=None, out=None):
    """x (+ bias) + residual in one pass."""
    return bias_act(x, bias, "none", residual, out)
