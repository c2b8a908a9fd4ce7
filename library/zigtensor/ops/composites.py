"""PyTorch's everyday functions that are compositions of other ops (so each works on every device and has its
gradient): shapes (broadcast_to, broadcast_tensors, hstack, vstack, swapaxes, moveaxis, take_along_dim, diff),
products (dot, mv, inner, cross), statistics (nansum, nanmean, std_mean, var_mean, median,
kthvalue, quantile), draws (bernoulli, normal, randint_like) and small maths (tan, logit, xlogy,
deg2rad, rad2deg, clamp_min, clamp_max).
"""

from __future__ import annotations

import math
import numbers

from ..dtypes import FLOAT, int64
from .common import Tensor, broadcast_shapes, normalize_dim
from .elementwise import clamp, cos, log, sin, where
from .reduce import values_indices


# ------------------------------------------------------------------------------------------------ shapes
def broadcast_to(x: Tensor, shape) -> Tensor:
    return x.expand(*shape)


def broadcast_tensors(*tensors) -> tuple:
    shape = broadcast_shapes("broadcast_tensors", *(t.shape for t in tensors))
    return tuple(t.expand(*shape) for t in tensors)


def hstack(tensors) -> Tensor:
    """Concatenated along dim 1 (dim 0 for 1-d tensors)."""
    from .shape import cat

    tensors = [t.reshape(1) if t.ndim == 0 else t for t in tensors]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    """Concatenated along dim 0, 1-d tensors as rows."""
    from .shape import cat

    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


def swapaxes(x: Tensor, axis0: int, axis1: int) -> Tensor:
    return x.transpose(axis0, axis1)


def moveaxis(x: Tensor, source: int, destination: int) -> Tensor:
    from .shape import movedim

    return movedim(x, source, destination)


