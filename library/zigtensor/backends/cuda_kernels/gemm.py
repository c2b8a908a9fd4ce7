"""Launchers of kernels/gemm.cu: matrix products of CuPy arrays with NumPy's matmul semantics.

    matmul(a, b, out=None, *, alpha=1.0, beta=0.0, tf32=None, kernel=None, tile=None)
        out = alpha * (a @ b) + beta * out over (..., M, K) @ (..., K, N); batch dims broadcast, 1-D operands
        as in numpy.matmul. Either unit-stride layout of each operand's last two dims is read in place (a
        transposed view costs no copy), broadcast batch dims are read with stride 0.

Kernels (chosen per call; `kernel=` or ZT_GEMM forces one):
    float16 / bfloat16   gemm_tc (mma.sync m16n8k16, fp32 accumulation) when rows are 16-byte aligned, else
                         gemm_simt (the operands widened to float in shared memory)
    float32              gemm_simt; gemm_tc with tf32 inputs when allowed (tf32=True, or ZT_TF32=1)
    float64              gemm_simt with double accumulation (FP64=1)
ZT_GEMM=cublas runs cupy.matmul instead (the explicit baseline; never chosen on its own). ZT_GEMM=naive | simt |
tc forces one of ours. `plan()` is pure (shapes, strides, pointers in; kernel, defines, grid out) and is tested
without a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from . import _launch
from . import strided as S

FAMILY = "gemm"
KERNELS = ("naive", "simt", "tc", "cublas")
MAX_GRID_YZ = 65535
SIMT_TILE = 128
_F16 = np.dtype(np.float16)
_BF16 = np.dtype(ml_dtypes.bfloat16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_DTYPES = (_F16, _BF16, _F32, _F64)


@dataclass(frozen=True)
class TcTile:
    """A gemm_tc configuration: block tile bm x bn, warp tile wm x wn, cp.async stages (k tile: 64 bytes)."""

    bm: int
    bn: int
    wm: int
    wn: int
    stages: int

    @property
    def threads(self) -> int:
        return (self.bm // self.wm) * (self.bn // self.wn) * 32

    def bk(self, itemsize: int) -> int:
        return 64 // itemsize

    def smem_bytes(self, itemsize: int, a_t: int, b_t: int) -> int:
        """gemm.cu's dynamic shared memory: STAGES * (A tile + B tile) * sizeof(T), tiles padded per row."""
        bk, chunk = self.bk(itemsize), 16 // itemsize
        tile_a = bk * (self.bm + 8) if a_t else self.bm * (bk + chunk)
        tile_b = self.bn * (bk + chunk) if b_t else bk * (self.bn + 8)
        return self.stages * (tile_a + tile_b) * itemsize

    def defines(self) -> dict:
        return {"BM": self.bm, "BN": self.bn, "WM": self.wm, "WN": self.wn, "STAGES": self.stages}


TC_LARGE = TcTile(128, 128, 64, 64, 4)  # 4 warps, 80 KB (16-bit): 2 blocks per H100 SM
TC_SMALL = TcTile(64, 64, 32, 32, 3)    # for problems with fewer 128 x 128 tiles than SMs


@dataclass(frozen=True)
class Layout:
    """How a kernel reads one (rows, cols) operand: trans 0 = element (r, c) at r * ld + c, 1 = at c * ld + r."""

    trans: int
    ld: int


