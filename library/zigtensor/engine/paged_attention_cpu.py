"""The CPU kernel of paged attention for a step's decode tokens (numba): each (token, key-value head) pair reads
its keys and values through the sequence's block table, with no gather, and computes the attention of the query
heads that share that key-value head. engine/paged_attention.py calls it; prefill chunks stay on BLAS there.

>>> decode_attention(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, threads)

Why a kernel: NumPy's path gathered every decode's blocks into a padded copy and ran one tiny matrix product per
(sequence, key-value head) pair, a BLAS call each; a SmolLM2 batch-8 decode step spent 9.8 ms of its 60 ms
there. Here a pair is 3 dot products and 3 weighted sums per key, one pass over the keys for the scores and one
for the values. The pairs run on numba's threads when the model's products do (packed weights: its OpenMP
workers are awake then), else on the calling thread: after a region they spin, and a float32 model's BLAS
threads beside them ran its step 3x slower (the runner decides, AttentionMetadata carries it).

A token's result depends only on its own query and context (its keys in position order, summed in that order),
never on the rest of the batch: the same request gives the same bits alone or batched. Caches of 16-bit floats
come in as their uint16 bits with a 65536-entry table to float32 (numba has no float16 or bfloat16 on the CPU).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from numba import njit, prange

from ..quant.cpu_kernels import HALF_TO_FLOAT, JIT, load

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
def _read_row(cache, table, pos, kh, lut, row):
    """row = kv head kh of position pos of a sequence (block table `table`), as float32."""
    block_size = cache.shape[1]
    blk, off = table[pos // block_size], pos % block_size
    for d in range(row.shape[0]):
        row[d] = load(cache[blk, off, kh, d], lut)


@njit(**JIT)
def _jobs(q, k_cache, v_cache, tokens, tables, context_lens, scale, window, out, lut, start, stop):
    """Pairs start .. stop - 1 (pair = token index * kv_heads + kv head)."""
    heads, dim = q.shape[1], q.shape[2]
    kv_heads = k_cache.shape[2]
    group = heads // kv_heads
    for job in range(start, stop):
        i, kh = job // kv_heads, job % kv_heads
        t, length = tokens[i], context_lens[i]
        first = max(0, length - window) if window > 0 else 0
        keys = length - first
        scores = np.empty((group, keys), np.float32)
        acc = np.zeros((group, dim), np.float32)
        kf = np.empty(dim, np.float32)
        for j in range(keys):
            _read_row(k_cache, tables[i], first + j, kh, lut, kf)
            for g in range(group):
                qv = q[t, kh * group + g]
                s = np.float32(0.0)
                for d in range(dim):
                    s += qv[d] * kf[d]
                scores[g, j] = s * scale
        for g in range(group):
            m = scores[g, 0]
            for j in range(1, keys):
                m = max(m, scores[g, j])
            total = np.float32(0.0)
            for j in range(keys):
                e = np.exp(scores[g, j] - m)
                scores[g, j] = e
                total += e
            inv = np.float32(1.0) / total
            for j in range(keys):
                scores[g, j] *= inv
        for j in range(keys):
            _read_row(v_cache, tables[i], first + j, kh, lut, kf)
            for g in range(group):
                p = scores[g, j]
                for d in range(dim):
                    acc[g, d] += p * kf[d]
        for g in range(group):
            for d in range(dim):
                out[t, kh * group + g, d] = acc[g, d]
