"""Sorting: zt.sort, zt.argsort and zt.topk (and their Tensor methods), as PyTorch's.

    values, indices = x.sort(dim=-1, descending=True)
    values, indices = x.topk(5)                       # the 5 largest along the last dim, largest first

The order is the backend's argsort (NumPy's stable sort; on CUDA, kernels/sort.cu's bitonic network over
(key, index) pairs, stable as well): equal values keep their order, NaN sorts after every number ascending and
before every number descending, as in PyTorch. `stable` is accepted for PyTorch's signature; every sort here is
stable. Values are gathered with the indices, so their gradient flows back through Gather to where each value came
from.
"""

from __future__ import annotations

import numbers

from ..autograd.function import Function
from .common import Tensor, normalize_dim
from .reduce import values_indices


class ArgSort(Function):
    differentiable = False

    def forward(self, a, axis, descending):
        return self.device.backend.argsort(a, axis, descending)


def _check(op: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")


def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The int64 indices that sort x along dim."""
    _check("argsort", x)
    if x.ndim == 0:
        return x.new_zeros((), dtype=_int64())
    return ArgSort.apply(x, normalize_dim(dim, x.ndim, "argsort"), bool(descending))


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices): x sorted along dim, and where each value came from."""
    _check("sort", x)
    if x.ndim == 0:
        return values_indices(x.clone(), x.new_zeros((), dtype=_int64()))
    axis = normalize_dim(dim, x.ndim, "sort")
    idx = ArgSort.apply(x, axis, bool(descending))
    return values_indices(x.gather(axis, idx), idx)


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    """(values, indices) of the k largest (largest=False: smallest) entries along dim, in order (sorted is
    accepted for PyTorch's signature: the result is always in order)."""
    _check("topk", x)
    size = x.shape[normalize_dim(dim, x.ndim, "topk")] if x.ndim else 1
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 0 <= k <= size:
        raise RuntimeError(f"topk: k must be an int in [0, {size}] (the size of dim {dim}), got {k!r}")
    values, indices = sort(x, dim, descending=largest)
    if x.ndim == 0:
        return values_indices(values, indices)
    return values_indices(values.narrow(dim, 0, int(k)), indices.narrow(dim, 0, int(k)))


def _int64():
    from ..dtypes import int64

    return int64
