"""The CPU kernel of QuantLinear's int parts for few input rows: y = x @ W.T with W read as 4- or 8-bit codes,
compiled by numba. Weights stay packed in memory; each block of ROW_BLOCK output rows is dequantized into a
buffer that stays in the L1 cache and multiplied with every input row there, so a batch-8 decode step reads each
code once and spends most of its time in fused multiply-adds rather than in memory traffic.

>>> order = kernel_order(bits, in_pad, group_len)  # the input's columns in the order the buffer holds weights
>>> matmul(x, order, codes, scales, offsets, has_mins, bits, group_len, out, chunks)

Layout (qlinear.py's int parts): codes (rows, in_pad / 2) 4-bit, planar within each group (byte j of a group: its
column j in the low nibble, column j + half in the high one), or (rows, in_pad) 8-bit; per (row, group) scales
(float16 held as uint16 bits, or float32) and zero points (W = (code - zero) * scale) or float16 mins (GGUF Q4_1:
W = code * scale + min).

Why the buffer is in "byte-plane" order (the low nibbles of a row's bytes, then the high nibbles) and the input
is gathered once per call to match: each half of a byte then lands at an address affine in the byte index, so
the dequantization is one straight loop that LLVM vectorizes (8 lanes); a group's scale changes every 16 bytes
at most (groups are whole multiples of 32 columns for 4-bit, of 16 for 8-bit), so a 32-byte span holds two
groups at most and blends their scale and offset arithmetically (STEP) instead of branching, which would stop
the vectorizer. Loop indices are unsigned: numba's wraparound test for negative signed indices also stops it.
Rows are reached by 2-D indexing (codes[r, k], w[i, k]), never as row views: numba counts references on each
view it makes, and a SmolLM2 step makes about 200,000 of them (its products took 36.5 ms a batch-8 step with
views, 30.9 without; batch 1 20.4 and 15.5; the same bits).
Measured on the 2-core EPYC VM (one thread): 8.5 G weights/s dequantized with two groups a span (GGUF's groups of
32), 10.4 with one (the blend dropped), 35 G multiply-adds/s in the 4 x 2 register-blocked product.

What does not fit (other group lengths, GGUF's raw K-quant blocks, many input rows) stays on qlinear.py's
NumPy paths. Threads: numba's pool (prange), not CPUBackend.parallel's: with numba's OpenMP layer (the default
where libgomp is found) a region starts in about 10 us where the backend's pool takes about 100 us on the 2-core
VM, so every layer of a decode step can be split (measured: a 576 x 576 Q4_1 product 90 us on one thread, 56 us
on two; workqueue, numba's fallback layer, took 272 us).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange, uint64

from ..backends.numba_kernels import HALF_TO_FLOAT, JIT, load

# 0 for the first 16 bytes of a 32-byte span, 1 for the second: scale = scale_a + (scale_b - scale_a) * STEP
_STEP = np.repeat(np.array([0.0, 1.0], np.float32), 16)
# output rows dequantized together: 4 rows x up to 1536 inputs of float32 is 24 KiB, inside a 32 KiB L1
ROW_BLOCK = 4


def supports(bits: int, group_len: int) -> bool:
    """Whether an int part's layout runs here: whole 32-column groups (4-bit) or 16-column ones (8-bit)."""
    return (bits == 4 and group_len % 32 == 0) or (bits == 8 and group_len % 16 == 0)


