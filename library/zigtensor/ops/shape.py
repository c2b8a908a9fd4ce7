"""Shape ops: reshape/view, expand, permute/transpose, squeeze/unsqueeze, flatten, repeat, flip, roll, cat/stack,
split/chunk/narrow, tril/triu, meshgrid, clone, and moving between devices."""

from __future__ import annotations

import math

from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..dtypes import result_type
from .common import Tensor, normalize_dim, unbroadcast


def _shape_arg(op: str, shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: shape must be ints, got {shape!r}") from None


def _infer_shape(op: str, shape: tuple, numel: int) -> tuple:
    if shape.count(-1) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred, got shape {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if any(s < -1 for s in shape):
        raise RuntimeError(f"{op}: invalid shape dimension in {list(shape)}")
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


class Reshape(Function):
    def forward(self, a, shape):
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.inputs[0].shape), None


class View(Function):
    def forward(self, a, shape):
        out = a.view()
        try:
            out.shape = shape  # raises instead of copying when strides do not allow a view
        except AttributeError:
            raise RuntimeError(
                f"view: shape {list(shape)} is not compatible with the input's size {list(a.shape)} and "
                "strides (at least one dimension spans across two contiguous subspaces). Use .reshape(...) "
                "instead."
            ) from None
        return out

    def backward(self, g):
        return g.reshape(self.inputs[0].shape), None


class Expand(Function):
    def forward(self, a, shape):
        return self.xp.broadcast_to(a, shape)

    def backward(self, g):
        return unbroadcast(g, self.inputs[0].shape), None


class Permute(Function):
    def forward(self, a, axes):
        self.axes = axes
        return self.xp.transpose(a, axes)

    def backward(self, g):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return g.permute(*inverse), None


class Repeat(Function):
    def forward(self, a, reps):
        return self.xp.tile(a, reps)

    def backward(self, g):
        x, reps = self.inputs
        shape = (1,) * (len(reps) - x.ndim) + x.shape
        split = []
        for r, s in zip(reps, shape):
            split += [r, s]
        g = g.reshape(tuple(split)).sum(dim=tuple(range(0, len(split), 2)))
        return g.reshape(x.shape), None


class Flip(Function):
    def forward(self, a, axes):
        self.axes = axes
        return self.xp.flip(a, axes)

    def backward(self, g):
        return g.flip(self.axes), None


def _legacy_empty(a) -> bool:
    return a.ndim == 1 and a.shape[0] == 0


class Cat(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        # legacy behaviour kept by PyTorch: 1-d empty tensors are skipped (their gradient is empty too)
        kept = [a for a in arrays if not _legacy_empty(a)] or arrays[:1]
        return self.xp.concatenate(kept, axis=axis)

    def backward(self, g):
        grads, start = [], 0
        for t in self.inputs:
            if _legacy_empty(t) and g.ndim != 1:
                grads.append(g.new_zeros((0,)))
                continue
            n = t.shape[self.axis]
            grads.append(g.narrow(self.axis, start, n))
            start += n
        return tuple(grads)


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


class Tri(Function):
    def forward(self, a, k, upper):
        self.k, self.upper = k, upper
        return self.xp.triu(a, k) if upper else self.xp.tril(a, k)

    def backward(self, g):
        return (g.triu(self.k) if self.upper else g.tril(self.k)), None, None


class ToDevice(Function):
    """The one op that changes device: an explicit copy, with the gradient copied back."""

    @classmethod
    def apply(cls, x: Tensor, dev):
        ctx = cls.__new__(cls)
        ctx.device, ctx.source = dev, x.device
        arr = dev.backend.from_numpy(x.device.backend.to_numpy(x.data).copy())
        t = Tensor._wrap(arr, dev)
        if x.requires_grad and GradMode.enabled:
            ctx.inputs, ctx.freed = (x, dev), False
            t.requires_grad, t.grad_fn = True, ctx
        return t

    def backward(self, g):
        return g.to(self.source), None


# --------------------------------------------------------------------------------------------- public
def reshape(x: Tensor, *shape) -> Tensor:
    shape = _infer_shape("reshape", _shape_arg("reshape", shape), x.numel())
    return x if shape == x.shape else Reshape.apply(x, shape)


def view(x: Tensor, *shape) -> Tensor:
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int)):
        raise TypeError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape("view", _shape_arg("view", shape), x.numel())
    return View.apply(x, shape)


