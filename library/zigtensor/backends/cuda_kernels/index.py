"""Launchers of kernels/index.cu over CuPy arrays: advanced-index gather and put/add, scans, nonzero, fill,
arange and the triangle patterns.

    take(view, adv_axes, index_arrays, bpos)              x[key]'s advanced part (see below)
    put(view, adv_axes, index_arrays, bpos, values, accumulate=False)
    fill(x, value); arange(n, start, step, dtype); tri(x_or_None, shape, k, mode, dtype)
    scan(op, x, axis, dtype=None)                          cumsum ("add") / cumprod ("mul")
    nonzero(x) -> (count, ndim) int64 coordinates in C order

Advanced indexing is prepared by the array module (cuda_array.py): the basic part of the key (ints,
slices, None, ...) becomes a strided view in which each advanced index still spans a whole dim
(`adv_axes`); the index arrays (integers, broadcast together to `bshape`) select along those dims, and the
result has the other dims of the view with the block bshape inserted at position `bpos` (NumPy's rule: where
the advanced indices stood when adjacent, else first). Out-of-range indices raise IndexError after the
launch (one device-to-host read; ZT_CUDA_CHECK_INDEX=0 skips it).
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import strided as S
from ._launch import array_module, compute_ctype, ctype, data_ptr, kernel, sm_count

FAMILY = "index"
_TRI_MODES = {"tril": 0, "triu": 1, "tri": 2, "eye": 3}


def _defines(t, to=None, compute=None, **extra) -> tuple:
    compute = compute or compute_ctype(t, to)
    d = (("T", ctype(t)), ("TO", ctype(to if to is not None else t)), ("CT", compute),
         ("ST", S.scalar_ctype(compute)))
    return d + tuple((k, str(v)) for k, v in extra.items())


# ------------------------------------------------------------------------------------------ fill, arange
def fill(x, value) -> None:
    """x[...] = value (a Python scalar) for any strides."""
    n = int(x.size)
    if n == 0:
        return
    d = _defines(x.dtype)
    v = int(value) if d[2][1] == "long long" else float(value)
    xp = array_module(x)
    if x.flags.c_contiguous and data_ptr(x) % 16 == 0:
        work = -(-n // max(1, 16 // x.dtype.itemsize))
        kernel(FAMILY, "fill_vec", d)(S.grid_for(work, xp), S.BLOCK, (x, v, n))
        return
    shape, (strides,) = S.merge_dims(tuple(x.shape), [S.element_strides(x)])
    d += (("IDX", S.index_ctype(shape, [strides])),)
    meta = S.meta_array(tuple(shape) + tuple(strides), xp)
    kernel(FAMILY, "fill_strided", d)(S.grid_for(n, xp), S.BLOCK, (x, v, n, len(shape), meta))


def arange(n: int, start, step, dtype, xp=None):
    """[start, start + step, ...] (n values) computed in the dtype's compute type, as NumPy's arange."""
    xp = xp or S.default_xp()
    out = xp.empty((n,), dtype=dtype)
    if n:
        d = _defines(np.dtype(dtype))
        compute = d[2][1]
        conv = int if compute == "long long" else float
        kernel(FAMILY, "arange", d)(S.grid_for(n, xp), S.BLOCK, (out, conv(start), conv(step), n))
    return out


def tri(x, shape: tuple, k: int, mode: str, dtype, xp=None):
    """mode 'tril'/'triu': x (..., R, C) with the other triangle zeroed; 'tri'/'eye': a new 0/1 pattern of
    shape (R, C) (x is None). The result is C-contiguous."""
    if mode not in _TRI_MODES:
        raise ValueError(f"tri: mode must be one of {sorted(_TRI_MODES)}, got {mode!r}")
    xp = array_module(x) if x is not None else (xp or S.default_xp())
    out = xp.empty(shape, dtype=dtype)
    n = int(out.size)
    if n == 0:
        return out
    strides = S.element_strides(x) if x is not None else (0,) * len(shape)
    d = _defines(np.dtype(dtype), IDX=S.index_ctype(list(shape), [list(strides)]))
    meta = S.meta_array(tuple(shape) + tuple(strides), xp)
    kernel(FAMILY, "tri", d)(S.grid_for(n, xp), S.BLOCK, (out, x, n, len(shape), int(k), _TRI_MODES[mode], meta))
    return out


# ------------------------------------------------------------------------------------------ advanced indexing
def _stack_indices(index_arrays: list, bshape: tuple):
    """The index arrays broadcast to bshape, as one (n_adv, nb) int64 C-contiguous array."""
    from . import elementwise

    cp = array_module(index_arrays[0])
    nb = math.prod(bshape)
    if len(index_arrays) == 1:
        a = index_arrays[0]
        if tuple(a.shape) == bshape and a.dtype == np.int64 and a.flags.c_contiguous:
            return a.reshape(1, nb)
    stacked = cp.empty((len(index_arrays), nb), dtype=np.int64)
    for j, a in enumerate(index_arrays):
        elementwise.copy(stacked[j].reshape(bshape), a)
    return stacked


def _space(view, adv_axes: tuple, bshape: tuple, bpos: int):
    """The index space: the view's non-indexed dims with the flattened index block at bpos. Returns (dims,
    the view's strides per dim (0 at bpos), the index block size)."""
    strides = S.element_strides(view)
    rest = [d for d in range(view.ndim) if d not in adv_axes]
    nb = math.prod(bshape)
    dims = [view.shape[d] for d in rest]
    dstrides = [strides[d] for d in rest]
    dims.insert(bpos, nb)
    dstrides.insert(bpos, 0)
    return dims, dstrides, nb


