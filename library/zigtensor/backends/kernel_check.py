"""Launch checking: a kernel's arguments against its signature, and grid, block and shared memory against the
device's limits, before anything reaches the GPU.

`check_launch` is a pure function (limits and the current device are passed in), so every refusal is tested
without a GPU. It also converts each argument to exactly what the kernel takes: CuPy would pass a Python int
as 8 bytes and a float as a double, whatever the parameter's type.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .kernel_source import DTYPE_CTYPES, KernelSignature, Param

_NP = {name: np.dtype(ml_dtypes.bfloat16 if name == "bfloat16" else name)
       for name in ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                    "float16", "bfloat16", "float32", "float64")}
_FLOAT_MAX = {"float16": 65504.0, "bfloat16": float(ml_dtypes.finfo(ml_dtypes.bfloat16).max),
              "float32": float(np.finfo(np.float32).max), "float64": math.inf}
_NULL = np.uint64(0)


class KernelLaunchError(ValueError):
    """A launch refused before it reached the GPU; the message names the kernel, the argument and what was
    expected."""


@dataclass(frozen=True)
class LaunchLimits:
    """What one device (and one compiled kernel on it) allows. Defaults are those of every GPU since Volta."""

    device: int = 0
    max_threads_per_block: int = 1024
    max_block_dims: tuple[int, int, int] = (1024, 1024, 64)
    max_grid_dims: tuple[int, int, int] = (2**31 - 1, 65535, 65535)
    max_shared_mem_per_block: int = 48 * 1024  # without opting in
    max_shared_mem_per_block_optin: int = 48 * 1024  # the most a kernel may opt in to (227 KiB on an H100)
    kernel_max_threads_per_block: int | None = None  # lower when the kernel's registers do not allow 1024
    kernel_static_shared_mem: int = 0  # the kernel's __shared__ arrays


@dataclass(frozen=True)
class LaunchPlan:
    """A checked launch: 3-d grid and block, the converted arguments, and the dynamic shared memory to opt in
    to (0 when the default 48 KiB suffices)."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple
    shared_mem: int
    optin_shared_mem: int


def _is_int(x) -> bool:
    return isinstance(x, (numbers.Integral, np.integer)) and not isinstance(x, (bool, np.bool_))


def _dims(kernel: str, what: str, value, maxima: tuple[int, int, int]) -> tuple[int, int, int]:
    dims = (value,) if _is_int(value) else value
    if not isinstance(dims, (tuple, list)) or not 1 <= len(dims) <= 3 or not all(_is_int(d) for d in dims):
        raise KernelLaunchError(f"kernel {kernel}: {what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    for axis, (d, most) in enumerate(zip(dims, maxima)):
        if not 1 <= d <= most:
            raise KernelLaunchError(f"kernel {kernel}: {what} {'xyz'[axis]} = {d} is out of range; this device "
                                    f"allows 1 to {most} (limits {maxima})")
    return dims


def _dtype_name(dtype) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(getattr(dtype, "name", dtype))


class _Arg:
    """Formats the refusals of one argument: 'kernel k, args[2] 'x' (const float* x): expected ...'."""

    def __init__(self, kernel: str, index: int, param: Param):
        self.where = f"kernel {kernel}, args[{index}] {param.name!r} ({param.decl()})"

    def error(self, message: str) -> KernelLaunchError:
        return KernelLaunchError(f"{self.where}: {message}")


def _check_array(arg: _Arg, param: Param, x, current_device: int):
    if x is None:
        if param.nullable:
            return _NULL
        raise arg.error("expected a CUDA array, got None (only ZT_NULLABLE parameters take None)")
    if not (hasattr(x, "dtype") and hasattr(x, "flags") and hasattr(getattr(x, "data", None), "ptr")):
        got = "a NumPy array (host memory)" if isinstance(x, np.ndarray) else type(x).__name__
        raise arg.error(f"expected a CUDA array (cupy.ndarray), got {got}")
    got = _dtype_name(x.dtype)
    if param.kind == "pointer_table":
        if got != "uint64":
            raise arg.error(f"expected a uint64 array of device pointers to {param.dtype}, got a {got} array")
    elif param.dtype is not None and got != param.dtype:
        raise arg.error(f"expected a {param.dtype} array, got a {got} array")
    if not param.strided and not x.flags.c_contiguous:
        raise arg.error(f"expected a C-contiguous array (only ZT_STRIDED parameters take strided views), got "
                        f"shape {tuple(x.shape)} with strides {tuple(getattr(x, 'strides', ()))}")
    if not param.const and getattr(x.flags, "writeable", True) is False:
        raise arg.error("the kernel writes to this array but it is read-only")
    device = getattr(x, "device", None)
    device_id = getattr(device, "id", device)
    if not _is_int(device_id):
        raise arg.error(f"expected an array on CUDA device {current_device}, got one on {device!r}")
    if device_id != current_device:
        raise arg.error(f"the array is on cuda:{device_id} but the current device is cuda:{current_device}")
    return x


def _scalar(arg: _Arg, dtype: str, ctype: str, x, label: str = ""):
    """One value converted to the NumPy scalar of the C type (bfloat16 as its 16 bits). label: where inside
    the argument the value is ("field 'shape'[2]: "), for messages."""
    if dtype == "bool":
        if not isinstance(x, (bool, np.bool_)):
            raise arg.error(f"{label}expected a bool, got {type(x).__name__} {x!r}")
        return np.bool_(x)
    np_dtype = _NP[dtype]
    if np_dtype.kind in "iu":
        if not _is_int(x):
            raise arg.error(f"{label}expected a Python or NumPy integer ({ctype}), got {type(x).__name__} {x!r}")
        info = np.iinfo(np_dtype)
        if not info.min <= int(x) <= info.max:
            raise arg.error(f"{label}{int(x)} does not fit {ctype} ({dtype}: {info.min} to {info.max})")
        return np_dtype.type(int(x))
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (numbers.Real, np.integer, np.floating)):
        raise arg.error(f"{label}expected a real number ({ctype}), got {type(x).__name__} {x!r}")
    value = float(x)
    if math.isfinite(value) and abs(value) > _FLOAT_MAX[dtype]:
        raise arg.error(f"{label}{value!r} overflows {ctype} ({dtype}: largest finite value {_FLOAT_MAX[dtype]:g})")
    if dtype == "bfloat16":
        return np.array(value, dtype=np_dtype).view(np.uint16)[()]
    return np_dtype.type(value)


