"""Launchers of kernels/reduce.cu: reductions over any set of axes of a CuPy array, NumPy's semantics.

    reduce(op, x, axes, keepdims=False, dtype=None, ddof=0)    op in OPS: sum prod mean max min var any all
    arg_reduce(op, x, axis, keepdims=False)                    op "argmax" / "argmin"; axis None = flattened

The reduced axes are moved last with a strided view, so every reduction is M outputs x K elements; plan()
(pure, tested without a GPU) picks the kernel: reduce_inner (k contiguous: a warp or a block per row,
16-byte loads) or reduce_outer (outputs contiguous, k strided: coalesced columns), the threads per row,
and a split of K over P blocks with a second pass (reduce_finish) when M alone cannot fill the GPU.
Result dtypes are NumPy's (np.sum of int8 is int64, np.mean of int is float64, bfloat16 stays bfloat16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import strided as S
from ._launch import array_module, compute_ctype, ctype, data_ptr, kernel, sm_count

FAMILY = "reduce"
OPS = ("sum", "prod", "mean", "max", "min", "var", "any", "all", "argmax", "argmin")
_NUMPY = {"sum": np.sum, "prod": np.prod, "mean": np.mean, "max": np.max, "min": np.min, "var": np.var,
          "any": np.any, "all": np.all}
_NO_IDENTITY = {"max": "maximum", "min": "minimum", "argmax": "argmax", "argmin": "argmin"}
_ACC_SLOT = 32  # bytes per partial accumulator (reduce.cu's static_assert)


def result_dtype(op: str, dtype, out_dtype=None) -> np.dtype:
    """NumPy's result dtype of the reduction op over an array of dtype (with dtype= out_dtype)."""
    if op in ("argmax", "argmin"):
        return np.dtype(np.int64)
    kwargs = {} if out_dtype is None or op in ("max", "min", "any", "all") else {"dtype": out_dtype}
    return np.dtype(_NUMPY[op](np.ones(2, dtype=dtype), **kwargs).dtype)


