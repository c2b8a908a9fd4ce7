"""What the row-wise launchers (softmax, norm, cross_entropy, embedding, random, optim, pool) share: the kernel
loader (swappable), the array module of the inputs, C type names, device pointers, vector widths and the
device's SM count.

The launchers are written against NumPy's API and take the module from their inputs, so the same code runs
on CuPy arrays (the GPU) and on NumPy arrays under tests/kernel_emulator.py, which installs its CPU stand-in
for the loader here (`loader`).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from ..kernel_source import ctype_of

# The function that loads a kernel: zigtensor.backends.kernels.load_kernel unless a test installs another.
loader = None

_kernels: dict = {}
_sm_counts: dict = {}


def kernel(family: str, name: str, defines: dict):
    """The checked kernel `name` of kernels/<family>.cu with these defines, cached per loader."""
    load = loader
    if load is None:
        from ..kernels import load_kernel as load
    key = (id(load), family, name, tuple(sorted(defines.items())))
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
    """The C spelling of a NumPy dtype, for a `-D` define: float32 -> 'float', bfloat16 -> '__nv_bfloat16'."""
    return ctype_of(np.dtype(dtype))


def compute_ctype(dtype) -> str:
    """What kernels compute in: double for float64, float for the other floats."""
    return "double" if np.dtype(dtype) == np.float64 else "float"


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