def _check_struct(arg: _Arg, param: Param, x):
    dtype = param.struct_dtype
    if isinstance(x, (np.ndarray, np.void)) and x.dtype == dtype and x.size == 1:
        return np.asarray(x).reshape(1)
    if not isinstance(x, Mapping):
        raise arg.error(f"expected a dict of the fields {list(dtype.names)} (or a NumPy scalar of the struct's "
                        f"dtype), got {type(x).__name__}")
    unknown = sorted(set(x) - set(dtype.names))
    if unknown:
        raise arg.error(f"unknown fields {unknown}; struct {param.ctype} has {list(dtype.names)}")
    packed = np.zeros(1, dtype=dtype)
    for name in dtype.names:
        field = dtype.fields[name][0]
        base, count = (field.base, field.shape[0]) if field.shape else (field, 0)
        field_dtype = _dtype_name(base)
        field_ctype = DTYPE_CTYPES[field_dtype]
        if name not in x:
            if count:
                continue  # arrays left out are zero
            raise arg.error(f"missing field {name!r} of struct {param.ctype}")
        if count:
            values = x[name]
            if not isinstance(values, (list, tuple, np.ndarray)) or len(values) > count:
                raise arg.error(f"field {name!r}: expected a sequence of at most {count} values, got {values!r}")
            for i, v in enumerate(values):
                packed[name][0, i] = _scalar(arg, field_dtype, field_ctype, v, f"field {name!r}[{i}]: ")
        else:
            packed[name][0] = _scalar(arg, field_dtype, field_ctype, x[name], f"field {name!r}: ")
    return packed


def check_launch(sig: KernelSignature, grid, block, args, shared_mem: int, limits: LaunchLimits,
                 current_device: int) -> LaunchPlan:
    """Check one launch of `sig`; return it with its arguments converted to the kernel's exact types, or raise
    KernelLaunchError naming the kernel, the argument and what was expected."""
    name = sig.name
    block3 = _dims(name, "block", block, limits.max_block_dims)
    grid3 = _dims(name, "grid", grid, limits.max_grid_dims)
    threads = block3[0] * block3[1] * block3[2]
    most = limits.max_threads_per_block
    if limits.kernel_max_threads_per_block is not None and limits.kernel_max_threads_per_block < most:
        most = limits.kernel_max_threads_per_block
        if threads > most:
            raise KernelLaunchError(f"kernel {name}: block {block3} has {threads} threads; this kernel's register "
                                    f"use allows at most {most} per block (the device allows "
                                    f"{limits.max_threads_per_block})")
    if threads > most:
        raise KernelLaunchError(f"kernel {name}: block {block3} has {threads} threads; the device allows at most "
                                f"{most} per block")
    if not _is_int(shared_mem) or shared_mem < 0:
        raise KernelLaunchError(f"kernel {name}: shared_mem must be a non-negative int (bytes), got {shared_mem!r}")
    total = limits.kernel_static_shared_mem + int(shared_mem)
    if total > limits.max_shared_mem_per_block_optin:
        raise KernelLaunchError(f"kernel {name}: {int(shared_mem)} bytes of dynamic shared memory plus "
                                f"{limits.kernel_static_shared_mem} static exceed the device's "
                                f"{limits.max_shared_mem_per_block_optin} bytes per block")
    optin = int(shared_mem) if total > limits.max_shared_mem_per_block else 0
    if not isinstance(args, (tuple, list)):
        raise KernelLaunchError(f"kernel {name}: args must be a tuple, got {type(args).__name__}")
    if len(args) != len(sig.params):
        raise KernelLaunchError(f"kernel {name}: expected {len(sig.params)} arguments, got {len(args)}; "
                                f"signature: {sig!r}")
    converted = []
    for i, (param, x) in enumerate(zip(sig.params, args)):
        arg = _Arg(name, i, param)
        if param.kind in ("pointer", "pointer_table"):
            converted.append(_check_array(arg, param, x, current_device))
        elif param.kind == "struct":
            converted.append(_check_struct(arg, param, x))
        else:
            converted.append(_scalar(arg, param.dtype, param.ctype, x))
    return LaunchPlan(grid3, block3, tuple(converted), int(shared_mem), optin)
