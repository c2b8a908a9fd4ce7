"""What the strided launchers (elementwise, reduce, index, copy) share beyond _launch.py: element strides, NumPy
broadcasting seen as strides, merging dims, the 31-bit index test, the device metadata arrays and grid sizes.

The planning functions are pure (shapes and strides in, shapes and strides out) and tested without a GPU.
A kernel that walks N-d strided operands takes `meta`, a small int64 device array (shape, then each operand's
strides); the same few layouts recur every training step, so each is uploaded once and kept (LRU).
"""

from __future__ import annotations

import math

import numpy as np

from . import _launch
from ._launch import compute_ctype  # noqa: F401  (re-exported: tests read S.compute_ctype)

MAX_DIMS = 8  # ZT_MAX_DIMS of the .cu files
BLOCK = 256
_INT31 = 2**31 - 1
_META_CACHE_SIZE = 4096


def element_strides(x) -> tuple[int, ...]:
    """x's strides in elements (CuPy and NumPy give bytes)."""
    item = x.dtype.itemsize
    strides = tuple(int(s) for s in x.strides)
    if any(s % item for s in strides):
        raise ValueError(f"strides {strides} of an array of shape {tuple(x.shape)} are not multiples of its item "
                         f"size {item}")
    return tuple(s // item for s in strides)


def broadcast_strides(shape: tuple, strides: tuple, target: tuple) -> tuple[int, ...]:
    """Strides of an operand of `shape` read as NumPy broadcasts it to `target` (0 on broadcast dims)."""
    pad = len(target) - len(shape)
    if pad < 0:
        raise ValueError(f"shape {shape} cannot be broadcast to {target}")
    out = [0] * pad
    for size, stride, want in zip(shape, strides, target[pad:]):
        if size == want:
            out.append(stride if size != 1 else 0)
        elif size == 1:
            out.append(0)
        else:
            raise ValueError(f"shape {shape} cannot be broadcast to {target}")
    return tuple(out)


def merge_dims(shape: tuple, strides: list[tuple]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge neighbours that are contiguous in every operand, keeping C order.

    (64, 1024) row-major arrays become one dim of 65536; a transposed operand keeps two. Returns the merged
    shape and each operand's merged strides (empty lists for a single element).
    """
    dims = [(n, [s[d] for s in strides]) for d, n in enumerate(shape) if n != 1]
    m_shape: list[int] = []
    m_strides: list[list[int]] = [[] for _ in strides]
    for n, st in dims:
        if m_shape and all(ms[-1] == s * n for ms, s in zip(m_strides, st)):
            m_shape[-1] *= n
            for ms, s in zip(m_strides, st):
                ms[-1] = s
        else:
            m_shape.append(n)
            for ms, s in zip(m_strides, st):
                ms.append(s)
    return m_shape, m_strides


def index_ctype(shape, strides: list) -> str:
    """'int' when the element count and every reachable offset fit in 31 bits (32-bit division is several times
    faster), else 'long long'."""
    n = math.prod(shape) if shape else 1
    reach = max((sum((size - 1) * abs(st) for size, st in zip(shape, s)) for s in strides), default=0)
    return "int" if n <= _INT31 and reach <= _INT31 else "long long"


def is_c_contiguous(shape, strides) -> bool:
    """C-contiguity from element strides (size-1 dims may have any stride)."""
    expect = 1
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


# ------------------------------------------------------------------------------------------ device side
# NOTE: kernel handles, array modules, pointers and SM counts come from _launch (shared with the row-wise
# launchers), so the kernel loader can be swapped for tests/kernel_emulator.py and the same launchers run on
# NumPy arrays on a machine without a GPU.
def default_xp():
    """cupy (the GPU), for launchers with no input array to take the module from."""
    from ... import cuda

    return cuda.require_cupy()


cupy = default_xp  # the name copy.py uses


def grid_for(work: int, xp=None, block: int = BLOCK, waves: int = 1) -> int:
    """Blocks for a grid-stride loop over `work` items: enough for every item, at most `waves` full waves of
    resident blocks (2048 threads per SM). xp: the arrays' module (default cupy)."""
    sms = _launch.sm_count(xp if xp is not None else default_xp())
    return max(1, min(-(-work // block), waves * sms * (2048 // block)))


_meta = _launch.DeviceArrayCache(_META_CACHE_SIZE)


def meta_array(values: tuple, xp):
    """The int64 array holding `values` (a layout) on xp's device, uploaded once per distinct layout."""
    if xp is np:
        return np.asarray(values if values else (0,), dtype=np.int64)
    return _meta.get((xp.cuda.Device().id, values),
                     lambda: xp.asarray(np.asarray(values if values else (0,), dtype=np.int64)))


def scalar_ctype(compute: str) -> str:
    return "long long" if compute == "long long" else "double"
