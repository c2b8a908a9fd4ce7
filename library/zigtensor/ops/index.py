"""Indexing: a[key] (ints, slices with steps, None, ..., integer arrays, boolean masks), __setitem__,
gather / scatter_add, index_select, masked_fill, one_hot, nonzero.

Each differentiable op here has an adjoint op as its backward (getitem <-> index-add, gather <-> scatter-add),
so gradients of gradients come for free.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..dtypes import FLOAT, INT, bool_, int64
from .common import Tensor, as_scalar, normalize_dim


def _is_basic(key: tuple) -> bool:
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in key)


def normalize_key(x: Tensor, key) -> tuple:
    """Turn a user's key into a tuple of ints, slices, None, Ellipsis and backend index arrays."""
    if isinstance(key, list) and len(key) < 32 and any(
        isinstance(k, (list, tuple, slice, Tensor, np.ndarray)) or k is None or k is Ellipsis for k in key
    ):
        key = tuple(key)  # as PyTorch (and old NumPy): x[[[0, 1], [2, 0]]] means x[[0, 1], [2, 0]]
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    xp = x.device.backend.xp
    for k in key:
        if isinstance(k, Tensor):
            if k.device is not x.device:
                raise RuntimeError(f"index: indices on {k.device} cannot index a tensor on {x.device}")
            if k.dtype is not bool_ and k.dtype.category != INT:
                raise IndexError(f"index: tensors used as indices must be long, int or bool, got {k.dtype}")
            out.append(k.data if k.ndim or k.dtype is bool_ else int(k.item()))
        elif isinstance(k, (list, np.ndarray)):
            arr = np.asarray(k)
            if arr.dtype.kind not in "biu" and arr.size:
                raise IndexError(f"index: lists used as indices must hold ints or bools, got {arr.dtype}")
            out.append(x.device.backend.from_numpy(arr.astype(np.int64) if arr.dtype.kind != "b" else arr))
        elif isinstance(k, (bool, np.bool_)):
            out.append(xp.asarray(bool(k)))
        elif isinstance(k, (int, np.integer)):
            out.append(int(k))
        elif k is None or k is Ellipsis or isinstance(k, slice):
            if isinstance(k, slice) and k.step is not None and k.step <= 0:
                raise ValueError(f"index: step must be greater than zero, got slice {k}")
            out.append(k)
        else:
            raise IndexError(f"index: unsupported index type {type(k).__name__} ({k!r}); expected int, "
                             "slice, None, ..., a list, or an integer/bool Tensor")
    return tuple(out)


class GetItem(Function):
    def forward(self, a, key):
        try:
            out = a[key]
        except IndexError as e:
            raise IndexError(f"index: {e} (tensor of shape {a.shape})") from None
        return out

    def backward(self, g):
        x, key = self.inputs
        return IndexAdd.apply(g, key, x.shape), None


class IndexAdd(Function):
    """zeros(shape) with g added at key (repeated indices accumulate): the adjoint of GetItem."""

    def forward(self, g, key, shape):
        out = self.xp.zeros(shape, dtype=g.dtype)
        if _is_basic(key):
            out[key] = g
        else:
            self.device.backend.index_add(out, key, g)
        return out

    def backward(self, gg):
        return GetItem.apply(gg, self.inputs[1]), None, None


def getitem(x: Tensor, key) -> Tensor:
    if x.ndim == 0 and isinstance(key, tuple) and key == () or key is Ellipsis:
        return x
    return GetItem.apply(x, normalize_key(x, key))


def setitem(x: Tensor, key, value) -> None:
    key = normalize_key(x, key)
    if isinstance(value, Tensor):
        if value.device is not x.device:
            raise RuntimeError(f"__setitem__: value on {value.device} cannot be written to a tensor on "
                               f"{x.device}")
        value = value.data
    else:
        value = as_scalar(value, "__setitem__") if not isinstance(value, (list, tuple, np.ndarray)) else \
            x.device.backend.from_numpy(np.asarray(value))
    try:
        x.data[key] = value
    except (ValueError, IndexError) as e:
        raise RuntimeError(f"__setitem__: {e} (tensor of shape {x.shape})") from None


# --------------------------------------------------------------------------------------------- gather/scatter
def _full_index(xp, index, axis: int) -> tuple:
    """An index tuple addressing, for each element of index, its own position with dim `axis` replaced."""
    grids = list(xp.indices(index.shape, sparse=True))
    grids[axis] = index
    return tuple(grids)


class Gather(Function):
    def forward(self, a, axis, index):
        self.axis = axis
        return a[_full_index(self.xp, index, axis)]

    def backward(self, g):
        x, axis, index = self.inputs
        return ScatterAddInto.apply(g, x.shape, axis, index), None, None