def take_along_dim(x: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
    """x's values at indices along dim (of the flattened x when dim is None), the indices broadcast against x
    over the other dims."""
    if dim is None:
        return x.reshape(-1).gather(0, indices.reshape(-1))
    d = normalize_dim(dim, x.ndim, "take_along_dim")
    shape = list(broadcast_shapes("take_along_dim", x.shape[:d] + (1,) + x.shape[d + 1:],
                                  indices.shape[:d] + (1,) + indices.shape[d + 1:]))
    x_shape, i_shape = list(shape), list(shape)
    x_shape[d], i_shape[d] = x.shape[d], indices.shape[d]
    return x.expand(*x_shape).gather(d, indices.expand(*i_shape))


def diff(x: Tensor, n: int = 1, dim: int = -1, prepend: Tensor | None = None, append: Tensor | None = None):
    """The n-th forward difference along dim (prepend / append joined first)."""
    from .shape import cat, narrow

    d = normalize_dim(dim, x.ndim, "diff")
    if prepend is not None or append is not None:
        x = cat([t for t in (prepend, x, append) if t is not None], d)
    for _ in range(n):
        size = x.shape[d]
        x = narrow(x, d, 1, size - 1) - narrow(x, d, 0, size - 1) if size else x
    return x


# ------------------------------------------------------------------------------------------------ products
def dot(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise RuntimeError(f"dot: expected two 1-d tensors of the same size, got shapes {a.shape} and {b.shape}")
    return a @ b


def mv(matrix: Tensor, vector: Tensor) -> Tensor:
    if matrix.ndim != 2 or vector.ndim != 1:
        raise RuntimeError(f"mv: expected a 2-d matrix and a 1-d vector, got shapes {matrix.shape} and "
                           f"{vector.shape}")
    return matrix @ vector


def inner(a: Tensor, b: Tensor) -> Tensor:
    """The sum over the last dims of a and b of their products (a scalar times a tensor for 0-d operands)."""
    from .einsum import tensordot

    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return tensordot(a, b, ([-1], [-1]))


def cross(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """The cross product of 3-vectors along dim (broadcasting the other dims)."""
    from .shape import stack

    a, b = broadcast_tensors(a, b)
    d = normalize_dim(dim, a.ndim, "cross")
    if a.shape[d] != 3:
        raise RuntimeError(f"cross: dim {dim} must have size 3, got {a.shape[d]} (shape {a.shape})")
    ax, ay, az = (a.narrow(d, i, 1) for i in range(3))
    bx, by, bz = (b.narrow(d, i, 1) for i in range(3))
    return stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], d).squeeze(d + 1)


# ------------------------------------------------------------------------------------------------ statistics
def nansum(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return where(x != x, 0.0, x).sum(dim, keepdim)


def nanmean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return nansum(x, dim, keepdim) / (x == x).sum(dim, keepdim)


def var_mean(x: Tensor, dim=None, *, correction=1, keepdim: bool = False) -> tuple:
    return x.var(dim, keepdim=keepdim, correction=correction), x.mean(dim, keepdim=keepdim)


def std_mean(x: Tensor, dim=None, *, correction=1, keepdim: bool = False) -> tuple:
    return x.std(dim, keepdim=keepdim, correction=correction), x.mean(dim, keepdim=keepdim)


def kthvalue(x: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """(values, indices) of the k-th smallest entry (k from 1) along dim."""
    from .sort import sort

    d = normalize_dim(dim, x.ndim, "kthvalue") if x.ndim else 0
    size = x.shape[d] if x.ndim else 1
    if not isinstance(k, numbers.Integral) or not 1 <= k <= size:
        raise RuntimeError(f"kthvalue: k must be in [1, {size}] (the size of dim {dim}), got {k!r}")
    if x.ndim == 0:
        return values_indices(x.clone(), x.new_zeros((), dtype=int64))
    values, indices = sort(x, d)
    values, indices = values.narrow(d, k - 1, 1), indices.narrow(d, k - 1, 1)
    return values_indices(values if keepdim else values.squeeze(d), indices if keepdim else indices.squeeze(d))


def median(x: Tensor, dim: int | None = None, keepdim: bool = False):
    """The lower median (the ((n - 1) // 2 + 1)-th smallest), as PyTorch: of all entries when dim is None, else
    (values, indices) along dim."""
    if dim is None:
        flat = x.reshape(-1)
        return kthvalue(flat, (flat.shape[0] - 1) // 2 + 1, 0).values
    d = normalize_dim(dim, x.ndim, "median") if x.ndim else 0
    return kthvalue(x, ((x.shape[d] if x.ndim else 1) - 1) // 2 + 1, dim, keepdim)


def quantile(x: Tensor, q, dim: int | None = None, keepdim: bool = False, *, interpolation: str = "linear"):
    """The q-quantiles (q a number or a 1-d tensor in [0, 1]) along dim (of all entries when None), with
    PyTorch's interpolations between the two nearest ranks: linear, lower, higher, nearest, midpoint."""
    from .shape import stack
    from .sort import sort

    if interpolation not in ("linear", "lower", "higher", "nearest", "midpoint"):
        raise ValueError(f"quantile: interpolation must be linear, lower, higher, nearest or midpoint, got "
                         f"{interpolation!r}")
    if x.dtype.category != FLOAT:
        raise RuntimeError(f"quantile: expected a floating point input, got {x.dtype}")
    scalar_q = not isinstance(q, Tensor)
    qs = [float(q)] if scalar_q else [float(v) for v in q.reshape(-1).tolist()]
    if not all(0.0 <= v <= 1.0 for v in qs):
        raise ValueError(f"quantile: q must lie in [0, 1], got {q if scalar_q else qs}")
    if dim is None:
        x, dim = x.reshape(-1), 0
    d = normalize_dim(dim, x.ndim, "quantile")
    values = sort(x, d).values
    n = values.shape[d]
    rows = []
    for v in qs:
        pos = v * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        lo_v, hi_v = values.narrow(d, lo, 1), values.narrow(d, hi, 1)
        frac = pos - lo
        if interpolation == "lower":
            r = lo_v
        elif interpolation == "higher":
            r = hi_v
        elif interpolation == "nearest":
            r = lo_v if round(pos) == lo else hi_v  # Python rounds half to even, as PyTorch's nearest does
        elif interpolation == "midpoint":
            r = lo_v + (hi_v - lo_v) * 0.5
        else:
            r = lo_v + (hi_v - lo_v) * frac
        rows.append(r if keepdim else r.squeeze(d))
    return rows[0] if scalar_q else stack(rows, 0)


# ------------------------------------------------------------------------------------------------ draws
def bernoulli(p: Tensor) -> Tensor:
    """1 with probability p, elementwise (p's dtype and device), from zigtensor's generator."""
    from ..creation import rand_like

    return (rand_like(p) < p).to(p.dtype)


def normal(mean, std, size=None) -> Tensor:
    """mean + std * a standard normal draw; mean and std numbers (then size is required) or tensors."""
    from ..creation import randn, randn_like

    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        like = mean if isinstance(mean, Tensor) else std
        shape = broadcast_shapes("normal", getattr(mean, "shape", ()), getattr(std, "shape", ()))
        return mean + std * randn_like(like.expand(*shape))
    if size is None:
        raise TypeError("normal: with a number mean and std, give size")
    return mean + std * randn(*size)


def randint_like(x: Tensor, low: int = 0, high: int | None = None) -> Tensor:
    from ..creation import randint

    low, high = (0, low) if high is None else (low, high)
    return randint(low, high, tuple(x.shape), dtype=x.dtype, device=x.device)


# ------------------------------------------------------------------------------------------------ small maths
def tan(x):
    return sin(x) / cos(x)


def logit(x: Tensor, eps: float | None = None) -> Tensor:
    """log(x / (1 - x)), x first clamped to [eps, 1 - eps] when eps is given."""
    if eps is not None:
        x = clamp(x, eps, 1 - eps)
    return log(x / (1 - x))


def xlogy(x: Tensor, y) -> Tensor:
    """x * log(y), 0 where x is 0 (even where y is 0), NaN where y is."""
    safe_y = where(x == 0, 1.0, y) if isinstance(y, Tensor) else y
    return where(x == 0, where(y != y, y, 0.0) if isinstance(y, Tensor) else 0.0, x * log(safe_y))


def deg2rad(x):
    return x * (math.pi / 180.0)


def rad2deg(x):
    return x * (180.0 / math.pi)


def clamp_min(x, min):  # noqa: A002  (PyTorch's name)
    return clamp(x, min=min)


def clamp_max(x, max):  # noqa: A002
    return clamp(x, max=max)
