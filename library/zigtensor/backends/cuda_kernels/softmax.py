"""Softmax, log-softmax and logsumexp along one axis, on kernels/softmax.cu.

    y = softmax(x, axis=-1)                  # log=True: log-softmax
    dx = softmax_backward(y, dy, axis=-1)     # from the forward's output y
    lse = logsumexp(x, axis=-1)               # axis may be a tuple

The kernels work on rows along the last, contiguous axis; another axis is moved last (a copy) and the result
moved back (a view). The row length picks the kernel (see `plan`): a warp per row with the row held in
registers, a block per row with the row in registers, or a block per row in two passes for any length.
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import WARP_ROWS, array_module, blocks, check_float, compute_ctype, ctype, kernel, row_plan, vec_width

ONLINE_THREADS = 512


def plan(cols: int, vec: int, backward: bool = False) -> tuple[str, int, int]:
    """(variant, threads per block, ITEMS) for rows of `cols` elements read `vec` at a time: "warp" or
    "block" with the row in registers (forward up to 8 vectors per thread; backward, which holds two
    arrays, up to 32 values, as kernels/softmax.cu caps it), else "online" (two passes, any length)."""
    variant, threads, items = row_plan(cols, vec, min(8, 32 // vec) if backward else 8)
    return (variant, threads, items) if variant else ("online", ONLINE_THREADS, 1)


def _defines(dtype, vec: int, items: int) -> dict:
    return {"T": ctype(dtype), "CT": compute_ctype(dtype), "VEC": vec, "ITEMS": items}


def _axis(op: str, ndim: int, axis) -> int:
    n = max(ndim, 1)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -n <= axis < n:
        raise ValueError(f"{op}: axis {axis!r} is out of range for an array of {ndim} dims")
    return int(axis) % n


def _launch_rows(op: str, dtype, rows: int, cols: int, arrays: tuple, extra: tuple, backward: bool,
                 forced: str | None) -> None:
    if forced not in (None, "online"):
        raise ValueError(f"{op}: variant must be None (chosen by row length) or 'online', got {forced!r}")
    vec = vec_width(dtype, *arrays, cols=cols)
    variant, threads, items = ("online", ONLINE_THREADS, 1) if forced else plan(cols, vec, backward)
    per_block = WARP_ROWS if variant == "warp" else 1
    k = kernel("softmax", f"{op}_{variant}", _defines(dtype, vec, items))
    k(blocks(rows, per_block), threads, (*arrays, rows, cols, *extra))


def softmax(x, axis: int = -1, log: bool = False, variant: str | None = None):
    """exp(x - max) / sum(exp(x - max)) along axis (log=True: x - max - log(sum(exp(x - max)))).
    variant="online" forces the two-pass kernel (the baseline benchmarks compare against)."""
    xp = array_module(x)
    check_float("softmax", "x", x)
    if x.ndim == 0:
        return softmax(x.reshape(1), 0, log, variant).reshape(())
    axis = _axis("softmax", x.ndim, axis)
    rows_view = xp.ascontiguousarray(xp.moveaxis(x, axis, -1))
    y = xp.empty_like(rows_view)
    cols = rows_view.shape[-1]
    rows = rows_view.size // cols if cols else 0
    if rows:
        _launch_rows("softmax_forward", x.dtype, rows, cols, (rows_view, y), (int(bool(log)),), False, variant)
    return xp.moveaxis(y, -1, axis)


def softmax_backward(y, dy, axis: int = -1, log: bool = False, variant: str | None = None):
    """The gradient of softmax (log=True: log-softmax) from its output y and the output's gradient dy:
    y * (dy - sum(dy * y)), or dy - exp(y) * sum(dy) for log-softmax, along axis. variant as in softmax."""
    xp = array_module(y)
    check_float("softmax_backward", "y", y)
    if dy.shape != y.shape or dy.dtype != y.dtype:
        raise ValueError(f"softmax_backward: dy {dy.shape} {dy.dtype} must match y {y.shape} {y.dtype}")
    if y.ndim == 0:
        return softmax_backward(y.reshape(1), dy.reshape(1), 0, log, variant).reshape(())
    axis = _axis("softmax_backward", y.ndim, axis)
    y_rows = xp.ascontiguousarray(xp.moveaxis(y, axis, -1))
    dy_rows = xp.ascontiguousarray(xp.moveaxis(dy, axis, -1))
    dx = xp.empty_like(y_rows)
    cols = y_rows.shape[-1]
    rows = y_rows.size // cols if cols else 0
    if rows:
        _launch_rows("softmax_backward", y.dtype, rows, cols, (y_rows, dy_rows, dx), (int(bool(log)),), True,
                     variant)
    return xp.moveaxis(dx, -1, axis)


def logsumexp(x, axis=-1, keepdims: bool = False):
    """log(sum(exp(x))) along axis (an int or a tuple of ints), computed stably; -inf over an empty axis."""
    xp = array_module(x)
    check_float("logsumexp", "x", x)
    if x.ndim == 0:
        return x.copy()
    axes = tuple(sorted({_axis("logsumexp", x.ndim, a) for a in (axis if isinstance(axis, (tuple, list))
                                                                   else (axis,))}))
    kept = [d for d in range(x.ndim) if d not in axes]
    rows_view = xp.ascontiguousarray(xp.transpose(x, kept + list(axes)))
    out_shape = tuple(x.shape[d] for d in kept)
    rows, cols = math.prod(out_shape), math.prod(x.shape[d] for d in axes)
    if cols == 0:
        out = xp.full(out_shape, -np.inf, dtype=x.dtype)
    else:
        out = xp.empty(out_shape, dtype=x.dtype)
        if rows:
            vec = vec_width(x.dtype, rows_view, cols=cols)
            variant = "warp" if -(-cols // vec) <= 32 * 8 else "block"
            per_block, threads = (WARP_ROWS, 32 * WARP_ROWS) if variant == "warp" else (1, ONLINE_THREADS)
            k = kernel("softmax", f"logsumexp_{variant}", _defines(x.dtype, vec, 1))
            k(blocks(rows, per_block), threads, (rows_view.reshape(rows, cols), out, rows, cols))
    if keepdims:
        out = out.reshape(tuple(1 if d in axes else n for d, n in enumerate(x.shape)))
    return out
