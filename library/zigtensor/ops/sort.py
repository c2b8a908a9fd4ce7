"""Sorting and what is built on it: zt.sort, argsort, topk, unique, searchsorted and bucketize (and their Tensor
methods), as PyTorch's.

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
from ..dtypes import bool_, int64
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
        return x.new_zeros((), dtype=int64)
    return ArgSort.apply(x, normalize_dim(dim, x.ndim, "argsort"), bool(descending))


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices): x sorted along dim, and where each value came from."""
    _check("sort", x)
    if x.ndim == 0:
        return values_indices(x.clone(), x.new_zeros((), dtype=int64))
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


def unique(x: Tensor, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False,  # noqa: A002
           dim=None):
    """The distinct values of x in ascending order (flattened); with return_inverse, where each entry of x went
    (x's shape); with return_counts, how often each distinct value occurs. From one stable sort: a value starts a
    group where it differs from the one before it."""
    from .shape import cat

    _check("unique", x)
    if dim is not None:
        raise NotImplementedError("unique: dim is not supported (only the flattened tensor's distinct values)")
    flat = x.reshape(-1)
    values, order = sort(flat)
    n = flat.shape[0]
    starts = values[1:] != values[:-1] if n else values.to(bool_)
    starts = cat([flat.new_ones(min(n, 1), dtype=bool_), starts]) if n else starts
    out = [values[starts]]
    if return_inverse:
        group = starts.long().cumsum(0) - 1  # the group of each sorted position
        inverse = flat.new_zeros(n, dtype=int64).scatter(0, order, group)
        out.append(inverse.reshape(x.shape))
    if return_counts:
        from ..creation import full

        first = starts.nonzero().reshape(-1)
        ends = cat([first[1:], full((min(n, 1),), n, dtype=int64, device=x.device)]) if n else first
        out.append(ends - first)
    return out[0] if len(out) == 1 else tuple(out)


def searchsorted(sorted_sequence: Tensor, values, right: bool = False, side: str | None = None,
                 out_int32: bool = False) -> Tensor:
    """For each value, the index where it would be inserted into the ascending last dim of sorted_sequence to
    keep it sorted: before equal entries (left), or after them (right=True / side='right'). A 1-d sequence serves
    every value; an N-d one pairs its leading dims with values'."""
    from ..creation import tensor

    _check("searchsorted", sorted_sequence)
    if side is not None:
        if side not in ("left", "right"):
            raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
        if right and side == "left":
            raise ValueError("searchsorted: right=True contradicts side='left'")
        right = side == "right"
    if not isinstance(values, Tensor):
        values = tensor(values, dtype=sorted_sequence.dtype, device=sorted_sequence.device)
    seq = sorted_sequence
    if seq.ndim > 1 and seq.shape[:-1] != values.shape[:-1]:
        raise RuntimeError(f"searchsorted: the leading dims of sorted_sequence {seq.shape[:-1]} and values "
                           f"{values.shape[:-1]} must match")
    # count the entries before each value's place: seq[..., None, :] against values[..., :, None]
    s = seq.unsqueeze(-2) if seq.ndim > 1 else seq
    below = (s <= values.unsqueeze(-1)) if right else (s < values.unsqueeze(-1))
    counts = below.sum(-1)
    return counts.int() if out_int32 else counts


def bucketize(input: Tensor, boundaries: Tensor, out_int32: bool = False, right: bool = False) -> Tensor:
    """The bucket of each input value among the ascending 1-d boundaries: i with boundaries[i-1] < x <=
    boundaries[i] (right=True: boundaries[i-1] <= x < boundaries[i])."""
    if not isinstance(boundaries, Tensor) or boundaries.ndim != 1:
        raise RuntimeError(f"bucketize: boundaries must be a 1-d Tensor, got "
                           f"{getattr(boundaries, 'shape', type(boundaries).__name__)}")
    return searchsorted(boundaries, input, right=right, out_int32=out_int32)
