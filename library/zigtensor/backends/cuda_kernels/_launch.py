"""What every launcher shares: the kernel loader (swappable) and its cache of kernel handles, the array module
of the inputs, C type names and compute types, device pointers, vector widths, the device's SM count, and the
plans of the row-wise kernels (softmax, norm, cross_entropy). The strided launchers (elementwise, reduce,
index, copy) add their layout planning in strided.py.

The launchers are written against NumPy's API and take the module from their inputs, so the same code runs
on CuPy arrays (the GPU) and on NumPy arrays under tests/kernel_emulator.py, which installs its CPU stand-in
for the loader here (`loader`).
"""

from __future__ import annotations

from collections import OrderedDict

import ml_dtypes
import numpy as np

from ..kernel_source import ctype_of

# The function that loads a kernel: zigtensor.backends.kernels.load_kernel unless a test installs another.
loader = None

_kernels: dict = {}
_sm_counts: dict = {}


def kernel(family: str, name: str, defines: dict | tuple):
    """The checked kernel `name` of kernels/<family>.cu with these defines, cached per loader. `defines`: a dict,
    or a tuple of (name, value) pairs, which the strided launchers build per launch because it is cheaper to
    hash than a dict to sort."""
    load = loader
    if load is None:
        from ..kernels import load_kernel as load
    key = (id(load), family, name, defines if isinstance(defines, tuple) else tuple(sorted(defines.items())))
    k = _kernels.get(key)
    if k is None:
        k = _kernels[key] = load(family, name, dict(defines))
    return k


def array_module(x):
    """cupy for CuPy arrays, numpy for NumPy arrays (the kernel emulator's)."""
    if isinstance(x, np.ndarray):
        return np
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    raise TypeError(f"expected a CuPy (or, under the kernel emulator, NumPy) array, got {type(x).__name__}")


def ctype(dtype) -> str:
    """The C spelling of a dtype (NumPy, CuPy or zigtensor), for a `-D` define: float32 -> 'float', bfloat16 ->
    '__nv_bfloat16'."""
    return ctype_of(dtype)


def compute_ctype(*dtypes) -> str:
    """What kernels compute in: double if any dtype is float64, float if any is another float, else long long
    (integers and bool). None entries are skipped."""
    kinds = [np.dtype(d) for d in dtypes if d is not None]
    if any(d == np.float64 for d in kinds):
        return "double"
    if any(d.kind in "fV" or d.name == "bfloat16" for d in kinds):
        return "float"
    return "long long"


FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32), np.dtype(np.float64))


def check_float(op: str, name: str, x) -> None:
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {x.dtype}")


def data_ptr(x) -> int:
    """The address of an array's first element (device for CuPy, host for NumPy)."""
    return x.ctypes.data if isinstance(x, np.ndarray) else x.data.ptr


def vec_width(dtype, *arrays, cols: int | None = None) -> int:
    """Elements per 16-byte access when every array starts 16-byte aligned and rows of `cols` keep it
    (cols a multiple of the width); else 1."""
    vec = 16 // np.dtype(dtype).itemsize
    if cols is not None and cols % vec:
        return 1
    if any(data_ptr(a) % 16 for a in arrays if a is not None):
        return 1
    return vec


def sm_count(xp) -> int:
    """Streaming multiprocessors of the current device (4 under the emulator, whose grids stay small)."""
    if xp is np:
        return 4
    dev = xp.cuda.Device().id
    n = _sm_counts.get(dev)
    if n is None:
        n = _sm_counts[dev] = int(xp.cuda.Device(dev).attributes["MultiProcessorCount"])
    return n


class DeviceArrayCache:
    """Small device arrays (layouts, pointer tables) kept by key, the least recently used dropped past `limit`:
    the same few recur every training step, so each is uploaded once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._arrays: OrderedDict = OrderedDict()

    def get(self, key, make):
        """The array kept under key, else make() kept there."""
        arr = self._arrays.get(key)
        if arr is None:
            arr = self._arrays[key] = make()
            if len(self._arrays) > self.limit:
                self._arrays.popitem(last=False)
        else:
            self._arrays.move_to_end(key)
        return arr


def blocks(work: int, per_block: int, cap: int = 2**31 - 1) -> int:
    """ceil(work / per_block), at least 1, at most cap (the kernels loop grid-stride over the rest)."""
    return max(1, min(-(-work // per_block), cap))


# ------------------------------------------------------------------------------------------ row kernels
WARP_ROWS = 4  # rows per block of the one-warp-per-row kernels (4 warps, 128 threads)
ROW_ITEMS = (1, 2, 4, 8)  # vectors per thread the register-cached row kernels are compiled for
ROW_BLOCKS = (128, 256, 512)  # threads of the block-per-row kernels (their __launch_bounds__ is 512)


def row_plan(cols: int, vec: int, max_items: int) -> tuple[str, int, int]:
    """(variant, threads per block, ITEMS) of a row kernel family (softmax.cu, norm.cu) for rows of `cols`
    elements read `vec` at a time, each thread holding at most `max_items` vectors in registers:

    "warp"  (a warp per row, WARP_ROWS rows per block) when 32 * items vectors cover the row;
    "block" (a block per row) when threads * items do, the fewest slots first, then 256 threads nearest;
    None    when no cached shape fits (the family's uncached kernel takes the row).
    """
    vectors = -(-cols // vec)
    for items in ROW_ITEMS:
        if items <= max_items and 32 * items >= vectors:
            return "warp", 32 * WARP_ROWS, items
    best = None
    for items in ROW_ITEMS:
        for threads in ROW_BLOCKS:
            if items <= max_items and threads * items >= vectors:
                key = (threads * items, abs(threads - 256))
                if best is None or key < best[0]:
                    best = (key, threads, items)
    if best is not None:
        return "block", best[1], best[2]
    return None, ROW_BLOCKS[-1], 1
