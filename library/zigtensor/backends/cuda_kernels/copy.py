"""Launchers of kernels/copy.cu: copy (with cast and broadcasting) between any CuPy arrays.

    copy(dst, src)          dst[...] = src, src broadcast to dst's shape, any strides, any dtypes
    astype(x, dtype)        a new C-contiguous array of x's values in dtype
    contiguous(x)           x itself when C-contiguous, else a C-contiguous copy

Layout planning (broadcast strides, dim merging, the index width) is strided.py's, shared with the other
strided launchers. The strided kernel takes its layout by value (struct ZtCopyLayout): no device metadata.
dst must not overlap src unless they are the same view.
"""

from __future__ import annotations

from . import strided as S
from ._launch import ctype, kernel

FAMILY = "copy"


def layout(dst_shape: tuple, dst_strides: tuple, src_shape: tuple, src_strides: tuple) -> tuple[dict, str]:
    """(the ZtCopyLayout fields, the IDX define) for dst[...] = src, strides in elements. Pure."""
    shape, (d_strides, s_strides) = S.merge_dims(tuple(dst_shape), [
        tuple(dst_strides), S.broadcast_strides(tuple(src_shape), tuple(src_strides), tuple(dst_shape))])
    if len(shape) > S.MAX_DIMS:
        raise ValueError(f"copy: {len(shape)} dims remain after merging contiguous ones (shape {tuple(dst_shape)}); "
                         f"copy.cu handles at most {S.MAX_DIMS}")
    fields = {"shape": shape, "src_strides": s_strides, "dst_strides": d_strides, "ndim": len(shape)}
    return fields, S.index_ctype(shape, [s_strides, d_strides])


def copy(dst, src) -> None:
    """dst[...] = src: src broadcast to dst.shape (NumPy's rules), converted to dst.dtype, any strides."""
    n = int(dst.size)
    if n == 0:
        return
    types = (("SRC_T", ctype(src.dtype)), ("DST_T", ctype(dst.dtype)))
    if tuple(src.shape) == tuple(dst.shape) and src.flags.c_contiguous and dst.flags.c_contiguous:
        vec = 16 // max(src.dtype.itemsize, dst.dtype.itemsize)
        aligned = src.data.ptr % (vec * src.dtype.itemsize) == 0 and dst.data.ptr % (vec * dst.dtype.itemsize) == 0
        name, work = ("copy_contiguous_vec", -(-n // vec)) if aligned else ("copy_contiguous", n)
        kernel(FAMILY, name, types)(S.grid_for(work), S.BLOCK, (src, dst, n))
        return
    fields, idx = layout(dst.shape, S.element_strides(dst), src.shape, S.element_strides(src))
    kernel(FAMILY, "copy_strided", (*types, ("IDX", idx)))(S.grid_for(n), S.BLOCK, (src, dst, n, fields))


def astype(x, dtype):
    """A new C-contiguous array with x's values converted to dtype."""
    out = S.cupy().empty(x.shape, dtype=dtype)
    copy(out, x)
    return out


def contiguous(x):
    """x when it is C-contiguous, else a C-contiguous copy."""
    return x if x.flags.c_contiguous else astype(x, x.dtype)