class ScatterAddInto(Function):
    """zeros(shape).scatter_add(axis, index, src): the adjoint of Gather."""

    def forward(self, src, shape, axis, index):
        out = self.xp.zeros(shape, dtype=src.dtype)
        self.device.backend.index_add(out, _full_index(self.xp, index, axis), src)
        return out

    def backward(self, g):
        _, _, axis, index = self.inputs
        return Gather.apply(g, axis, index), None, None, None


def _check_index(op: str, x: Tensor, dim: int, index: Tensor, src: Tensor | None = None) -> int:
    if not isinstance(index, Tensor) or index.dtype is not int64:
        got = index.dtype if isinstance(index, Tensor) else type(index).__name__
        raise RuntimeError(f"{op}: expected index to be an int64 Tensor, got {got}")
    if index.device is not x.device:
        raise RuntimeError(f"{op}: index on {index.device} but input on {x.device}")
    axis = normalize_dim(dim, x.ndim, op)
    if index.ndim != max(x.ndim, 1) and not (x.ndim == 0 and index.ndim == 0):
        raise RuntimeError(f"{op}: index tensor must have the same number of dimensions as input ({x.ndim}), "
                           f"got index of shape {index.shape}")
    for d in range(index.ndim):
        if d != axis and index.shape[d] > x.shape[d]:
            raise RuntimeError(f"{op}: size of index {index.shape} exceeds input {x.shape} at dimension {d}")
        if src is not None and index.shape[d] > src.shape[d]:
            raise RuntimeError(f"{op}: size of index {index.shape} exceeds src {src.shape} at dimension {d}")
    if index.numel():
        lo, hi = int(index.data.min()), int(index.data.max())
        n = x.shape[axis] if x.ndim else 1
        if lo < 0 or hi >= n:
            raise IndexError(f"{op}: index {hi if hi >= n else lo} is out of bounds for dimension {axis} "
                             f"with size {n}")
    return axis


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    axis = _check_index("gather", x, dim, index)
    if x.ndim == 0:
        return Gather.apply(x.reshape(1), 0, index.data.reshape(1)).reshape(())
    return Gather.apply(x, axis, index.data)


