"""More of PyTorch's elementwise math and tests, composed from the ops every device has (so each has its
gradient): exp2, log2, log10, sinh, cosh, logaddexp, hypot, fmod, frac, isnan, isinf, isfinite, nan_to_num,
isclose, allclose, equal; and the repeats repeat_interleave, tile, masked_select.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..dtypes import FLOAT
from .common import Tensor, to_float
from .elementwise import abs, exp, log, log1p, maximum, sqrt, trunc, where

_LN2, _LN10 = math.log(2.0), math.log(10.0)


def exp2(x):
    """2 ** x."""
    return exp(to_float(x) * _LN2)


def log2(x):
    return log(x) * (1.0 / _LN2)


def log10(x):
    return log(x) * (1.0 / _LN10)


def sinh(x):
    """(e^x - e^-x) / 2."""
    x = to_float(x)
    return (exp(x) - exp(-x)) * 0.5


def cosh(x):
    x = to_float(x)
    return (exp(x) + exp(-x)) * 0.5


def logaddexp(a, b):
    """log(e^a + e^b) without overflow: max + log1p(e^-|a - b|)."""
    a, b = to_float(a), to_float(b)
    return maximum(a, b) + log1p(exp(-abs(a - b)))


def hypot(a, b):
    """sqrt(a^2 + b^2)."""
    return sqrt(a * a + b * b)


def fmod(a, b):
    """The remainder of a / b with the sign of a (C's fmod; `remainder` takes the sign of b)."""
    return a - trunc(a / b) * b


def frac(x):
    """x - trunc(x): the fractional part, with x's sign."""
    return x - trunc(x)


def isnan(x: Tensor) -> Tensor:
    return x != x


def isinf(x: Tensor) -> Tensor:
    if x.dtype.category != FLOAT:
        return x != x  # integers are never infinite: all False
    return abs(x) == math.inf


def isfinite(x: Tensor) -> Tensor:
    if x.dtype.category != FLOAT:
        return x == x
    return abs(x) < math.inf


def nan_to_num(x: Tensor, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None) -> Tensor:
    """NaN -> nan, +inf -> posinf, -inf -> neginf (default: the dtype's largest and smallest finite values)."""
    if x.dtype.category != FLOAT:
        return x.clone()
    info = np.finfo(x.dtype.np)
    hi = float(info.max) if posinf is None else posinf
    lo = float(info.min) if neginf is None else neginf
    return where(x != x, nan, where(x == math.inf, hi, where(x == -math.inf, lo, x)))


def isclose(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> Tensor:
    """|a - b| <= atol + rtol |b| elementwise; equal values (infinities) are close, NaNs only with equal_nan."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: nan, settled by the equality
        close = (abs(a - b) <= atol + rtol * abs(b)) | (a == b)
    return close | ((a != a) & (b != b)) if equal_nan else close


def allclose(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    """isclose everywhere, as a Python bool."""
    return bool(isclose(a, b, rtol, atol, equal_nan).all())


def equal(a: Tensor, b: Tensor) -> bool:
    """Same shape and the same values everywhere (NaN is never equal)."""
    return tuple(a.shape) == tuple(b.shape) and bool((a == b).all())


def repeat_interleave(x: Tensor, repeats, dim: int | None = None) -> Tensor:
    """Each element (dim None: of the flattened x) or each slice along dim repeated `repeats` times (an int, or one
    count per slice), as torch.repeat_interleave: a gather by the repeated positions."""
    from ..creation import tensor
    from .common import normalize_dim

    if dim is None:
        x, dim = x.reshape(-1), 0
    d = normalize_dim(dim, x.ndim, "repeat_interleave")
    n = x.shape[d]
    if isinstance(repeats, Tensor):
        repeats = repeats.tolist()
    counts = [repeats] * n if isinstance(repeats, numbers.Integral) else list(repeats)
    if len(counts) != n or not all(isinstance(c, numbers.Integral) and c >= 0 for c in counts):
        raise RuntimeError(f"repeat_interleave: repeats must be a non-negative int or {n} of them (the size of dim "
                           f"{d}), got {repeats!r}")
    index = np.repeat(np.arange(n, dtype=np.int64), np.asarray(counts, dtype=np.int64))
    return x.index_select(d, tensor(index, device=x.device))


def tile(x: Tensor, dims) -> Tensor:
    """x repeated dims[i] times along each dim (dims shorter than x.ndim are padded with ones in front, a longer
    dims adds leading dims), as torch.tile."""
    dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
    if len(dims) < x.ndim:
        dims = (1,) * (x.ndim - len(dims)) + dims
    return x.repeat(*dims)


def masked_select(x: Tensor, mask: Tensor) -> Tensor:
    """The elements of x where mask (broadcast against x) is True, as a 1-d tensor in row-major order."""
    from .common import broadcast_shapes

    shape = broadcast_shapes("masked_select", x.shape, mask.shape)
    return x.expand(*shape)[mask.expand(*shape)]
