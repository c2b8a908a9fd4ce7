"""Reductions over any set of dims: sum, mean, prod, amax/amin, max/min with indices, argmax, var, std,
logsumexp, any/all, and the cumulative sum."""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

from ..amp.autocast_mode import autocast_inputs
from ..autograd.function import Function
from ..dtypes import FLOAT, bfloat16, float16, float32, float64, int64
from .common import Tensor, normalize_dim, normalize_dims, to_float

values_indices = namedtuple("values_indices", ["values", "indices"])


def _expand_back(g: Tensor, shape: tuple, axes: tuple, keepdim: bool) -> Tensor:
    """Broadcast the gradient of a reduction back to the input shape."""
    if not keepdim and axes:
        kept = list(g.shape)
        for a in axes:
            kept.insert(a, 1)
        g = g.reshape(tuple(kept))
    return g.expand(shape)


class Sum(Function):
    def forward(self, a, axes, keepdim, dtype):
        self.axes, self.keepdim = axes, keepdim
        if a.dtype in (float16.np, bfloat16.np):  # accumulate 16-bit floats in float32, as PyTorch does
            return a.sum(axis=axes, keepdims=keepdim, dtype=float32.np).astype(a.dtype)
        out = _sum_by_matmul(self, a, axes, keepdim) if dtype is None else None
        return a.sum(axis=axes, keepdims=keepdim, dtype=dtype) if out is None else out

    def backward(self, g):
        x = self.inputs[0]
        return _expand_back(g, x.shape, self.axes, self.keepdim)


_FLOAT_NP = (float32.np, float64.np)


def _sum_by_matmul(fn: Function, a, axes: tuple, keepdim: bool):
    """The sum of a C-contiguous float array over its leading or its trailing axes as a product with a
    vector of ones, or None when that does not apply.

    NOTE: NumPy reduces short contiguous rows (a bias gradient, a norm's statistics, a softmax's
    normalizer) 3-4x slower than BLAS does the same additions; the length limits keep the rounding no
    worse than NumPy's (which adds leading axes sequentially too).
    """
    k, nd = len(axes), a.ndim
    if fn.device.type != "cpu" or a.dtype not in _FLOAT_NP or not 0 < k < nd or not a.flags.c_contiguous:
        return None
    matmul = fn.device.backend.matmul
    if axes == tuple(range(nd - k, nd)):  # trailing: (rows, n) @ ones(n)
        kept, n = a.shape[:nd - k], math.prod(a.shape[nd - k:])
        if n > 4096 or a.size == 0:
            return None
        out = matmul(a.reshape(-1, n), fn.xp.ones(n, a.dtype))
    elif axes == tuple(range(k)):  # leading: ones(n) @ (n, cols)
        kept, n = a.shape[k:], math.prod(a.shape[:k])
        if n > 65536 or a.size == 0:
            return None
        out = matmul(fn.xp.ones(n, a.dtype), a.reshape(n, -1))
    else:
        return None
    if not keepdim:
        return out.reshape(kept)
    return out.reshape(tuple(1 if i in axes else s for i, s in enumerate(a.shape)))


class Prod(Function):
    save_output = True

    def forward(self, a, axis, keepdim):
        self.axis, self.keepdim = axis, keepdim
        return a.prod(axis=axis, keepdims=keepdim)

    def backward(self, g):
        x = self.inputs[0]
        axes = tuple(range(x.ndim)) if self.axis is None else (self.axis,)
        g = _expand_back(g, x.shape, axes, self.keepdim)
        # product of all the other elements: exclusive cumulative products from both ends, which stays
        # right where x has zeros (out / x would divide by zero)
        if self.axis is None:
            flat = x.reshape(-1)
            return g * _prod_of_others(flat, 0).reshape(x.shape)
        return g * _prod_of_others(x, self.axis)


def _prod_of_others(x: Tensor, axis: int) -> Tensor:
    from .shape import cat

    n = x.shape[axis]
    ones_shape = list(x.shape)
    ones_shape[axis] = 1
    one = x.new_ones(tuple(ones_shape))
    if n <= 1:
        return one.expand(x.shape)
    # left[i] = x[0] * ... * x[i-1];  right[i] = x[i+1] * ... * x[n-1]
    left = cat([one, x.narrow(axis, 0, n - 1).cumprod(axis)], axis)
    right = cat([one, x.flip(axis).narrow(axis, 0, n - 1).cumprod(axis)], axis).flip(axis)
    return left * right