@dataclass(frozen=True)
class Plan:
    mode: str  # "inner" or "outer"
    outer_shape: tuple
    outer_strides: tuple
    red_shape: tuple
    red_strides: tuple
    M: int
    K: int
    tpr: int  # threads per row (inner) / 0 for outer
    P: int  # blocks along K
    chunk: int
    vec: bool
    grid: tuple


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def plan(shape: tuple, strides: tuple, axes: tuple, itemsize: int, ptr: int, sms: int, block: int = S.BLOCK) -> Plan:
    """How to reduce an array of shape/strides (elements) over axes: kernel, threads per row, K split."""
    kept = [d for d in range(len(shape)) if d not in axes]
    o_shape, (o_strides,) = S.merge_dims(tuple(shape[d] for d in kept), [tuple(strides[d] for d in kept)])
    r_shape, (r_strides,) = S.merge_dims(tuple(shape[d] for d in axes), [tuple(strides[d] for d in axes)])
    M = math.prod(o_shape) if o_shape else 1
    K = math.prod(r_shape) if r_shape else 1
    if M == 0 or K == 0:  # nothing to launch (the caller fills the identity or returns an empty array)
        return Plan("inner", tuple(o_shape), tuple(o_strides), tuple(r_shape), tuple(r_strides), M, K, 32, 1, 1,
                    False, (1, 1))
    vec_n = max(1, 16 // itemsize)
    inner = bool(r_strides) and abs(r_strides[-1]) == 1
    outer = not inner and bool(o_strides) and o_strides[-1] == 1
    target = 2 * sms * (2048 // block)  # blocks for two full waves
    if outer:
        blocks_m = -(-M // 32)
        per_thread = 8
        P = max(1, min(-(-target // blocks_m), -(-K // ((block // 32) * per_thread)), 65535))
        chunk = -(-K // P)
        P = -(-K // chunk)
        return Plan("outer", tuple(o_shape), tuple(o_strides), tuple(r_shape), tuple(r_strides), M, K, 0, P, chunk,
                    False, (blocks_m, P))
    tpr = min(block, max(32, _pow2_at_least(-(-K // (vec_n * 4)))))
    rows = block // tpr
    blocks_m = -(-M // rows)
    P = max(1, min(-(-target // blocks_m), -(-K // (tpr * vec_n * 4)), 65535))
    chunk = -(-K // P)
    vec = (len(r_shape) == 1 and r_strides[0] == 1 and ptr % 16 == 0
           and all((s * itemsize) % 16 == 0 for s in o_strides))
    if vec and P > 1:
        chunk = -(-chunk // vec_n) * vec_n  # every chunk starts on a 16-byte boundary
    P = -(-K // chunk)
    return Plan("inner", tuple(o_shape), tuple(o_strides), tuple(r_shape), tuple(r_strides), M, K, tpr, P, chunk,
                vec, (blocks_m, P))


def _empty_result(op: str, shape: tuple, dtype: np.dtype, xp):
    if op in _NO_IDENTITY:
        raise ValueError(f"zero-size array to reduction operation {_NO_IDENTITY[op]} which has no identity")
    from . import index

    out = xp.empty(shape, dtype=dtype)
    fill = {"sum": 0, "prod": 1, "mean": math.nan, "var": math.nan, "any": False, "all": True}[op]
    index.fill(out, fill)
    return out


def _launch(op: str, x, axes: tuple, out_dtype: np.dtype, ddof: float):
    """The reduction of x over axes as a contiguous 1-d array of the M kept outputs (C order of kept dims)."""
    xp = cp = array_module(x)
    strides = S.element_strides(x)
    p = plan(tuple(x.shape), strides, axes, x.dtype.itemsize, data_ptr(x), sm_count(xp))
    if p.K == 0 or p.M == 0:
        return _empty_result(op, (p.M,), out_dtype, xp) if p.M else xp.empty((0,), dtype=out_dtype)
    compute = compute_ctype(x.dtype, out_dtype)
    if op in ("argmax", "argmin"):
        compute = compute_ctype(x.dtype)
    idx = S.index_ctype(list(p.outer_shape) + list(p.red_shape), [list(p.outer_strides) + list(p.red_strides)])
    meta = S.meta_array(p.outer_shape + p.outer_strides + p.red_shape + p.red_strides, xp)
    out = cp.empty((p.M,), dtype=out_dtype)
    partial = cp.empty((p.M * p.P * _ACC_SLOT,), dtype=np.uint8) if p.P > 1 else None
    tpr = p.tpr or 32
    defines = (("ROP", f"red_{op}"), ("T", ctype(x.dtype)), ("TO", ctype(out_dtype)), ("CT", compute),
               ("IDX", idx), ("TPR", str(tpr)))
    common = (p.M, p.K, p.chunk, len(p.outer_shape), len(p.red_shape), meta, float(ddof))
    if p.mode == "inner":
        kernel(FAMILY, "reduce_inner", defines)(p.grid, S.BLOCK, (out, partial, x, *common, int(p.vec)))
    else:
        kernel(FAMILY, "reduce_outer", defines)(p.grid, S.BLOCK, (out, partial, x, *common))
    if p.P > 1:
        tpr_f = min(S.BLOCK, max(32, _pow2_at_least(p.P)))
        fin = dict(defines)
        fin["TPR"] = str(tpr_f)
        grid = -(-p.M // (S.BLOCK // tpr_f))
        kernel(FAMILY, "reduce_finish", tuple(fin.items()))(grid, S.BLOCK, (out, partial, p.M, p.P, p.K,
                                                                                float(ddof)))
    return out


def _normalize_axes(axes, ndim: int) -> tuple:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate value in 'axis': {tuple(axes)}")
    return tuple(sorted(out)) if ndim else ()


def _kept_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    return tuple(1 if d in axes else n for d, n in enumerate(shape)) if keepdims else \
        tuple(n for d, n in enumerate(shape) if d not in axes)


def reduce(op: str, x, axes=None, keepdims: bool = False, dtype=None, ddof: float = 0):
    """NumPy's x.<op>(axis=axes, keepdims=keepdims, dtype=dtype) (ddof for var) on a CuPy array."""
    if op not in OPS or op in ("argmax", "argmin"):
        raise ValueError(f"reduce: unknown op {op!r}; known: {[o for o in OPS if not o.startswith('arg')]}")
    axes = _normalize_axes(axes, x.ndim)
    out_dtype = result_dtype(op, x.dtype, dtype)
    # NOTE: x[..., None] is a view (never a CuPy copy); reducing over that new axis of one element is NumPy's
    # answer for a 0-d array and for axis=() (a converted copy; mean of one element, var 0)
    src, red_axes = (x[..., None], (x.ndim,)) if not axes else (x, axes)
    flat = _launch(op, src, red_axes, out_dtype, ddof)
    return flat.reshape(_kept_shape(tuple(x.shape), axes, keepdims))


def arg_reduce(op: str, x, axis=None, keepdims: bool = False):
    """NumPy's argmax/argmin: the first extreme (the first NaN if any) along axis, or of the flattened array."""
    if op not in ("argmax", "argmin"):
        raise ValueError(f"arg_reduce: op must be 'argmax' or 'argmin', got {op!r}")
    if axis is None:
        src = x if x.ndim else x[None]
        flat = _launch(op, src, tuple(range(src.ndim)), np.dtype(np.int64), 0)
        return flat.reshape((1,) * x.ndim if keepdims else ())
    axes = _normalize_axes(axis, x.ndim)
    src, red_axes = (x[..., None], (x.ndim,)) if not axes else (x, axes)
    flat = _launch(op, src, red_axes, np.dtype(np.int64), 0)
    return flat.reshape(_kept_shape(tuple(x.shape), axes, keepdims))