def expand(x: Tensor, *sizes) -> Tensor:
    sizes = _shape_arg("expand", sizes)
    if len(sizes) < x.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal "
                           f"to the number of dimensions in the tensor ({x.ndim}); shape {x.shape}, sizes "
                           f"{sizes}")
    lead = len(sizes) - x.ndim
    shape = []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise RuntimeError(f"expand: -1 is not allowed in a leading, new dimension (sizes {sizes})")
            shape.append(s)
            continue
        cur = x.shape[i - lead]
        if s == -1:
            s = cur
        if cur != s and cur != 1:
            raise RuntimeError(f"expand: the expanded size of the tensor ({s}) must match the existing size "
                               f"({cur}) at non-singleton dimension {i}; target sizes {sizes}, tensor shape "
                               f"{x.shape}")
        shape.append(s)
    shape = tuple(shape)
    return x if shape == x.shape else Expand.apply(x, shape)


def permute(x: Tensor, *dims) -> Tensor:
    dims = _shape_arg("permute", dims)
    if len(dims) != x.ndim:
        raise RuntimeError(f"permute: number of dims don't match: tensor has {x.ndim} dims, got {len(dims)} "
                           f"({dims})")
    axes = tuple(normalize_dim(d, x.ndim, "permute") for d in dims)
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"permute: repeated dim in {dims}")
    return Permute.apply(x, axes)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    if x.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return x
    d0, d1 = normalize_dim(dim0, x.ndim, "transpose"), normalize_dim(dim1, x.ndim, "transpose")
    axes = list(range(x.ndim))
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return Permute.apply(x, tuple(axes))


def t(x: Tensor) -> Tensor:
    if x.ndim > 2:
        raise RuntimeError(f"t: expects a tensor with <= 2 dimensions, but got {x.ndim}D; use transpose")
    return x if x.ndim < 2 else transpose(x, 0, 1)


def squeeze(x: Tensor, dim=None) -> Tensor:
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        axes = {normalize_dim(d, x.ndim, "squeeze") for d in dims} if x.ndim else set()
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in axes and s == 1))
    return x if shape == x.shape else Reshape.apply(x, shape)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    n = x.ndim + 1
    if not -n <= dim < n:
        raise IndexError(f"unsqueeze: dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    dim %= n
    return Reshape.apply(x, x.shape[:dim] + (1,) + x.shape[dim:])


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return x.reshape(1)
    s = normalize_dim(start_dim, x.ndim, "flatten")
    e = normalize_dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim})")
    return reshape(x, x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :])


def unflatten(x: Tensor, dim: int, sizes) -> Tensor:
    d = normalize_dim(dim, x.ndim, "unflatten")
    sizes = _infer_shape("unflatten", tuple(sizes), x.shape[d])
    return reshape(x, x.shape[:d] + sizes + x.shape[d + 1 :])


def repeat(x: Tensor, *reps) -> Tensor:
    reps = _shape_arg("repeat", reps)
    if len(reps) < x.ndim:
        raise RuntimeError(f"repeat: number of repeat dims ({len(reps)}) can not be smaller than the number "
                           f"of dimensions of the tensor ({x.ndim})")
    return Repeat.apply(x, reps)


def flip(x: Tensor, dims) -> Tensor:
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return Flip.apply(x, tuple(normalize_dim(d, x.ndim, "flip") for d in dims))