class Cumsum(Function):
    def forward(self, a, axis):
        self.axis = axis
        return self.xp.cumsum(a, axis=axis)

    def backward(self, g):
        return g.flip(self.axis).cumsum(self.axis).flip(self.axis)


class Cumprod(Function):
    def forward(self, a, axis):
        self.axis = axis
        return self.xp.cumprod(a, axis=axis)

    def backward(self, g):
        # NOTE: d out_j / d x_i = out_j / x_i for j >= i; exact where x has no zeros
        x = self.inputs[0]
        out = x.cumprod(self.axis)
        return (g * out).flip(self.axis).cumsum(self.axis).flip(self.axis) / x


class Amax(Function):
    """amax/amin: the gradient is shared evenly between tied maxima (as PyTorch's amax does)."""

    save_output = True

    def forward(self, a, axes, keepdim, largest):
        self.axes, self.keepdim = axes, keepdim
        f = a.max if largest else a.min
        return f(axis=axes, keepdims=keepdim)

    def backward(self, g):
        x = self.inputs[0]
        out = Tensor._wrap(self.saved_out, x.device)  # constant: the mask has no gradient
        mask = (x == _expand_back(out, x.shape, self.axes, self.keepdim)).to(g.dtype)
        count = mask.sum(dim=self.axes, keepdim=True)
        return _expand_back(g, x.shape, self.axes, self.keepdim) * mask / count


class ArgExtreme(Function):
    differentiable = False

    def forward(self, a, axis, keepdim, largest):
        f = self.xp.argmax if largest else self.xp.argmin
        if axis is None:
            out = f(a.reshape(-1))
            return self.xp.asarray(out).reshape((1,) * a.ndim if keepdim else ())
        return f(a, axis=axis, keepdims=keepdim)


def _check_nonempty(op: str, x: Tensor, axes: tuple) -> None:
    if x.numel() == 0 and (not axes or builtins.any(x.shape[a] == 0 for a in axes)):
        raise IndexError(f"{op}: expected a non-empty tensor for the reduced dims, got shape {x.shape}")


