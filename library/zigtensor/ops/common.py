"""Helpers every op family uses: argument checks, promotion, and reducing broadcast gradients."""

from __future__ import annotations

import numbers

import numpy as np

from ..dtypes import (
    FLOAT,
    bfloat16,
    get_default_dtype,
    int8,
    int16,
    int32,
    int64,
    result_type,
    scalar_dtype,
    uint8,
)
from ..tensor import Tensor


def is_scalar(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, Tensor)


def as_scalar(x, op: str):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, numbers.Number) and not isinstance(x, complex):
        return x
    raise TypeError(f"{op}: expected a Tensor or a Python number, got {type(x).__name__} ({x!r})")


# NOTE: NumPy treats a Python float as weak beside float16 but not beside ml_dtypes' bfloat16 (the result
# would be float32), so the scalar goes in as a bfloat16 scalar.
_BF16_SCALAR = bfloat16.np.type
_INT_RANGE = {d: (int(np.iinfo(d.np).min), int(np.iinfo(d.np).max)) for d in (uint8, int8, int16, int32)}


def _fit_scalar(dtype, s):
    """A Python scalar NumPy would mishandle beside a tensor of this dtype, made safe for it."""
    if dtype is bfloat16 and isinstance(s, float):
        return _BF16_SCALAR(s)
    r = _INT_RANGE.get(dtype)
    if r is not None and isinstance(s, int) and not r[0] <= s <= r[1]:
        # NumPy raises OverflowError (int8 + 200); PyTorch wraps the scalar around to the tensor's dtype
        return int(np.array(s).astype(dtype.np))
    return s


def promote(op: str, a, b):
    """Cast the operands of a binary op to PyTorch's result dtype. Scalars stay Python scalars."""
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        if a.device is not b.device:
            raise RuntimeError(f"{op}: expected all tensors on the same device, found {a.device} (shape "
                               f"{a.shape}) and {b.device} (shape {b.shape}); move one with .to(device)")
        if a.dtype is not b.dtype:
            dt = result_type(a, b)
            a = a if a.dtype is dt else a.to(dt)
            b = b if b.dtype is dt else b.to(dt)
        return a, b
    if ta:
        b = as_scalar(b, op)
        if scalar_dtype(b).category > a.dtype.category:
            a = a.to(result_type(a, b))
        else:
            b = _fit_scalar(a.dtype, b)
        return a, b
    if tb:
        a = as_scalar(a, op)
        if scalar_dtype(a).category > b.dtype.category:
            b = b.to(result_type(a, b))
        else:
            a = _fit_scalar(b.dtype, a)
        return a, b
    raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")


def to_float(x: Tensor) -> Tensor:
    """Ops that are only defined on floats (exp, log, ...) promote integer inputs to the default float."""
    return x if x.dtype.category == FLOAT else x.to(get_default_dtype())


def broadcast_shapes(op: str, *shapes) -> tuple:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        described = " and ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{op}: shapes {described} cannot be broadcast together") from None


def check_broadcast(op: str, a, b) -> None:
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape != b.shape:
        broadcast_shapes(op, a.shape, b.shape)


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum a gradient of the broadcast shape back down to an operand's shape."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1
    )
    if axes:
        g = g.sum(dim=axes, keepdim=True)
    return g.reshape(shape) if g.shape != shape else g


def normalize_dim(dim: int, ndim: int, op: str) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-n}, {n - 1}], but "
                         f"got {dim})")
    return dim % n


def normalize_dims(dim, ndim: int, op: str, empty_means_all: bool = True) -> tuple:
    """dim as None (all), an int or a sequence of ints -> sorted tuple of non-negative axes.

    An empty sequence means all dims too (PyTorch's sum/mean/amax/var), unless empty_means_all=False.
    """
    if dim is None:
        return tuple(range(ndim))
    if empty_means_all and not isinstance(dim, (int, np.integer)) and len(dim) == 0:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        return (normalize_dim(int(dim), ndim, op),) if ndim else ()
    axes = tuple(normalize_dim(int(d), ndim, op) for d in dim)
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"{op}: dim {tuple(dim)} appears multiple times in the list of dims")
    return tuple(sorted(axes)) if ndim else ()


__all__ = [
    "Tensor", "is_scalar", "as_scalar", "promote", "to_float", "broadcast_shapes", "check_broadcast",
    "unbroadcast", "normalize_dim", "normalize_dims", "int64",
]