def narrow(x: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = normalize_dim(dim, x.ndim, "narrow")
    if start < 0:
        start += x.shape[d]
    if not (start >= 0 and length >= 0 and start + length <= x.shape[d]):
        raise IndexError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({x.shape[d]})")
    return x[(slice(None),) * d + (slice(start, start + length),)]


def _same_device(op: str, tensors) -> None:
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected a sequence of Tensors, got an element of type "
                            f"{type(t).__name__}")
        if t.device is not tensors[0].device:
            raise RuntimeError(f"{op}: expected all tensors on the same device, found {tensors[0].device} "
                               f"and {t.device}")


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat: expected a non-empty list of Tensors")
    _same_device("cat", tensors)
    parts = [t for t in tensors if not _legacy_empty(t)] or tensors[:1]
    ref = parts[0]
    if ref.ndim == 0:
        raise RuntimeError("cat: zero-dimensional tensor cannot be concatenated")
    d = normalize_dim(dim, ref.ndim, "cat")
    for i, t in enumerate(parts):
        if t.ndim != ref.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, ref.shape)) if j != d):
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {d}; tensor 0 has "
                               f"shape {ref.shape} and tensor {i} has shape {t.shape}")
    dt = result_type(*tensors)
    tensors = [t if t.dtype is dt else t.to(dt) for t in tensors]
    return tensors[0].clone() if len(tensors) == 1 else Cat.apply(*tensors, axis=d)


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack: expected a non-empty list of Tensors")
    _same_device("stack", tensors)
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack: expects each tensor to be equal size, but got {tensors[0].shape} at "
                               f"entry 0 and {t.shape} at entry {i}")
    n = tensors[0].ndim + 1
    if not -n <= dim < n:
        raise IndexError(f"stack: dimension out of range (expected to be in range of [{-n}, {n - 1}], but "
                         f"got {dim})")
    return cat([unsqueeze(t, dim) for t in tensors], dim % n)


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    d = normalize_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - s) for s in range(0, n, size)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(f"split: split sizes {sizes} must be non-negative and sum to the size of dim "
                               f"{d} ({n})")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(x, d, start, s))
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    if chunks <= 0:
        raise RuntimeError(f"chunk: chunks must be positive, got {chunks}")
    d = normalize_dim(dim, x.ndim, "chunk")
    if x.shape[d] == 0:  # as PyTorch: `chunks` empty pieces, not one
        return split(x, [0] * chunks, d)
    size = max(1, math.ceil(x.shape[d] / chunks))
    return split(x, size, d)


def unbind(x: Tensor, dim: int = 0) -> tuple:
    d = normalize_dim(dim, x.ndim, "unbind")
    return tuple(x.select(d, i) for i in range(x.shape[d]))


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    if x.ndim < 2:
        raise RuntimeError(f"tril: input tensor must have at least 2 dimensions, got shape {x.shape}")
    return Tri.apply(x, diagonal, False)


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    if x.ndim < 2:
        raise RuntimeError(f"triu: input tensor must have at least 2 dimensions, got shape {x.shape}")
    return Tri.apply(x, diagonal, True)


def movedim(x: Tensor, source: int, destination: int) -> Tensor:
    s = normalize_dim(source, x.ndim, "movedim")
    d = normalize_dim(destination, x.ndim, "movedim")
    order = [i for i in range(x.ndim) if i != s]
    order.insert(d, s)
    return permute(x, *order)


def roll(x: Tensor, shifts, dims=None) -> Tensor:
    """x shifted circularly by shifts along dims (the flattened tensor when dims is None), as torch.roll: each
    dim is two narrowed pieces put back in the other order."""
    single = not isinstance(shifts, (tuple, list))
    shifts = (shifts,) if single else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(f"roll: without dims, shifts must be one int, got {shifts}")
        return roll(x.reshape(-1), shifts[0], 0).reshape(x.shape)
    dims = (dims,) if not isinstance(dims, (tuple, list)) else tuple(dims)
    if len(dims) != len(shifts):
        raise RuntimeError(f"roll: shifts and dims must have the same length, got {len(shifts)} shifts and "
                           f"{len(dims)} dims")
    for shift, dim in zip(shifts, dims):
        d = normalize_dim(dim, x.ndim, "roll")
        n = x.shape[d]
        k = int(shift) % n if n else 0
        if k:
            x = cat([narrow(x, d, n - k, k), narrow(x, d, 0, n - k)], d)
    return x


def meshgrid(*tensors, indexing: str = "ij") -> tuple:
    """Coordinate grids of 1-d tensors (or 0-d): 'ij' (matrix indexing, PyTorch's default) gives output i the
    shape (len(t0), len(t1), ...) varying along dim i; 'xy' (Cartesian) swaps the first two dims."""
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    _same_device("meshgrid", tensors)
    for i, t in enumerate(tensors):
        if t.ndim > 1:
            raise RuntimeError(f"meshgrid: expected 0-d or 1-d tensors, got shape {t.shape} for tensor {i}")
    flat = [t.reshape(-1) for t in tensors]
    order = list(range(len(flat)))
    if indexing == "xy" and len(flat) >= 2:
        order[0], order[1] = 1, 0
    shape = tuple(flat[j].shape[0] for j in order)
    grids = []
    for i, t in enumerate(flat):
        view = [1] * len(flat)
        view[order.index(i)] = t.shape[0]
        grids.append(t.reshape(*view).expand(*shape))
    return tuple(grids)
