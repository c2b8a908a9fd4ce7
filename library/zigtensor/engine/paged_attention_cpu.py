"""The CPU kernel of paged attention for a step's decode tokens (numba): each (token, key-value head) pair reads
its keys and values through the sequence's block table, with no gather, and computes the attention of the query
heads that share that key-value head. engine/paged_attention.py calls it; prefill chunks stay on BLAS there.

>>> decode_attention(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, threads)

Why a kernel: NumPy's path gathered every decode's blocks into a padded copy and ran one tiny matrix product per
(sequence, key-value head) pair, a BLAS call each; a SmolLM2 batch-8 decode step spent 9.8 ms of its 60 ms
there. Here a pair is 3 dot products and 3 weighted sums per key, one pass over the keys for the scores and one
for the values, four keys at a time, with an exp of our own that vectorizes (numba's calls libm's scalar expf).
The pairs run on numba's threads when the model's products do (packed weights: its OpenMP workers are awake
then), else on the calling thread: after a region they spin, and a float32 model's BLAS threads beside them ran
its step 3x slower (the runner decides, AttentionMetadata carries it).

A token's result depends only on its own query and context (its keys in position order, summed in that order),
never on the rest of the batch: the same request gives the same bits alone or batched. Caches of 16-bit floats
come in as their uint16 bits with a 65536-entry table to float32 (numba has no float16 or bfloat16 on the CPU).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from numba import njit, prange

from ..backends.numba_kernels import HALF_TO_FLOAT, JIT, exp_, load

# uint16 bits -> float32 of each 16-bit cache dtype; float32/float64 caches take a one-entry table (unused)
LUTS = {np.dtype(np.float16): HALF_TO_FLOAT,
        np.dtype(ml_dtypes.bfloat16): np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        .view(ml_dtypes.bfloat16).astype(np.float32)}
_NO_LUT = np.zeros(1, np.float32)


def cache_view(cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(what the kernel reads, its table): 16-bit caches as their uint16 bits."""
    lut = LUTS.get(cache.dtype)
    if lut is not None:
        return cache.view(np.uint16), lut
    if cache.dtype not in (np.float32, np.float64):
        raise TypeError(f"paged attention: cache dtype {cache.dtype}; expected float32, float64, float16 or bfloat16")
    return cache, _NO_LUT


def decode_attention(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, threads=1):
    """out[t] = softmax(q[t] k^T * scale) v for each decode token t = tokens[i], keys 0 .. context_lens[i] - 1 of
    sequence i's blocks (tables[i]), the last `window` of them when window > 0; the (token, kv head) pairs split
    over `threads` of numba's threads (1: this thread, numba's pool untouched).

    q, out: float32 [num_tokens, heads, head_dim] (q contiguous); k_cache, v_cache: [blocks, block_size,
    kv_heads, head_dim] (float32, float64 or 16-bit bits with their lut); tokens, context_lens: ints [n];
    tables: ints [n, max_blocks].
    """
    args = (q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut)
    if threads > 1:
        _in_parallel(*args, threads)
    else:
        _jobs(*args, 0, len(tokens) * k_cache.shape[2])


@njit(parallel=True, **JIT)
def _in_parallel(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, chunks):
    jobs = len(tokens) * k_cache.shape[2]
    for c in prange(chunks):
        _jobs(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, jobs * c // chunks,
              jobs * (c + 1) // chunks)


@njit(inline="always", **JIT)
def _slot(tables, i, first, j, keys, block_size):
    """(block, offset in it) of key j of sequence i (its keys first .. first + keys - 1); past the last key, the
    last one."""
    pos = first + min(j, keys - 1)
    return tables[i, pos // block_size], pos % block_size


@njit(inline="always", **JIT)
def _quad(tables, i, first, j0, keys, block_size):
    """(block, offset) of keys j0 .. j0 + 3, flattened; a quad past the last key repeats it, so it is always four."""
    b0, o0 = _slot(tables, i, first, j0, keys, block_size)
    b1, o1 = _slot(tables, i, first, j0 + 1, keys, block_size)
    b2, o2 = _slot(tables, i, first, j0 + 2, keys, block_size)
    b3, o3 = _slot(tables, i, first, j0 + 3, keys, block_size)
    return b0, o0, b1, o1, b2, o2, b3, o3


@njit(**JIT)
def _jobs(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, start, stop):
    """Pairs start .. stop - 1 (pair = token index * kv_heads + kv head).

    Keys and values go four at a time (a quad): each query head's four dot products run side by side in one
    loop over head_dim, and each output row takes four weighted value rows a pass. One dot product a key spent
    most of its time in the latency of its one sum and in the horizontal add at its end (measured 2x slower).
    Rows are reached by indexing the 4-D cache, never as views (numba counts references on each view)."""
    heads, dim = q.shape[1], q.shape[2]
    block_size, kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = heads // kv_heads
    most = 0
    for job in range(start, stop):
        most = max(most, context_lens[job // kv_heads])
    scores = np.empty((group, (most + 3) // 4 * 4), np.float32)
    bits = np.empty(most, np.int32)
    for job in range(start, stop):
        i, kh = job // kv_heads, job % kv_heads
        t, length = tokens[i], context_lens[i]
        first = max(0, length - window) if window > 0 else 0
        keys = length - first
        for j0 in range(0, keys, 4):
            b0, o0, b1, o1, b2, o2, b3, o3 = _quad(tables, i, first, j0, keys, block_size)
            for g in range(group):
                h = kh * group + g
                s0 = s1 = s2 = s3 = np.float32(0.0)
                for d in range(dim):
                    x = q[t, h, d]
                    s0 += x * load(k_cache[b0, o0, kh, d], lut)
                    s1 += x * load(k_cache[b1, o1, kh, d], lut)
                    s2 += x * load(k_cache[b2, o2, kh, d], lut)
                    s3 += x * load(k_cache[b3, o3, kh, d], lut)
                scores[g, j0], scores[g, j0 + 1] = s0 * scale, s1 * scale
                scores[g, j0 + 2], scores[g, j0 + 3] = s2 * scale, s3 * scale
        for g in range(group):
            sg = scores[g, :keys]
            m = sg[0]
            for j in range(1, keys):
                m = max(m, sg[j])
            for j in range(keys):
                sg[j] -= m
            exp_(sg, bits[:keys])
            total = np.float32(0.0)
            for j in range(keys):
                total += sg[j]
            inv = np.float32(1.0) / total
            for j in range(keys):
                sg[j] *= inv
            for j in range(keys, (keys + 3) // 4 * 4):
                scores[g, j] = 0   # the repeated keys of the last quad weigh nothing
            for d in range(dim):
                out[t, kh * group + g, d] = 0
        for j0 in range(0, keys, 4):
            b0, o0, b1, o1, b2, o2, b3, o3 = _quad(tables, i, first, j0, keys, block_size)
            for g in range(group):
                h = kh * group + g
                p0, p1, p2, p3 = scores[g, j0], scores[g, j0 + 1], scores[g, j0 + 2], scores[g, j0 + 3]
                for d in range(dim):
                    out[t, h, d] += (p0 * load(v_cache[b0, o0, kh, d], lut) + p1 * load(v_cache[b1, o1, kh, d], lut)
                                     + p2 * load(v_cache[b2, o2, kh, d], lut) + p3 * load(v_cache[b3, o3, kh, d], lut))