def scatter_add(x: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """x with src[i][j] added at x[index[i][j]][j] (dim 0), out of place."""
    axis = _check_index("scatter_add", x, dim, index, src)
    if src.dtype is not x.dtype:
        raise RuntimeError(f"scatter_add: expected src dtype {x.dtype} to match input dtype, got {src.dtype}")
    if src.shape != index.shape:
        src = src[tuple(slice(0, s) for s in index.shape)]
    if x.ndim == 0:
        return x + ScatterAddInto.apply(src.reshape(1), (1,), 0, index.data.reshape(1)).reshape(())
    return x + ScatterAddInto.apply(src, x.shape, axis, index.data)


def scatter(x: Tensor, dim: int, index: Tensor, src) -> Tensor:
    """x with src written at the positions index names along dim (no gradient to src for overwritten ties)."""
    axis = _check_index("scatter", x, dim, index)
    idx = _full_index(x.device.backend.xp, index.data, axis)
    written = Tensor._wrap(x.device.backend.xp.zeros(x.shape, dtype=bool), x.device)
    written.data[idx] = True
    if isinstance(src, Tensor):
        if src.shape != index.shape:
            src = src[tuple(slice(0, s) for s in index.shape)]
        placed = ScatterAddInto.apply(src, x.shape, axis, index.data)
        return where_(written, placed, x)
    return x.masked_fill(written, src)


def where_(cond, a, b):
    from .elementwise import where

    return where(cond, a, b)


def index_select(x: Tensor, dim: int, index: Tensor) -> Tensor:
    if not isinstance(index, Tensor) or index.dtype.category != INT or index.ndim > 1:
        raise RuntimeError(f"index_select: expected a 1-d integer index tensor, got "
                           f"{index.dtype if isinstance(index, Tensor) else type(index).__name__}"
                           f"{'' if not isinstance(index, Tensor) else ' of shape ' + str(index.shape)}")
    d = normalize_dim(dim, x.ndim, "index_select")
    if x.ndim == 0:
        return getitem(x.reshape(1), (index.reshape(-1),)).reshape(())
    return getitem(x, (slice(None),) * d + (index.reshape(-1),))


def masked_fill(x: Tensor, mask: Tensor, value) -> Tensor:
    from .common import broadcast_shapes
    from .elementwise import Where

    if not isinstance(mask, Tensor) or mask.dtype is not bool_:
        raise RuntimeError(f"masked_fill: expected a bool mask tensor, got "
                           f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
    if mask.device is not x.device:
        raise RuntimeError(f"masked_fill: mask on {mask.device} but input on {x.device}")
    if broadcast_shapes("masked_fill", x.shape, mask.shape) != x.shape:
        raise RuntimeError(f"masked_fill: mask of shape {mask.shape} does not broadcast to input shape "
                           f"{x.shape}")
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError("masked_fill: only supports a 0-dimensional value tensor, got shape "
                               f"{value.shape}")
        value = value.item()
    if x.dtype.category != FLOAT and isinstance(value, float) and value != int(value):
        raise RuntimeError(f"masked_fill: value {value} cannot be converted to {x.dtype} without "
                           "overflow/rounding")
    fill = x.device.backend.xp.asarray(value, dtype=x.dtype.np)
    return Where.apply(mask, fill, x)


class OneHot(Function):
    differentiable = False

    def forward(self, a, n):
        return (a[..., None] == self.xp.arange(n)).astype(int64.np)


def one_hot(x: Tensor, num_classes: int = -1) -> Tensor:
    if x.dtype is not int64:
        raise RuntimeError(f"one_hot: expected an int64 tensor of class indices, got {x.dtype}")
    if x.numel() and int(x.data.min()) < 0:
        raise RuntimeError(f"one_hot: class values must be non-negative, got {int(x.data.min())}")
    top = int(x.data.max()) + 1 if x.numel() else 0
    if num_classes == -1:
        if not x.numel():
            raise RuntimeError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = top
    elif top > num_classes:
        raise RuntimeError(f"one_hot: class value {top - 1} is out of range for num_classes={num_classes}")
    return OneHot.apply(x, int(num_classes))


class Nonzero(Function):
    differentiable = False

    def forward(self, a):
        return self.xp.stack(self.xp.nonzero(a), axis=-1).astype(int64.np) if a.ndim else \
            self.xp.zeros((int(bool(a)), 0), dtype=int64.np)


def nonzero(x: Tensor, as_tuple: bool = False):
    out = Nonzero.apply(x)
    if as_tuple:
        return tuple(out[:, i] for i in range(max(x.ndim, 1))) if x.ndim else (out.reshape(-1)[:0],)
    return out


def select(x: Tensor, dim: int, index: int) -> Tensor:
    d = normalize_dim(dim, x.ndim, "select")
    n = x.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select: index {index} out of range for tensor of size {x.shape} at dimension {d}")
    return getitem(x, (slice(None),) * d + (index,))



def _index_key(x: Tensor, dim: int, index: Tensor, op: str) -> tuple:
    if not isinstance(index, Tensor) or index.dtype.category != INT or index.ndim > 1:
        raise RuntimeError(f"{op}: expected a 1-d integer index tensor, got "
                           f"{index.dtype if isinstance(index, Tensor) else type(index).__name__}")
    d = normalize_dim(dim, x.ndim, op)
    return (slice(None),) * d + (index.reshape(-1),)


def _placed(x: Tensor, key, values) -> tuple[Tensor, Tensor]:
    """(values added into zeros of x's shape at key, the mask of the positions key reaches): the adjoint of
    x[key] applied to values broadcast to x[key]'s shape."""
    from .elementwise import _tensors

    target = GetItem.apply(x.detach(), key).shape
    if not isinstance(values, Tensor):
        values, _ = _tensors(values, x)
    values = values.to(x.dtype) if values.dtype is not x.dtype else values
    values = values.expand(*target) if tuple(values.shape) != tuple(target) else values
    ones = Tensor._wrap(x.device.backend.xp.ones(target, dtype=x.dtype.np), x.device)
    return IndexAdd.apply(values, key, x.shape), IndexAdd.apply(ones, key, x.shape) > 0


def index_add(x: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha=1) -> Tensor:
    """x with source's slices added at x's positions `index` along dim (repeated indices accumulate), out of
    place: x plus the adjoint of index_select applied to source."""
    key = normalize_key(x, _index_key(x, dim, index, "index_add"))
    return x + _placed(x, key, source if alpha == 1 else source * alpha)[0]


def index_copy(x: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:
    """x with its slices at `index` along dim replaced by source's, out of place."""
    placed, mask = _placed(x, normalize_key(x, _index_key(x, dim, index, "index_copy")), source)
    return where_(mask, placed, x)


def index_put(x: Tensor, indices: tuple, values, accumulate: bool = False) -> Tensor:
    """x with values written (accumulate=True: added, repeated indices summing) at the indices (a tuple of index
    tensors, as x[indices] reads), out of place."""
    placed, mask = _placed(x, normalize_key(x, tuple(indices)), values)
    return x + placed if accumulate else where_(mask, placed, x)