def input_order(bits: int, in_pad: int, group_len: int) -> np.ndarray | None:
    """The stored columns in the buffer's order (None for 8-bit: the stored order itself)."""
    if bits == 8:
        return None
    half = group_len // 2
    b = np.arange(in_pad // 2)
    lo = (b // half) * group_len + b % half
    return np.concatenate([lo, lo + half])


def kernel_order(bits: int, in_pad: int, group_len: int) -> np.ndarray:
    """input_order as matmul takes it: an empty array where the stored order is the buffer's (8-bit)."""
    order = input_order(bits, in_pad, group_len)
    return np.empty(0, np.int64) if order is None else order


@njit(inline="always", **JIT)
def _group_affine(scales, offsets, r, has_mins, s_out, o_out):
    """Per group of row r: W = code * s + o (o = -zero * s, or the min)."""
    for g in range(s_out.shape[0]):
        s = load(scales[r, g], HALF_TO_FLOAT)
        s_out[g] = s
        o_out[g] = load(offsets[r, g], HALF_TO_FLOAT) if has_mins else -s * np.float32(offsets[r, g])


@njit(inline="always", **JIT)
def _span4(codes, r, w, i, nb, s0, n, sa, oa, ds, do):
    """n (32, or 16 at a row's end) bytes from s0: w[k] = low nibble * s + o, w[nb + k] = high nibble * s + o, s
    and o blended from group a to group b at byte 16 (ds = do = 0 where the span is one group: LLVM then drops
    the blend; n a constant at each call, so the loop has a known trip count)."""
    for j in range(n):
        k = s0 + uint64(j)
        v = np.float32(codes[r, k])
        hi = np.floor(v * np.float32(0.0625))
        lo = v - np.float32(16.0) * hi
        s = sa + ds * _STEP[j]
        o = oa + do * _STEP[j]
        w[i, k] = lo * s + o
        w[i, nb + k] = hi * s + o


@njit(inline="always", **JIT)
def _span8(codes, r, w, i, s0, n, sa, oa, ds, do):
    """_span4 for 8-bit codes: w[k] = code * s + o."""
    for j in range(n):
        k = s0 + uint64(j)
        w[i, k] = np.float32(codes[r, k]) * (sa + ds * _STEP[j]) + (oa + do * _STEP[j])


@njit(inline="always", **JIT)
def _dequant4(codes, r, s_g, o_g, half, w, i):
    """Row r of 4-bit codes -> w[i] (in_pad,) float32, low nibbles then high ones (byte-plane order)."""
    nb = uint64(codes.shape[1])
    uh = uint64(half)
    end = nb - nb % uint64(32)
    zero = np.float32(0.0)
    if half % 32 == 0:   # every span within one group (measured 40% faster without the blend)
        for s0 in range(uint64(0), end, uint64(32)):
            g = s0 // uh
            _span4(codes, r, w, i, nb, s0, 32, s_g[g], o_g[g], zero, zero)
    else:
        for s0 in range(uint64(0), end, uint64(32)):
            ga, gb = s0 // uh, (s0 + uint64(16)) // uh
            _span4(codes, r, w, i, nb, s0, 32, s_g[ga], o_g[ga], s_g[gb] - s_g[ga], o_g[gb] - o_g[ga])
    if end < nb:   # a last 16 bytes: one group
        g = end // uh
        _span4(codes, r, w, i, nb, end, 16, s_g[g], o_g[g], zero, zero)


@njit(inline="always", **JIT)
def _dequant8(codes, r, s_g, o_g, group_len, w, i):
    """Row r of 8-bit codes -> w[i] (in_pad,) float32 in the stored order."""
    n = uint64(codes.shape[1])
    ug = uint64(group_len)
    end = n - n % uint64(32)
    for s0 in range(uint64(0), end, uint64(32)):
        ga, gb = s0 // ug, (s0 + uint64(16)) // ug
        _span8(codes, r, w, i, s0, 32, s_g[ga], o_g[ga], s_g[gb] - s_g[ga], o_g[gb] - o_g[ga])
    if end < n:   # a last 16 codes: one group
        g = end // ug
        _span8(codes, r, w, i, end, 16, s_g[g], o_g[g], np.float32(0.0), np.float32(0.0))


@njit(**JIT)
def _dot_block(w, x, out, r0, nrows):
    """out[m, r0 + i] = w[i] . x[m] for the nrows (<= 4) rows of w, every row m of x: 4 weight rows x 2 input
    rows per pass (eight accumulators, each weight and input load used twice or four times).

    NOTE: an odd last input row is paired with itself rather than given a one-row loop: LLVM interleaves that
    loop's sums differently, and a row would then round differently alone than batched."""
    M, K = x.shape
    i1, i2, i3 = 1 % nrows, 2 % nrows, 3 % nrows   # a short block repeats its rows
    for m in range(0, M, 2):
        m1 = min(m + 1, M - 1)
        a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = np.float32(0.0)
        for k in range(K):
            p, q = x[m, k], x[m1, k]
            a00 += w[0, k] * p
            a01 += w[0, k] * q
            a10 += w[i1, k] * p
            a11 += w[i1, k] * q
            a20 += w[i2, k] * p
            a21 += w[i2, k] * q
            a30 += w[i3, k] * p
            a31 += w[i3, k] * q
        acc = ((a00, a01), (a10, a11), (a20, a21), (a30, a31))
        for i in range(nrows):
            out[m, r0 + i] = acc[i][0]
            if m + 1 < M:
                out[m + 1, r0 + i] = acc[i][1]


@njit(inline="always", **JIT)
def _dequant_row(codes, scales, offsets, has_mins, bits, group_len, r, s_g, o_g, w, i):
    """Row r of the part -> w[i] (in_pad,) float32 in input_order's order (s_g, o_g: scratch of n_groups)."""
    _group_affine(scales, offsets, r, has_mins, s_g, o_g)
    if bits == 4:
        _dequant4(codes, r, s_g, o_g, group_len // 2, w, i)
    else:
        _dequant8(codes, r, s_g, o_g, group_len, w, i)


@njit(**JIT)
def _matmul_rows(xk, codes, scales, offsets, has_mins, bits, group_len, out, start, stop):
    """out[:, start:stop] of matmul, on this thread."""
    w = np.empty((ROW_BLOCK, xk.shape[1]), np.float32)
    s_g = np.empty(scales.shape[1], np.float32)
    o_g = np.empty(scales.shape[1], np.float32)
    for r0 in range(start, stop, ROW_BLOCK):
        n = min(ROW_BLOCK, stop - r0)
        for i in range(n):
            _dequant_row(codes, scales, offsets, has_mins, bits, group_len, r0 + i, s_g, o_g, w, i)
        _dot_block(w, xk, out, r0, n)


@njit(**JIT)
def _gathered(x, order):
    """x's columns in `order` (x itself for an empty order), gathered here rather than by np.take: NumPy's take
    along axis 1 of an 8 x 576 input took 16 us, a tenth of the product it feeds."""
    if order.shape[0] == 0:
        return x
    xk = np.empty((x.shape[0], order.shape[0]), np.float32)
    for m in range(x.shape[0]):
        for k in range(order.shape[0]):
            xk[m, k] = x[m, order[k]]
    return xk


@njit(parallel=True, **JIT)
def matmul(x, order, codes, scales, offsets, has_mins, bits, group_len, out, chunks):
    """out (M, rows) = x @ W.T, W the int part's rows dequantized (see the module docstring), its rows cut into
    `chunks` runs of whole row blocks, one per thread of numba's pool.

    x: float32 (M, in_pad), C-contiguous, in the stored column order; order: kernel_order's; codes/scales/offsets:
    the part's arrays (scales float16 as their uint16 bits, or float32; offsets the integer zero points or,
    has_mins, the mins in the scales' form); out: float32 (M, rows), any strides."""
    xk = _gathered(x, order)
    blocks = -(-codes.shape[0] // ROW_BLOCK)
    for c in prange(chunks):
        start = blocks * c // chunks * ROW_BLOCK
        stop = min(codes.shape[0], blocks * (c + 1) // chunks * ROW_BLOCK)
        _matmul_rows(xk, codes, scales, offsets, has_mins, bits, group_len, out, start, stop)


@njit(**JIT)
def dequantize(codes, scales, offsets, has_mins, bits, group_len, start, stop, out):
    """out[: stop - start] = W[start:stop] as float32 (rows, in_pad), columns in input_order's order: what many
    input rows (a prefill) multiply with BLAS.

    NOTE: on this thread, not numba's pool: its OpenMP threads spin for a while after a region, and the BLAS
    product that follows on the same cores ran 1.5-2x slower next to them (a 64-token SmolLM2 prefill: 543 ms
    against 256 ms); dequantizing is a few percent of that product."""
    s_g = np.empty(scales.shape[1], np.float32)
    o_g = np.empty(scales.shape[1], np.float32)
    for r in range(start, stop):
        _dequant_row(codes, scales, offsets, has_mins, bits, group_len, r, s_g, o_g, out, r - start)


@njit(parallel=True, cache=True)
def _start_pool(n):
    total = 0
    for i in prange(n):
        total += i
    return total


def _load_threading_layer() -> None:
    """Make numba pick its threading layer now, without a parallel region.

    NOTE: an OpenMP team belongs to the thread that starts it. A region run here on the main thread would leave
    a second team beside the engine thread's, and libgomp, managing more threads than CPUs, then parks its
    workers between regions: SmolLM2's products ran a batch-8 step in 40-47 ms from the engine thread after one
    region on the main thread, 26-34 ms without. numba's own loader (private) does it without a region; a region
    is the fallback where it is gone."""
    try:
        from numba.np.ufunc.parallel import _launch_threads
    except ImportError:
        _start_pool(1)
    else:
        _launch_threads()


@functools.cache
def threads() -> int:
    """Threads for the kernels' parallel loops: numba's pool (NUMBA_NUM_THREADS, the CPU count by default), or 1
    where numba fell back to its workqueue layer (neither OpenMP nor TBB found): a region costs about 270 us
    there, and two threads must not enter it at once."""
    from numba import get_num_threads, threading_layer

    _load_threading_layer()
    return 1 if threading_layer() == "workqueue" else get_num_threads()
