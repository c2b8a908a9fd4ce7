"""Tensor: a backend array plus dtype, device, requires_grad, grad and the graph node that made it.

The class holds data and conversions; every computation is an op in zigtensor.ops, reached through the
methods below, so there is one implementation whether a user writes `a + b`, `a.add(b)` or `zt.add(a, b)`.
"""

from __future__ import annotations

import numpy as np

from . import dtypes
from .autograd.grad_mode import GradMode
from .device import device as _as_device


class Tensor:
    __slots__ = ("data", "dtype", "device", "requires_grad", "grad", "grad_fn", "_version", "__weakref__")

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        from .creation import tensor

        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        for k in Tensor.__slots__[:-1]:
            setattr(self, k, getattr(t, k))

    # ----------------------------------------------------------------------------------------- construction
    @staticmethod
    def _wrap(data, device, requires_grad=False) -> Tensor:
        """A tensor around an existing backend array (no copy, no checks)."""
        t = Tensor.__new__(Tensor)
        t.data = data
        t.dtype = dtypes.from_numpy(data.dtype)
        t.device = device
        t.requires_grad = requires_grad
        t.grad = None
        t.grad_fn = None
        t._version = 0
        return t

    # ----------------------------------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None):
        if dim is None:
            return self.data.shape
        return self.data.shape[_ops_common.normalize_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def stride(self, dim: int | None = None):
        """Steps in elements between neighbours along each dim (PyTorch's strides, not NumPy's bytes)."""
        steps = tuple(s // self.dtype.itemsize for s in self.data.strides)
        return steps if dim is None else steps[_ops_common.normalize_dim(dim, self.ndim, "stride")]

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def is_contiguous(self) -> bool:
        return bool(self.data.flags.c_contiguous)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def is_floating_point(self) -> bool:
        return self.dtype.category == dtypes.FLOAT

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.dtype.category != dtypes.FLOAT:
            raise RuntimeError(f"only tensors of floating point dtype can require gradients, got {self.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach() instead")
        self.requires_grad = bool(requires_grad)
        return self

    # ----------------------------------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (shares memory on CPU); never part of the graph."""
        return self.device.backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def item(self):
        if self.data.size != 1:
            raise RuntimeError(f"item: a tensor with {self.data.size} elements cannot be converted to a Python scalar")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.category != dtypes.INT or self.data.size != 1:
            raise TypeError(f"only integer tensors of a single element can be used as an index, got {self.dtype} "
                            f"of shape {self.shape}")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                               "use .any() or .all()")
        return bool(self.item())

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __hash__(self) -> int:
        return id(self)

    def to(self, *args, dtype=None, device=None, copy: bool = False) -> Tensor:
        """to(dtype), to(device), to(device, dtype) or to(other_tensor), as in PyTorch."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, dtypes.DType):
                dtype = a
            elif isinstance(a, str) and a in dtypes._NAMES:
                dtype = dtypes.as_dtype(a)
            else:
                device = a
        out = self
        if device is not None:
            dev = _as_device(device)
            if dev is not self.device:
                out = _ops_shape.ToDevice.apply(out, dev)
        if dtype is not None:
            out = _ops_ew.cast(out, dtype)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> Tensor:
        return self.to("cuda" if index is None else f"cuda:{index}")

    def float(self) -> Tensor:
        return self.to(dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtypes.float64)

    def half(self) -> Tensor:
        return self.to(dtypes.float16)

    def bfloat16(self) -> Tensor:
        return self.to(dtypes.bfloat16)

    def long(self) -> Tensor:
        return self.to(dtypes.int64)

    def int(self) -> Tensor:
        return self.to(dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(dtypes.bool_)

    def type(self, dtype=None):
        return self.dtype if dtype is None else self.to(dtype)

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, self.device)

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def clone(self) -> Tensor:
        return _ops_shape.Clone.apply(self)

    def contiguous(self) -> Tensor:
        return self if self.data.flags.c_contiguous else _ops_shape.Clone.apply(self)

    # ----------------------------------------------------------------------------------------- autograd
    def register_hook(self, hook):
        """hook(grad) -> Tensor or None, called with this tensor's gradient during backward; a returned tensor
        replaces the gradient. Returns a handle whose remove() unregisters it (autograd/hooks.py)."""
        from .autograd.hooks import register_hook

        return register_hook(self, hook)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in .grad after backward (leaves keep theirs anyway)."""
        from .autograd.hooks import retain_grad

        retain_grad(self)

    @property
    def retains_grad(self) -> bool:
        node = self.grad_fn
        retained = None if node is None else node.__dict__.get("retained")
        return retained is not None and retained() is self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        from .autograd import backward

        if inputs is not None:
            raise NotImplementedError("backward(inputs=...) is not supported; use zt.autograd.grad")
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)

    # ----------------------------------------------------------------------------------------- in place
    # In-place ops work outside the graph only: on tensors that do not require grad, or under no_grad.
    def _check_inplace(self, op: str) -> None:
        if self.requires_grad and GradMode.enabled:
            kind = "a leaf tensor that requires grad" if self.is_leaf else "a tensor that is part of the graph"
            raise RuntimeError(f"{op}: in-place modification of {kind} is not allowed; wrap it in zt.no_grad()")

    def _assign(self, array) -> Tensor:
        """Write array (broadcast, cast) into self.data, keeping its memory, shape and dtype."""
        self.data[...] = array
        self._version += 1
        return self

    def _other_array(self, op: str, other):
        if isinstance(other, Tensor):
            if other.device is not self.device:
                raise RuntimeError(f"{op}: expected both tensors on {self.device}, got {other.device}")
            _ops_common.broadcast_shapes(op, self.shape, other.shape)
            return other.data
        return _ops_common.as_scalar(other, op)

    def copy_(self, src) -> Tensor:
        self._check_inplace("copy_")
        if isinstance(src, Tensor) and src.device is not self.device:
            return self._assign(self.device.backend.from_numpy(src.numpy()).astype(self.dtype.np))
        return self._assign(self._other_array("copy_", src))

    def fill_(self, value) -> Tensor:
        self._check_inplace("fill_")
        return self._assign(self._other_array("fill_", value))

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def _inplace(self, op: str, fn, other) -> Tensor:
        self._check_inplace(op)
        result = fn(self, other)  # computed out of place under promotion rules, then written back
        if result.dtype.category > self.dtype.category:
            raise RuntimeError(
                f"{op}: result type {result.dtype} can't be cast to the desired output type {self.dtype}"
            )
        if result.shape != self.shape:
            raise RuntimeError(f"{op}: output with shape {self.shape} doesn't match the broadcast shape {result.shape}")
        return self._assign(result.data)

    def add_(self, other, alpha=1) -> Tensor:
        return self._inplace("add_", _ops_ew.add, other if alpha == 1 else other * alpha)

    def sub_(self, other, alpha=1) -> Tensor:
        return self._inplace("sub_", _ops_ew.sub, other if alpha == 1 else other * alpha)

    def mul_(self, other) -> Tensor:
        return self._inplace("mul_", _ops_ew.mul, other)

    def div_(self, other) -> Tensor:
        return self._inplace("div_", _ops_ew.div, other)

    def clamp_(self, min=None, max=None) -> Tensor:
        self._check_inplace("clamp_")
        return self._assign(_ops_ew.clamp(self.detach(), min, max).data)

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        self._check_inplace("uniform_")
        r = self.device.backend.rand(self.shape, self.dtype.np)
        return self._assign(r * (b - a) + a)

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        self._check_inplace("normal_")
        r = self.device.backend.randn(self.shape, self.dtype.np)
        return self._assign(r * std + mean)

    def __setitem__(self, key, value) -> None:
        self._check_inplace("__setitem__")
        _ops_index.setitem(self, key, value)
        self._version += 1

    # ----------------------------------------------------------------------------------------- repr
    def __repr__(self) -> str:
        arr = self.numpy()
        if arr.dtype == dtypes.bfloat16.np:
            arr = arr.astype(np.float32)
        body = np.array2string(arr, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3,
                               precision=4, floatmode="maxprec_equal" if arr.ndim else "maxprec")
        extras = [f"dtype={self.dtype.name}", f"device='{self.device}'"]
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if arr.size == 0:
            extras.insert(0, f"size={self.shape}")
        return f"tensor({body}, {', '.join(extras)})"

    def __str__(self) -> str:
        return self.__repr__()

    def __format__(self, spec: str) -> str:
        if self.data.size == 1 and spec:
            return format(self.item(), spec)
        return repr(self)

    def __reduce__(self):
        return (_rebuild, (self.numpy(), self.dtype.name, str(self.device), self.requires_grad))


def _rebuild(array, dtype_name, device, requires_grad):
    from .creation import tensor

    return tensor(array, dtype=dtype_name, device=device, requires_grad=requires_grad)


# The op methods (a.add, a + b, a.sum(), a[idx], ...) are attached in ops/methods.py.
from .ops import common as _ops_common  # noqa: E402
from .ops import elementwise as _ops_ew  # noqa: E402
from .ops import index as _ops_index  # noqa: E402
from .ops import shape as _ops_shape  # noqa: E402
