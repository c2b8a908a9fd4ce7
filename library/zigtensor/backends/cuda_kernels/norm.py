"""LayerNorm and RMSNorm over the trailing dims, forward and backward, on kernels/norm.cu.

    y, mean, rstd = layer_norm_forward(x, w, b, eps)          # w, b: (normalized_shape) or None
    dx, dw, db = layer_norm_backward(dy, x, w, mean, rstd)     # dw / db None where there is no w / b
    y, rstd = rms_norm_forward(x, w, eps)
    dx, dw = rms_norm_backward(dy, x, w, rstd)

The normalized dims are w's shape (or `normalized_shape`, or the last dim when there is no weight), seen
by the kernels as rows of cols = prod(normalized_shape). mean and rstd come out float32 (float64 for float64
input) with the leading dims' shape. dw and db are reduced deterministically: each block of the backward
kernel writes its column sums to a row of a partial array, and norm_param_grad adds the rows in order.
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import (
    WARP_ROWS,
    array_module,
    blocks,
    check_float,
    compute_ctype,
    ctype,
    kernel,
    row_plan,
    sm_count,
    vec_width,
)

LOOPED_THREADS = 512


def plan(cols: int, vec: int, compute_dtype, backward: bool = False) -> tuple[str, int, int]:
    """(variant, threads per block, ITEMS): a row cached in registers ("warp", "block"; forward up to 8
    vectors per thread, backward up to 64 bytes of each of its four arrays in the compute type, as
    kernels/norm.cu caps them), else "looped" (any length, the row read two or three times)."""
    cap = min(8, max(1, (64 // np.dtype(compute_dtype).itemsize) // vec)) if backward else 8
    variant, threads, items = row_plan(cols, vec, cap)
    return (variant, threads, items) if variant else ("looped", LOOPED_THREADS, 1)


def _shape(op: str, x, w, normalized_shape) -> tuple[int, ...]:
    what = "normalized_shape"
    if normalized_shape is None:
        normalized_shape, what = (tuple(w.shape), "weight of shape") if w is not None else (x.shape[-1:], what)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or len(shape) > x.ndim or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"{op}: {what} {shape} does not match the trailing dims of x {tuple(x.shape)}")
    if w is not None and tuple(w.shape) != shape:
        raise ValueError(f"{op}: weight of shape {tuple(w.shape)} does not match normalized_shape {shape}")
    return shape


def _params(op: str, x, shape, *params):
    out = []
    for name, p in params:
        if p is None:
            out.append(None)
            continue
        if tuple(p.shape) != shape:
            raise ValueError(f"{op}: {name} of shape {tuple(p.shape)} does not match normalized_shape {shape}")
        check_float(op, name, p)
        out.append(array_module(x).ascontiguousarray(p))
    dtypes = {np.dtype(p.dtype) for p in out if p is not None}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: weight and bias must have one dtype, got {sorted(d.name for d in dtypes)}")
    return out, (dtypes.pop() if dtypes else np.dtype(x.dtype))


def _defines(dtype, wdtype, vec: int, items: int) -> dict:
    return {"T": ctype(dtype), "WT": ctype(wdtype), "CT": compute_ctype(dtype), "VEC": vec, "ITEMS": items}


def _check_variant(op: str, variant) -> None:
    if variant not in (None, "looped"):
        raise ValueError(f"{op}: variant must be None (chosen by row length) or 'looped', got {variant!r}")


def _forward(op: str, x, w, b, eps: float, normalized_shape, rms: bool, variant: str | None = None):
    _check_variant(op, variant)
    xp = array_module(x)
    check_float(op, "x", x)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0 or not math.isfinite(eps):
        raise ValueError(f"{op}: eps must be a non-negative finite number, got {eps!r}")
    shape = _shape(op, x, w, normalized_shape)
    (w, b), wdtype = _params(op, x, shape, ("weight", w), ("bias", b))
    x = xp.ascontiguousarray(x)
    cols = math.prod(shape)
    lead = tuple(x.shape[:x.ndim - len(shape)])
    rows = math.prod(lead)
    stat_dtype = np.float64 if x.dtype == np.float64 else np.float32
    y = xp.empty_like(x)
    mean = None if rms else xp.empty(lead, dtype=stat_dtype)
    rstd = xp.empty(lead, dtype=stat_dtype)
    if rows and cols:
        vec = vec_width(x.dtype, x, y, w, b, cols=cols)
        variant, threads, items = ("looped", LOOPED_THREADS, 1) if variant else plan(cols, vec, stat_dtype)
        k = kernel("norm", f"{'rms' if rms else 'layer'}_norm_forward_{variant}",
                   _defines(x.dtype, wdtype, vec, items))
        grid = blocks(rows, WARP_ROWS if variant == "warp" else 1)
        args = (x, w, y, rstd, rows, cols, float(eps)) if rms else (x, w, b, y, mean, rstd, rows, cols, float(eps))
        k(grid, threads, args)
    return y, mean, rstd


def _backward(op: str, dy, x, w, mean, rstd, normalized_shape, has_bias: bool, rms: bool,
              variant: str | None = None):
    _check_variant(op, variant)
    xp = array_module(x)
    check_float(op, "x", x)
    if dy.shape != x.shape or dy.dtype != x.dtype:
        raise ValueError(f"{op}: dy {tuple(dy.shape)} {dy.dtype} must match x {tuple(x.shape)} {x.dtype}")
    shape = _shape(op, x, w, normalized_shape)
    (w,), wdtype = _params(op, x, shape, ("weight", w))
    x, dy = xp.ascontiguousarray(x), xp.ascontiguousarray(dy)
    cols = math.prod(shape)
    lead = tuple(x.shape[:x.ndim - len(shape)])
    rows = math.prod(lead)
    stat_dtype = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
    stats = (rstd,) if rms else (mean, rstd)
    for name, s in zip(("rstd",) if rms else ("mean", "rstd"), stats):
        if s is None or tuple(s.shape) != lead or s.dtype != stat_dtype:
            got = None if s is None else f"{tuple(s.shape)} {s.dtype}"
            raise ValueError(f"{op}: {name} must be the forward's {lead} {stat_dtype} array, got {got}")
    stats = tuple(xp.ascontiguousarray(s) for s in stats)
    dx = xp.empty_like(x)
    dw = None if w is None else xp.zeros(shape, dtype=wdtype)
    db = xp.zeros(shape, dtype=wdtype) if has_bias else None
    if not (rows and cols):
        return dx, dw, db
    vec = vec_width(x.dtype, x, dy, dx, w, cols=cols)
    variant, threads, items = ("looped", LOOPED_THREADS, 1) if variant else plan(cols, vec, stat_dtype, backward=True)
    # partial sums: one row per block; a few waves of blocks, never more blocks than rows (or row groups)
    per_block = WARP_ROWS if variant == "warp" else 1
    parts = blocks(rows, per_block, cap=sm_count(xp) * max(1, 2048 // threads))
    dw_part = xp.empty((parts, cols), dtype=stat_dtype)
    db_part = xp.empty((parts, cols), dtype=stat_dtype) if has_bias and not rms else None
    k = kernel("norm", f"{'rms' if rms else 'layer'}_norm_backward_{variant}", _defines(x.dtype, wdtype, vec, items))
    smem = 2 * cols * stat_dtype.itemsize if variant == "warp" else 0  # the warps' dw, db sums
    if rms:
        k(parts, threads, (dy, x, w, *stats, dx, dw_part, rows, cols), shared_mem=smem)
    else:
        k(parts, threads, (dy, x, w, *stats, dx, dw_part, db_part, rows, cols), shared_mem=smem)
    reduce = kernel("norm", "norm_param_grad", _defines(x.dtype, wdtype, vec, items))
    for out, part in ((dw, dw_part), (db, db_part)):
        if out is not None:
            reduce(blocks(cols, 32), (32, 8), (part, out.reshape(-1), parts, cols))
    return dx, dw, db


def layer_norm_forward(x, w, b, eps: float = 1e-5, normalized_shape=None, variant: str | None = None):
    """(y, mean, rstd): y = (x - mean) * rstd * w + b over the normalized (trailing) dims. variant="looped"
    forces the uncached kernel (the baseline benchmarks compare against)."""
    return _forward("layer_norm_forward", x, w, b, eps, normalized_shape, rms=False, variant=variant)


def layer_norm_backward(dy, x, w, mean, rstd, normalized_shape=None, has_bias: bool | None = None,
                        variant: str | None = None):
    """(dx, dw, db) from the forward's mean and rstd; dw is None without w, db None unless has_bias (default:
    whether there is a weight)."""
    has_bias = w is not None if has_bias is None else bool(has_bias)
    return _backward("layer_norm_backward", dy, x, w, mean, rstd, normalized_shape, has_bias, rms=False,
                     variant=variant)


def rms_norm_forward(x, w, eps: float, normalized_shape=None, variant: str | None = None):
    """(y, rstd): y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) over the normalized (trailing) dims."""
    y, _, rstd = _forward("rms_norm_forward", x, w, None, eps, normalized_shape, rms=True, variant=variant)
    return y, rstd


def rms_norm_backward(dy, x, w, rstd, normalized_shape=None, variant: str | None = None):
    """(dx, dw) from the forward's rstd; dw is None without w."""
    dx, dw, _ = _backward("rms_norm_backward", dy, x, w, None, rstd, normalized_shape, False, rms=True,
                          variant=variant)
    return dx, dw