# --------------------------------------------------------------------------------------------- public
def sum(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    [x] = autocast_inputs("sum", x) if dtype is None else (x,)  # an explicit dtype wins, as in PyTorch
    axes = normalize_dims(dim, x.ndim, "sum")
    np_dtype = None
    if dtype is not None:
        from ..dtypes import as_dtype

        x = x.to(as_dtype(dtype))
    elif x.dtype.category != FLOAT:
        np_dtype = int64.np  # integers and bools sum to int64, as in PyTorch
    return Sum.apply(x, axes, keepdim, np_dtype)


def mean(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    if x.dtype.category != FLOAT and dtype is None:
        raise RuntimeError(f"mean: could not infer output dtype; input dtype must be floating, got {x.dtype}")
    axes = normalize_dims(dim, x.ndim, "mean")
    n = 1
    for a in axes:
        n *= x.shape[a]
    s = sum(x, dim, keepdim, dtype)
    return s / n if n else s * float("nan")


def prod(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    [x] = autocast_inputs("prod", x)
    if dim is None:
        return Prod.apply(x if x.dtype.category == FLOAT else x.long(), None, keepdim)
    axis = normalize_dim(dim, x.ndim, "prod") if x.ndim else None  # a 0-d tensor has only "all" to reduce
    return Prod.apply(x if x.dtype.category == FLOAT else x.long(), axis, keepdim)


def _extreme(op, largest, x: Tensor, dim, keepdim):
    if dim is None:
        _check_nonempty(op, x, ())
        return Amax.apply(x, tuple(range(x.ndim)), False, largest)
    axis = normalize_dim(dim, x.ndim, op)
    _check_nonempty(op, x, (axis,) if x.ndim else ())
    if x.ndim == 0:
        return values_indices(x.clone(), x.new_zeros((), dtype=int64))
    idx = ArgExtreme.apply(x, axis, True, largest)
    values = x.gather(axis, idx)
    if not keepdim:
        values, idx = values.squeeze(axis), idx.squeeze(axis)
    return values_indices(values, idx)


def max(x: Tensor, dim=None, keepdim: bool = False):
    """max() -> the largest value; max(dim) -> (values, indices); max(other_tensor) -> elementwise."""
    if isinstance(dim, Tensor):
        from .elementwise import maximum

        return maximum(x, dim)
    return _extreme("max", True, x, dim, keepdim)


def min(x: Tensor, dim=None, keepdim: bool = False):
    if isinstance(dim, Tensor):
        from .elementwise import minimum

        return minimum(x, dim)
    return _extreme("min", False, x, dim, keepdim)


def amax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = normalize_dims(dim, x.ndim, "amax")
    _check_nonempty("amax", x, axes)
    return Amax.apply(x, axes, keepdim, True)


def amin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = normalize_dims(dim, x.ndim, "amin")
    _check_nonempty("amin", x, axes)
    return Amax.apply(x, axes, keepdim, False)


def argmax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axis = None if dim is None else normalize_dim(dim, x.ndim, "argmax")
    _check_nonempty("argmax", x, () if axis is None or x.ndim == 0 else (axis,))
    return ArgExtreme.apply(x, axis if x.ndim else None, keepdim, True)


def argmin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axis = None if dim is None else normalize_dim(dim, x.ndim, "argmin")
    _check_nonempty("argmin", x, () if axis is None or x.ndim == 0 else (axis,))
    return ArgExtreme.apply(x, axis if x.ndim else None, keepdim, False)


def var(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Variance with Bessel's correction by default (correction=1), as torch.var."""
    if unbiased is not None and correction is not None:
        raise ValueError("var: pass either unbiased or correction, not both")
    if isinstance(dim, bool):  # var(x, False) in the old signature means unbiased=False
        unbiased, dim = dim, None
    c = correction if correction is not None else (1 if unbiased is None or unbiased else 0)
    x = to_float(x)
    axes = normalize_dims(dim, x.ndim, "var")
    n = 1
    for a in axes:
        n *= x.shape[a]
    d = x - mean(x, axes, keepdim=True)
    total = sum(d * d, axes, keepdim)
    # NOTE: divide by max(0, n - correction) as PyTorch does: inf where n <= correction, nan for 0 / 0
    return total / builtins.max(0, n - c)


def std(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    return var(x, dim, unbiased, keepdim, correction=correction).sqrt()


def logsumexp(x: Tensor, dim, keepdim: bool = False) -> Tensor:
    [x] = autocast_inputs("logsumexp", x)
    x = to_float(x)
    axes = normalize_dims(dim, x.ndim, "logsumexp")
    m = amax(x.detach(), axes, keepdim=True) if x.numel() else x.new_zeros(())
    m = m.masked_fill(m.abs() == float("inf"), 0.0)  # all -inf rows stay -inf instead of nan
    out = (x - m).exp().sum(axes, keepdim=True).log() + m
    if not keepdim:
        out = out.squeeze(axes) if axes else out
    return out


def cumsum(x: Tensor, dim: int) -> Tensor:
    [x] = autocast_inputs("cumsum", x)
    if x.dtype.category != FLOAT:
        x = x.long()
    return Cumsum.apply(x, normalize_dim(dim, x.ndim, "cumsum"))


def cumprod(x: Tensor, dim: int) -> Tensor:
    [x] = autocast_inputs("cumprod", x)
    if x.dtype.category != FLOAT:
        x = x.long()
    return Cumprod.apply(x, normalize_dim(dim, x.ndim, "cumprod"))


class AnyAll(Function):
    differentiable = False

    def forward(self, a, axes, keepdim, fn):
        return fn(a, axis=axes, keepdims=keepdim)


def any(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return AnyAll.apply(x, normalize_dims(dim, x.ndim, "any", False), keepdim, fn=x.device.backend.xp.any)


def all(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return AnyAll.apply(x, normalize_dims(dim, x.ndim, "all", False), keepdim, fn=x.device.backend.xp.all)


def count_nonzero(x: Tensor, dim=None) -> Tensor:
    return sum(x != 0, dim)