def _adv_meta(view, adv_axes: tuple) -> tuple:
    strides = S.element_strides(view)
    return tuple(view.shape[d] for d in adv_axes) + tuple(strides[d] for d in adv_axes)


def _index_ctype(n: int, dims: list, strides: list, adv: tuple, n_adv: int) -> str:
    """'int' when every offset into the operands (kept dims plus indexed dims) fits 31 bits."""
    sizes, adv_strides = adv[:n_adv], adv[n_adv:]
    reach = max(sum((d - 1) * abs(s) for d, s in zip(dims, st)) for st in strides)
    reach += sum((d - 1) * abs(s) for d, s in zip(sizes, adv_strides))
    return "int" if max(n, reach, max(dims, default=0)) < 2**31 else "long long"


def _result_shape(view, adv_axes: tuple, bshape: tuple, bpos: int) -> tuple:
    rest = [view.shape[d] for d in range(view.ndim) if d not in adv_axes]
    return tuple(rest[:bpos]) + tuple(bshape) + tuple(rest[bpos:])


def _check_err(err, what: str) -> None:
    if os.environ.get("ZT_CUDA_CHECK_INDEX", "1") != "0" and int(err[0]):
        raise IndexError(f"{what}: an index is out of bounds for the indexed dimension")


def _err_flag(xp):
    err = xp.empty((1,), dtype=np.int32)
    fill(err, 0)
    return err


def take(view, adv_axes: tuple, index_arrays: list, bpos: int):
    """view[..., idx_0, ..., idx_k, ...]: the index arrays select along adv_axes of view (broadcast
    together); the result (C-contiguous) has the index block at position bpos among the other dims."""
    bshape = tuple(np.broadcast_shapes(*(tuple(a.shape) for a in index_arrays)))
    shape = _result_shape(view, adv_axes, bshape, bpos)
    xp = array_module(view)
    out = xp.empty(shape, dtype=view.dtype)
    n = int(out.size)
    if n == 0:
        return out
    dims, dstrides, nb = _space(view, adv_axes, bshape, bpos)
    idx = _stack_indices(index_arrays, bshape)
    adv = _adv_meta(view, adv_axes)
    d = _defines(view.dtype, IDX=_index_ctype(n, dims, [dstrides], adv, len(adv_axes)))
    meta = S.meta_array(tuple(dims) + tuple(dstrides) + adv, xp)
    err = _err_flag(xp)
    kernel(FAMILY, "gather", d)(S.grid_for(n, xp), S.BLOCK, (out, view, idx, n, nb, len(adv_axes), len(dims),
                                                            bpos, meta, err))
    _check_err(err, "index")
    return out


