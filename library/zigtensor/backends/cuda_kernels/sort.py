"""argsort along an axis on kernels/sort.cu: stable, ascending or descending, NaN ordered as PyTorch orders it.

    idx = argsort(x, axis=-1, descending=False)          # int64, x's shape

The axis is moved last and made contiguous, each row padded to a power of two P and run through the bitonic
network (log2(P) (log2(P) + 1) / 2 launches of sort_step), and the first n indices of each row kept.
"""

from __future__ import annotations

import numpy as np

from ._launch import array_module, blocks, compute_ctype, ctype, kernel, sm_count

THREADS = 256


def argsort(x, axis: int = -1, descending: bool = False):
    """The indices that sort x along axis (stably; NaN last ascending, first descending), int64, x's shape."""
    xp = array_module(x)
    if x.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    axis = axis % x.ndim
    rows_view = xp.ascontiguousarray(xp.moveaxis(x, axis, -1))
    n = rows_view.shape[-1]
    rows = rows_view.size // n if n else 0
    if rows == 0 or n == 0:
        return xp.zeros(x.shape, dtype=np.int64)
    p = 1 << (n - 1).bit_length()
    keys = xp.empty((rows, p), dtype=x.dtype)
    idx = xp.empty((rows, p), dtype=np.int64)
    defines = {"SORT_T": ctype(x.dtype), "SORT_CT": compute_ctype(x.dtype)}
    grid = blocks(rows * p, THREADS, cap=sm_count(xp) * 8)
    kernel("sort", "sort_init", defines)(grid, THREADS, (rows_view.reshape(rows, n), keys, idx, rows, n, p))
    step = kernel("sort", "sort_step", defines)
    k = 2
    while k <= p:
        j = k // 2
        while j >= 1:
            step(grid, THREADS, (keys, idx, rows, n, p, k, j, int(descending)))
            j //= 2
        k *= 2
    order = xp.ascontiguousarray(idx[:, :n]).reshape(rows_view.shape)
    return xp.ascontiguousarray(xp.moveaxis(order, -1, axis))