def operand_layout(rows: int, cols: int, row_stride: int, col_stride: int) -> Layout | None:
    """The in-place layout of a (rows, cols) matrix with these element strides, or None when neither dim has unit
    stride (the caller copies). A size-1 dim's stride never matters; ld then gets a multiple of 8 so that it
    does not rule out the vector paths."""
    if min(row_stride, col_stride) < 0:
        return None
    if cols == 1 or col_stride == 1:
        return Layout(0, row_stride if rows > 1 else -(-max(cols, 1) // 8) * 8)
    if rows == 1 or row_stride == 1:
        return Layout(1, col_stride if cols > 1 else -(-max(rows, 1) // 8) * 8)
    return None


@dataclass(frozen=True)
class Plan:
    kernel: str            # "naive", "simt" or "tc"
    defines: dict
    block: tuple
    grid_xy: tuple         # (x, y); z is the batch (split by the launcher beyond 65535)
    shared_mem: int


def _tc_aligned(itemsize: int, ptrs: tuple, lds: tuple, batch_strides: tuple) -> bool:
    chunk = 16 // itemsize
    return (all(p % 16 == 0 for p in ptrs) and all(ld % chunk == 0 for ld in lds)
            and all(s % chunk == 0 for s in batch_strides))


def _vec4(itemsize: int, ptr: int, ld: int, batch_strides: tuple) -> bool:
    return ptr % (4 * itemsize) == 0 and ld % 4 == 0 and all(s % 4 == 0 for s in batch_strides)


def choose_kernel(dtype, tc_ok: bool, tf32: bool, forced: str | None) -> str:
    """The kernel for an input dtype: see the module docstring. `forced` (naive/simt/tc) overrides, and is
    refused where that kernel cannot run."""
    dtype = np.dtype(dtype)
    if dtype not in _DTYPES:
        raise TypeError(f"matmul: CUDA kernels take float16, bfloat16, float32 or float64, got {dtype}")
    if forced is not None:
        if forced not in ("naive", "simt", "tc"):
            raise ValueError(f"matmul: kernel must be one of {KERNELS}, got {forced!r}")
        if dtype == _F64 and forced == "tc":
            raise ValueError("matmul: tensor cores take no float64; use kernel='simt' or 'naive'")
        if forced == "tc" and not tc_ok:
            raise ValueError("matmul: the tensor-core kernel needs 16-byte aligned operands with leading dims and "
                             "batch strides that are multiples of 16 bytes; these are not")
        return forced
    if dtype == _F64:
        return "simt"
    if dtype == _F32:
        return "tc" if tf32 and tc_ok else "simt"
    return "tc" if tc_ok else "simt"


def plan(dtype, out_dtype, m: int, n: int, k: int, batch: int, layout_a: Layout, layout_b: Layout,
         ptr_a: int, ptr_b: int, batch_strides_a: tuple, batch_strides_b: tuple, sms: int, tf32: bool = False,
         forced: str | None = None, tile: TcTile | None = None) -> Plan:
    """Kernel, defines, block, grid (x, y) and shared memory for one matmul (pure: no GPU needed)."""
    dtype, out_dtype = np.dtype(dtype), np.dtype(out_dtype)
    item = dtype.itemsize
    tc_ok = dtype != _F64 and _tc_aligned(item, (ptr_a, ptr_b), (layout_a.ld, layout_b.ld),
                                          tuple(batch_strides_a) + tuple(batch_strides_b))
    kernel = choose_kernel(dtype, tc_ok, tf32, forced)
    defines = {"T": _launch.ctype(dtype), "OUT_T": _launch.ctype(out_dtype), "A_T": layout_a.trans,
               "B_T": layout_b.trans}
    if dtype == _F64:
        defines["FP64"] = 1
    if kernel == "naive":
        return Plan("naive", defines, (16, 16, 1), (-(-n // 16), -(-m // 16)), 0)
    if kernel == "simt":
        defines["VEC_A"] = int(_vec4(item, ptr_a, layout_a.ld, tuple(batch_strides_a)))
        defines["VEC_B"] = int(_vec4(item, ptr_b, layout_b.ld, tuple(batch_strides_b)))
        return Plan("simt", defines, (256, 1, 1), (-(-n // SIMT_TILE), -(-m // SIMT_TILE)), 0)
    if tile is None:
        tile = TC_LARGE if -(-m // 128) * -(-n // 128) * batch >= sms else TC_SMALL
    defines.update(tile.defines())
    return Plan("tc", defines, (tile.threads, 1, 1), (-(-n // tile.bn), -(-m // tile.bm)),
                tile.smem_bytes(item, layout_a.trans, layout_b.trans))


def _params(m, n, k, lda, ldb, ldc, bsa, bsb, bsc, z0, inner, alpha, beta) -> dict:
    return {"lda": lda, "ldb": ldb, "ldc": ldc, "sa0": bsa[0], "sa1": bsa[1], "sb0": bsb[0], "sb1": bsb[1],
            "sc0": bsc[0], "sc1": bsc[1], "m": m, "n": n, "k": k, "z0": z0, "batch_inner": inner,
            "alpha": float(alpha), "beta": float(beta)}


def _kernel_view(x):
    """The array handed to the kernel for operand x; only the address of x's first element and the dtype matter.
    NOTE: for the CPU emulator, which copies C-contiguous buffers only, a C-contiguous array that starts at the
    same address is preferred: x's last-two-dims transpose, or the array x was sliced from."""
    if x.flags.c_contiguous or x.ndim < 2:
        return x
    t = x.swapaxes(-1, -2)
    if t.flags.c_contiguous:
        return t
    base = x.base
    if base is not None and base.dtype == x.dtype and base.flags.c_contiguous and \
            _launch.data_ptr(base) == _launch.data_ptr(x):
        return base
    return x


def _batch_plan(batch_shape: tuple, strides: list[tuple]) -> tuple[int, int, list[tuple[int, int]]] | None:
    """(outer, inner, [(outer stride, inner stride) per operand]) after merging batch dims, or None when more
    than two dims remain."""
    shape, merged = S.merge_dims(batch_shape, strides)
    if len(shape) > 2:
        return None
    shape = [1] * (2 - len(shape)) + list(shape)
    merged = [[0] * (2 - len(s)) + list(s) for s in merged]
    return shape[0], shape[1], [(s[0], s[1]) for s in merged]


def _tf32_default() -> bool:
    return os.environ.get("ZT_TF32", "0") == "1"


def matmul(a, b, out=None, *, alpha: float = 1.0, beta: float = 0.0, tf32: bool | None = None,
           kernel: str | None = None, tile: TcTile | None = None):
    """alpha * (a @ b) + beta * out (NumPy's matmul shapes); a new array unless `out` is given."""
    xp = _launch.array_module(a)
    if _launch.array_module(b) is not xp:
        raise TypeError(f"matmul: both operands must be arrays of one kind, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: operands must have one dtype, got {a.dtype} and {b.dtype}")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dim, got shapes {a.shape} and {b.shape}")
    forced = kernel if kernel is not None else (os.environ.get("ZT_GEMM") or None)
    if forced not in (None, *KERNELS):
        raise ValueError(f"matmul: kernel (or ZT_GEMM) must be one of {KERNELS}, got {forced!r}")
    if beta != 0.0 and out is None:
        raise ValueError(f"matmul: beta={beta} reads `out`, but no out was given")
    squeeze_m, squeeze_n = a.ndim == 1, b.ndim == 1
    a2 = a[None, :] if squeeze_m else a
    b2 = b[:, None] if squeeze_n else b
    m, k = a2.shape[-2:]
    k2, n = b2.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul: inner dims differ: a {a.shape} @ b {b.shape} (K {k} vs {k2})")
    try:
        batch_shape = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
    except ValueError:
        raise ValueError(f"matmul: batch dims of a {a.shape} and b {b.shape} do not broadcast") from None
    result_shape = batch_shape + (() if squeeze_m else (m,)) + (() if squeeze_n else (n,))
    if out is not None and (tuple(out.shape) != result_shape or out.dtype != a.dtype):
        raise ValueError(f"matmul: out must be {a.dtype} of shape {result_shape}, got {out.dtype} "
                         f"{tuple(out.shape)}")
    if forced == "cublas":
        if alpha == 1.0 and beta == 0.0:
            return xp.matmul(a, b, out=out)
        prod = xp.matmul(a, b)
        out[...] = alpha * prod + beta * out if beta != 0.0 else alpha * prod
        return out

    # the output: `out` itself when C-contiguous, else a temporary copied back at the end
    direct = out is not None and out.flags.c_contiguous
    if direct:
        c = out.reshape(batch_shape + (m, n))
    else:
        c = xp.empty(batch_shape + (m, n), dtype=a.dtype)
        if beta != 0.0:
            c[...] = out.reshape(batch_shape + (m, n))
    if c.size:
        _gemm(xp, a2, b2, c, m, n, k, batch_shape, alpha, beta, tf32, forced, tile)
    result = c.reshape(result_shape)
    if out is None:
        return result
    if not direct:
        out[...] = result
    return out


def _gemm(xp, a, b, c, m, n, k, batch_shape, alpha, beta, tf32, forced, tile):
    sa, sb = S.element_strides(a), S.element_strides(b)
    la = operand_layout(m, k, sa[-2], sa[-1])
    lb = operand_layout(k, n, sb[-2], sb[-1])
    if la is None:
        a = xp.ascontiguousarray(a)
        sa, la = S.element_strides(a), Layout(0, k)
    if lb is None:
        b = xp.ascontiguousarray(b)
        sb, lb = S.element_strides(b), Layout(0, n)
    sc = S.element_strides(c)
    strides = [S.broadcast_strides(a.shape[:-2], sa[:-2], batch_shape),
               S.broadcast_strides(b.shape[:-2], sb[:-2], batch_shape), sc[:-2]]
    batching = _batch_plan(batch_shape, strides)
    if batching is None:  # NOTE: more than two batch dims survive merging: materialize the broadcasts (rare)
        a = xp.ascontiguousarray(xp.broadcast_to(a, batch_shape + (m, k)))
        b = xp.ascontiguousarray(xp.broadcast_to(b, batch_shape + (k, n)))
        la, lb = Layout(0, k), Layout(0, n)
        batching = _batch_plan(batch_shape, [S.element_strides(a)[:-2], S.element_strides(b)[:-2], sc[:-2]])
    outer, inner, (bsa, bsb, bsc) = batching
    batch = outer * inner
    tf32 = _tf32_default() if tf32 is None else bool(tf32)
    ka, kb = _kernel_view(a), _kernel_view(b)
    p = plan(a.dtype, c.dtype, m, n, k, batch, la, lb, _launch.data_ptr(ka), _launch.data_ptr(kb), bsa, bsb,
             _launch.sm_count(xp), tf32, forced, tile)
    fn = _launch.kernel(FAMILY, f"gemm_{p.kernel}", p.defines)
    gx, gy = p.grid_xy
    if gy > MAX_GRID_YZ:
        raise ValueError(f"matmul: M = {m} needs {gy} block rows; the grid allows {MAX_GRID_YZ}")
    for z0 in range(0, batch, MAX_GRID_YZ):
        params = _params(m, n, k, la.ld, lb.ld, n, bsa, bsb, bsc, z0, inner, alpha, beta)
        fn((gx, gy, min(MAX_GRID_YZ, batch - z0)), p.block, (ka, kb, c, params), shared_mem=p.shared_mem)


def flops(m: int, n: int, k: int, batch: int = 1) -> int:
    """Floating-point operations of a matmul (2 per multiply-add), for benchmarks."""
    return 2 * m * n * k * batch


__all__ = ["KERNELS", "TC_LARGE", "TC_SMALL", "Layout", "Plan", "TcTile", "choose_kernel", "flops", "matmul",
           "operand_layout", "plan"]