def put(view, adv_axes: tuple, index_arrays: list, bpos: int, values, accumulate: bool = False) -> None:
    """view[advanced part] = values (accumulate: +=, repeated indices summed with atomics); values (an array
    or a scalar) broadcast to the index space and converted to view's dtype."""
    from . import elementwise

    cp = xp = array_module(view)
    bshape = tuple(np.broadcast_shapes(*(tuple(a.shape) for a in index_arrays)))
    shape = _result_shape(view, adv_axes, bshape, bpos)
    n = math.prod(shape)
    if n == 0:
        return
    if not hasattr(values, "shape") or values.dtype != view.dtype:
        v = cp.empty(tuple(getattr(values, "shape", ())), dtype=view.dtype)
        elementwise.copy(v, values)
        values = v
    vstrides = S.broadcast_strides(tuple(values.shape), S.element_strides(values), shape)
    # the block's dims must merge into one stride; else lay the values out in index space first
    blk = slice(bpos, bpos + len(bshape))
    b_shape, (b_strides,) = S.merge_dims(shape[blk], [vstrides[blk]])
    if len(b_shape) > 1:
        dense = cp.empty(shape, dtype=view.dtype)
        elementwise.copy(dense, values)
        values, vstrides = dense, S.element_strides(dense)
        b_strides = [vstrides[bpos + len(bshape) - 1]] if bshape else [0]
    block_stride = b_strides[0] if b_strides else 0
    vspace = list(vstrides[:bpos]) + [block_stride] + list(vstrides[bpos + len(bshape):])
    dims, dstrides, nb = _space(view, adv_axes, bshape, bpos)
    idx = _stack_indices(index_arrays, bshape)
    adv = _adv_meta(view, adv_axes)
    d = _defines(view.dtype, IDX=_index_ctype(n, dims, [dstrides, vspace], adv, len(adv_axes)))
    meta = S.meta_array(tuple(dims) + tuple(dstrides) + tuple(vspace) + adv, xp)
    err = _err_flag(xp)
    name = "index_add" if accumulate else "index_put"
    kernel(FAMILY, name, d)(S.grid_for(n, xp), S.BLOCK, (view, values, idx, n, nb, len(adv_axes), len(dims), bpos,
                                                        meta, err))
    _check_err(err, "index_add" if accumulate else "__setitem__")


# ------------------------------------------------------------------------------------------ scans
def _scan_rows(out, x, axis: int, op: str, compute: str, carry, P: int, chunk: int, exclusive: bool):
    """One scan_rows launch over x's rows along axis into out (same shape)."""
    xs, os_ = S.element_strides(x), S.element_strides(out)
    outer = [d for d in range(x.ndim) if d != axis]
    o_shape, (xo, oo) = S.merge_dims(tuple(x.shape[d] for d in outer), [tuple(xs[d] for d in outer),
                                                                        tuple(os_[d] for d in outer)])
    rows = math.prod(o_shape) if o_shape else 1
    length = x.shape[axis]
    d = (("T", ctype(x.dtype)), ("TO", ctype(out.dtype)), ("CT", compute), ("ST", S.scalar_ctype(compute)),
         ("SCAN", f"scan_{op}"),
         ("IDX", S.index_ctype(list(o_shape) + [length], [list(xo) + [xs[axis]], list(oo) + [os_[axis]]])))
    meta = S.meta_array(tuple(o_shape) + tuple(xo) + tuple(oo) + (xs[axis], os_[axis]), array_module(x))
    flags = (carry is not None) | (exclusive << 1)
    kernel(FAMILY, "scan_rows", d)((rows, P), S.BLOCK, (out, x, carry, rows, length, chunk, len(o_shape), meta,
                                                          flags))
    return d, meta, rows, length


