"""Making tensors: from data, filled, ranges, identity and random, PyTorch's signatures."""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import dtypes
from .device import device as _parse_device
from .device import get_default_device
from .tensor import Tensor


def as_device(spec=None):
    """A device argument of a creation function: None means the default device (zt.set_default_device)."""
    return get_default_device() if spec is None else _parse_device(spec)


def _finish(array, dev, requires_grad) -> Tensor:
    t = Tensor._wrap(array, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data) -> dtypes.DType:
    """The dtype PyTorch gives to nested Python data: bool, int64, or the default float."""
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        return dtypes.bool_
    if arr.dtype.kind in "iu":
        return dtypes.int64
    if arr.dtype.kind == "f" or arr.size == 0:
        return dtypes.get_default_dtype()
    raise TypeError(f"tensor: could not infer a dtype from data of numpy dtype {arr.dtype}: {data!r:.80}")


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of data (nested lists, scalars, NumPy arrays or a Tensor)."""
    if device is not None:
        dev = as_device(device)
    else:
        dev = data.device if isinstance(data, Tensor) else as_device()
    if dtype is not None:
        dtype = dtypes.as_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data.numpy()
        dtype = dtype or data.dtype
    elif isinstance(data, np.ndarray | np.generic):
        arr = data
        dtype = dtype or dtypes.from_numpy(data.dtype)
    elif hasattr(data, "__array__") and not isinstance(data, (list, tuple, numbers.Number)):
        # other array libraries (a detached CPU torch tensor, for one) through the array protocol
        arr = np.asarray(data)
        dtype = dtype or dtypes.from_numpy(arr.dtype)
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flatten_first(data)):
            data = _tensors_to_lists(data)
        if not isinstance(data, (list, tuple, numbers.Number)):
            raise TypeError(f"tensor: expected a number, a (nested) list, a NumPy array or a Tensor, got "
                            f"{type(data).__name__}")
        try:
            dtype = dtype or _infer_dtype(data)
            arr = np.array(data, dtype=np.float64 if dtype.category == dtypes.FLOAT else None)
        except ValueError as e:
            raise ValueError(f"tensor: data is not rectangular (ragged nested sequence): {e}") from None
    arr = np.array(arr, dtype=dtype.np, copy=True)
    return _finish(dev.backend.from_numpy(arr), dev, requires_grad)


def _flatten_first(data):
    while isinstance(data, (list, tuple)) and data:
        yield from (x for x in data if isinstance(x, Tensor))
        data = data[0]


def _tensors_to_lists(data):
    if isinstance(data, Tensor):
        return data.numpy().astype(np.float64) if data.is_floating_point else data.numpy()
    if isinstance(data, (list, tuple)):
        return [_tensors_to_lists(x) for x in data]
    return data


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor) and (dtype is None or dtypes.as_dtype(dtype) is data.dtype) and (
        device is None or as_device(device) is data.device
    ):
        return data
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with array."""
    return Tensor._wrap(np.asarray(array), _parse_device("cpu"))


def _size(op: str, size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        size = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: size must be a sequence of ints, got {size!r}") from None
    if any(s < 0 for s in size):
        raise RuntimeError(f"{op}: negative dimension in size {size}")
    return size


def _filled(op, size, value, dtype, device, requires_grad) -> Tensor:
    shape = _size(op, size)
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    dev = as_device(device)
    xp = dev.backend.xp
    arr = xp.zeros(shape, dtype=dt.np) if value == 0 else xp.full(shape, value, dtype=dt.np)
    return _finish(arr, dev, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled("zeros", size, 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _filled("ones", size, 1, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape = _size("empty", size)
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    dev = as_device(device)
    return _finish(dev.backend.xp.empty(shape, dtype=dt.np), dev, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value)
    return _filled("full", (size,) if isinstance(size, (tuple, list)) else (size,), fill_value, dtype, device,
                   requires_grad)


def _like(op, fill, t: Tensor, dtype, device, requires_grad):
    return _filled(op, (t.shape,), fill, dtype or t.dtype, device or t.device, requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like("zeros_like", 0, t, dtype, device, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like("ones_like", 1, t, dtype, device, requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like("full_like", fill_value, t, dtype, device, requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return empty(t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from start (inclusive) to end (exclusive) by step: arange(5), arange(1, 2.5, 0.5)."""
    if end is None:
        start, end = 0, start
    for name, v in (("start", start), ("end", end), ("step", step)):
        if not isinstance(v, numbers.Real):
            raise TypeError(f"arange: {name} must be a number, got {v!r}")
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange: upper bound and larger bound inconsistent with step sign "
                           f"(start={start}, end={end}, step={step})")
    is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    if dtype is not None:
        dt = dtypes.as_dtype(dtype)
    else:
        dt = dtypes.int64 if is_int else dtypes.get_default_dtype()
    n = max(0, math.ceil((end - start) / step))
    values = start + step * np.arange(n, dtype=np.int64 if is_int else np.float64)
    dev = as_device(device)
    return _finish(dev.backend.from_numpy(values.astype(dt.np)), dev, requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad=False) -> Tensor:
    if not isinstance(steps, numbers.Integral) or steps < 0:
        raise RuntimeError(f"linspace: steps must be a non-negative int, got {steps!r}")
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    dev = as_device(device)
    values = np.linspace(float(start), float(end), int(steps), dtype=np.float64).astype(dt.np)
    return _finish(dev.backend.from_numpy(values), dev, requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    dev = as_device(device)
    return _finish(dev.backend.xp.eye(n, m, dtype=dt.np), dev, requires_grad)


def _random_float(op, size, dtype, device, requires_grad, draw) -> Tensor:
    shape = _size(op, size)
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if dt.category != dtypes.FLOAT:
        raise TypeError(f"{op}: expected a floating dtype, got {dt}")
    dev = as_device(device)
    return _finish(draw(dev.backend)(shape, dt.np), dev, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform on [0, 1), from the framework RNG (zt.manual_seed)."""
    return _random_float("rand", size, dtype, device, requires_grad, lambda b: b.rand)


def randn(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal, from the framework RNG (zt.manual_seed)."""
    return _random_float("randn", size, dtype, device, requires_grad, lambda b: b.randn)


def rand_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return rand(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def randn_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return randn(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def randint(low, high=None, size=None, dtype=None, device=None) -> Tensor:
    """Integers in [low, high): randint(high, size) or randint(low, high, size)."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: missing the size argument, e.g. randint(0, 10, (3, 4))")
    if high is None:
        low, high = 0, low
    if high <= low:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64
    dev = as_device(device)
    return _finish(dev.backend.randint(low, high, _size("randint", (size,)), dt.np), dev, False)


def randperm(n: int, dtype=None, device=None) -> Tensor:
    dev = as_device(device)
    perm = dev.backend.permutation(n)
    return _finish(perm.astype((dtypes.as_dtype(dtype) if dtype else dtypes.int64).np), dev, False)