def scan(op: str, x, axis: int, dtype=None, exclusive: bool = False):
    """Inclusive (or exclusive) cumulative sum ("add") or product ("mul") along axis; NumPy's result dtype
    (integers and bool accumulate in int64)."""
    if op not in ("add", "mul"):
        raise ValueError(f"scan: op must be 'add' or 'mul', got {op!r}")
    cp = xp = array_module(x)
    out_dtype = np.dtype(dtype) if dtype is not None else \
        (np.cumsum if op == "add" else np.cumprod)(np.ones(1, x.dtype)).dtype
    out = cp.empty(x.shape, dtype=out_dtype)
    if out.size == 0:
        return out
    if x.ndim == 0:
        from . import elementwise

        elementwise.copy(out, x)
        return out
    axis = axis % x.ndim
    compute = compute_ctype(x.dtype, out_dtype)
    length = x.shape[axis]
    rows = x.size // length
    tile = S.BLOCK * 4  # BLOCK * ITEMS elements per tile
    # split long rows over P blocks when the rows alone do not fill the GPU
    P = max(1, min(-(-length // (8 * tile)), -(-2 * sm_count(xp) * 8 // rows), 65535))
    chunk = -(-length // P)
    P = -(-length // chunk)
    if P == 1:
        _scan_rows(out, x, axis, op, compute, None, 1, length, exclusive)
        return out
    # 1) each chunk's total, 2) exclusive scan of the totals per row, 3) the chunks scanned from those
    totals = cp.empty((rows, P), dtype=_compute_dtype(compute))
    xs = S.element_strides(x)
    outer = [d for d in range(x.ndim) if d != axis]
    o_shape, (xo,) = S.merge_dims(tuple(x.shape[d] for d in outer), [tuple(xs[d] for d in outer)])
    d = (("T", ctype(x.dtype)), ("TO", ctype(out_dtype)), ("CT", compute), ("ST", S.scalar_ctype(compute)),
         ("SCAN", f"scan_{op}"), ("IDX", S.index_ctype(list(o_shape) + [length], [list(xo) + [xs[axis]]])))
    meta = S.meta_array(tuple(o_shape) + tuple(xo) + tuple(xo) + (xs[axis], xs[axis]), xp)
    kernel(FAMILY, "scan_totals", d)((rows, P), S.BLOCK, (totals, x, rows, length, chunk, len(o_shape), meta))
    carry = cp.empty((rows, P), dtype=totals.dtype)
    _scan_rows(carry, totals, 1, op, compute, None, 1, P, True)
    _scan_rows(out, x, axis, op, compute, carry, P, chunk, exclusive)
    return out


def _compute_dtype(compute: str) -> np.dtype:
    return np.dtype({"float": np.float32, "double": np.float64, "long long": np.int64}[compute])


def nonzero(x):
    """The C-order coordinates of x's nonzero elements as a (count, ndim) int64 array (one sync: the count)."""
    cp = xp = array_module(x)
    n = int(x.size)
    nd = max(x.ndim, 1)
    if n == 0:
        return cp.empty((0, nd), dtype=np.int64)
    src = x if x.ndim else x[None]
    flat_mask = src
    positions = scan("add", _c_order_bool(flat_mask), 0)
    count = int(positions[-1])
    coords = cp.empty((count, nd), dtype=np.int64)
    if count:
        shape, strides = tuple(src.shape), S.element_strides(src)
        d = _defines(src.dtype, IDX=S.index_ctype(list(shape), [list(strides)]))
        meta = S.meta_array(shape + strides, xp)
        kernel(FAMILY, "nonzero_compact", d)(S.grid_for(n, xp), S.BLOCK, (coords, src, positions, n, len(shape),
                                                                         meta))
    return coords


def _c_order_bool(x):
    """x != 0 as a flat C-order bool array (the scan's input)."""
    from . import elementwise

    mask = elementwise.binary("not_equal", x, 0) if x.dtype != np.bool_ else x
    if not mask.flags.c_contiguous:
        dense = array_module(mask).empty(mask.shape, dtype=np.bool_)
        elementwise.copy(dense, mask)
        mask = dense
    return mask.reshape(-1)
