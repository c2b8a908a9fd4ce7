"""Attention that reads keys and values through block tables, for one engine step's mixed batch.

A step holds, per sequence, a chunk of new queries: a prefill chunk (many tokens) or a decode (one token). Their
K/V are already written into the paged cache, so the chunk of sequence i sits at positions
context_lens[i] - query_len .. context_lens[i] - 1 and each query attends causally to every cached position up
to its own: the full cached prefix, and the chunk up to itself.

`AttentionMetadata.build` turns the step's block tables and lengths into what the attention reads once; every
layer then calls `paged_attention(q, k_cache, v_cache, metadata, scale)`. The math is float32 whatever the cache
dtype, and the result float32.

On CUDA (the metadata's `xp` is not NumPy) one launch of our kernel (kernels/paged_attention.cu, launcher
backends/cuda_kernels/paged_attention.py) covers the whole step: it reads K/V through the block tables itself,
so build only uploads the tables and each query token's sequence row and position (int32), shared by all
layers. The rest of this docstring is the CPU path.

On CPU, the step's decode tokens run engine/paged_attention_cpu.py's kernel (numba), which also reads through
the block tables; a token's result there depends on nothing else in the batch, so the same request gives the
same bits alone or batched. Prefill chunks gather their blocks and run NumPy's matrix products, one sequence at
a time (products large enough that the loop costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import paged_attention_cpu


@dataclass
class _Decodes:
    tokens: np.ndarray  # int64 [B]: rows of q
    tables: np.ndarray  # int64 [B, max_blocks]: each token's block table
    context_lens: np.ndarray  # int64 [B]: keys of each (its own included)
    block_range: tuple  # (smallest, largest) block id the tables use, checked against the cache


@dataclass
class _Prefill:
    start: int  # first row of q
    length: int  # queries
    context: int  # keys (cached prefix + the chunk)
    blocks: object  # xp int [num_blocks]
    masks: dict = field(default_factory=dict)  # sliding window -> xp bool [T, C]


@dataclass
class _KernelArgs:
    """The CUDA kernel's view of a step: device int32 arrays, and the largest block id for the cache check."""

    block_tables: object  # [num_seqs, max_blocks]: the used columns of the step's block tables
    token_seqs: object  # [num_tokens]: each query's row of block_tables
    token_positions: object  # [num_tokens]: each query's position (keys 0 .. position are visible)
    max_block_id: int


@dataclass
class AttentionMetadata:
    """Where one step's queries and keys are, prepared once and shared by all layers."""

    num_tokens: int
    block_size: int
    decodes: _Decodes | None  # CPU: the step's one-token queries, for the kernel
    prefills: list[_Prefill]
    xp: object = np
    kernel: _KernelArgs | None = None  # set on CUDA, where the kernel replaces the decodes and chunks
    threads: int = 1  # CPU: numba threads for the decodes

    @classmethod
    def build(cls, block_tables, context_lens, query_start_loc, block_size: int, xp=np,
              threads: int = 1) -> AttentionMetadata:
        """Args:
            block_tables: host ints [num_seqs, max_blocks]; entries past a sequence's blocks are padding.
            context_lens: host ints [num_seqs], cached tokens of each sequence including this step's.
            query_start_loc: host ints [num_seqs + 1], where each sequence's queries start in q.
            block_size: tokens per cache block.
            xp: the device's array module; anything but NumPy means CUDA, where the step's tables are uploaded
                for kernels/paged_attention.cu (and the block ids checked) instead of gathers being planned.
            threads: CPU: the decode tokens' (token, kv head) pairs split over this many of numba's threads (1:
                on the calling thread, numba's pool left asleep).
        """
        block_tables = np.asarray(block_tables)
        context_lens = np.asarray(context_lens, dtype=np.int64)
        query_start_loc = np.asarray(query_start_loc, dtype=np.int64)
        num_seqs = len(context_lens)
        if len(query_start_loc) != num_seqs + 1 or query_start_loc[0] != 0:
            raise ValueError(f"paged_attention: query_start_loc {query_start_loc.tolist()} must start at 0 and have "
                             f"one entry per sequence plus one ({num_seqs} sequences)")
        query_lens = np.diff(query_start_loc)
        if (query_lens < 1).any() or (query_lens > context_lens).any():
            raise ValueError(f"paged_attention: each sequence needs 1 <= query_len <= context_len, got query_lens "
                             f"{query_lens.tolist()} and context_lens {context_lens.tolist()}")
        blocks_of = -(-context_lens // block_size)
        if block_tables.ndim != 2 or block_tables.shape[0] != num_seqs or (blocks_of > block_tables.shape[1]).any():
            raise ValueError(f"paged_attention: block_tables {block_tables.shape} cannot cover context_lens "
                             f"{context_lens.tolist()} with block_size {block_size}")
        if xp is not np:
            return cls(int(query_start_loc[-1]), block_size, None, [], xp,
                       _kernel_args(block_tables, context_lens, query_start_loc, blocks_of, xp))
        rows = np.flatnonzero(query_lens == 1)
        decodes = None
        if len(rows):
            width = max(1, int(blocks_of[rows].max()))
            tables = np.ascontiguousarray(block_tables[rows, :width], dtype=np.int64)
            used = tables[np.arange(width)[None, :] < blocks_of[rows][:, None]]
            decodes = _Decodes(tokens=query_start_loc[rows], context_lens=context_lens[rows], tables=tables,
                               block_range=(int(used.min()), int(used.max())))
        prefills = [_Prefill(start=int(query_start_loc[i]), length=int(query_lens[i]), context=int(context_lens[i]),
                             blocks=xp.asarray(block_tables[i, :int(blocks_of[i])]))
                    for i in np.flatnonzero(query_lens > 1)]
        return cls(int(query_start_loc[-1]), block_size, decodes, prefills, xp, threads=threads)

    def prefill_mask(self, chunk: _Prefill, window: int | None):
        """[T, C]: causal within the chunk, everything before it cached and visible (within the window)."""
        if window not in chunk.masks:
            keys = np.arange(chunk.context)[None, :]
            pos = np.arange(chunk.context - chunk.length, chunk.context)[:, None]
            visible = keys <= pos if window is None else (keys <= pos) & (keys > pos - window)
            chunk.masks[window] = self.xp.asarray(visible)
        return chunk.masks[window]


def _kernel_args(block_tables, context_lens, query_start_loc, blocks_of, xp) -> _KernelArgs:
    """The per-step arrays of the CUDA kernel; the block ids it will follow checked here, on the host."""
    width = int(blocks_of.max(initial=0))
    used = block_tables[:, :width][np.arange(width)[None, :] < blocks_of[:, None]]
    if used.size and (used.min() < 0 or used.max() > np.iinfo(np.int32).max):
        raise ValueError(f"paged_attention: block ids must be in [0, 2**31), got {used.min()} .. {used.max()}")
    query_lens = np.diff(query_start_loc)
    seqs = np.repeat(np.arange(len(query_lens)), query_lens)
    # the chunk of sequence i holds positions context_lens[i] - query_len .. context_lens[i] - 1
    positions = (context_lens - query_lens)[seqs] + np.arange(int(query_start_loc[-1])) - query_start_loc[seqs]
    tables = np.ascontiguousarray(block_tables[:, :max(1, width)], dtype=np.int32)
    return _KernelArgs(block_tables=xp.asarray(tables), token_seqs=xp.asarray(seqs.astype(np.int32)),
                       token_positions=xp.asarray(positions.astype(np.int32)),
                       max_block_id=int(used.max()) if used.size else -1)


def _cuda_storage(x):
    """The CuPy array the launchers take: the storage of the CUDA backend's DeviceArray, a CuPy array as is."""
    from ..backends.cuda_array import DeviceArray

    # NOTE: DeviceArray keeps its CuPy array in `_a` (backends/cuda.py unwraps it the same way for its launchers)
    return x._a if isinstance(x, DeviceArray) else x


def _paged_attention_cuda(q, k_cache, v_cache, metadata: AttentionMetadata, scale: float, sliding_window):
    """One launch of kernels/paged_attention.cu for the step; the result on the device, as q is."""
    from ..backends.cuda_array import DeviceArray
    from ..backends.cuda_kernels.paged_attention import paged_attention_forward

    args = metadata.kernel
    if args.max_block_id >= k_cache.shape[0]:
        raise ValueError(f"paged_attention: the block tables name block {args.max_block_id}, but the cache has "
                         f"{k_cache.shape[0]} blocks")
    out = paged_attention_forward(_cuda_storage(q), _cuda_storage(k_cache), _cuda_storage(v_cache),
                                  _cuda_storage(args.block_tables), _cuda_storage(args.token_seqs),
                                  _cuda_storage(args.token_positions), scale, sliding_window)
    return DeviceArray(out) if isinstance(q, DeviceArray) else out


def _softmax_last(xp, scores):
    scores -= scores.max(axis=-1, keepdims=True)
    xp.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def paged_attention(q, k_cache, v_cache, metadata: AttentionMetadata, scale: float,
                    sliding_window: int | None = None):
    """softmax(q k^T * scale, causal) v over the cached keys/values of each sequence.

    Args:
        q: [num_tokens, num_heads, head_dim], the step's queries, sequence after sequence.
        k_cache, v_cache: [num_blocks, block_size, kv_heads, head_dim], one layer of the paged cache. Query
            head h reads kv head h // (num_heads // kv_heads) (grouped-query attention, as HF's repeat_kv).
        metadata: AttentionMetadata.build(...) of the step.
        scale: the factor on q k^T (usually 1 / sqrt(head_dim)).
        sliding_window: if given, a query at position p sees only keys p - sliding_window + 1 .. p (Mistral).

    Returns [num_tokens, num_heads, head_dim] float32, on q's device (one kernel launch on CUDA).
    """
    xp = metadata.xp
    if q.ndim != 3 or q.shape[0] != metadata.num_tokens:
        raise ValueError(f"paged_attention: q must be [num_tokens={metadata.num_tokens}, num_heads, head_dim], got "
                         f"shape {q.shape}")
    if k_cache.ndim != 4 or k_cache.shape != v_cache.shape or k_cache.shape[1] != metadata.block_size:
        raise ValueError("paged_attention: k_cache and v_cache must both be [num_blocks, block_size="
                         f"{metadata.block_size}, kv_heads, head_dim], got {k_cache.shape} and {v_cache.shape}")
    num_tokens, num_heads, head_dim = q.shape
    kv_heads = k_cache.shape[2]
    if k_cache.shape[3] != head_dim:
        raise ValueError(f"paged_attention: q head_dim {head_dim} != cache head_dim {k_cache.shape[3]}")
    if num_heads % kv_heads:
        raise ValueError(f"paged_attention: {num_heads} query heads are not a multiple of {kv_heads} kv heads")
    if metadata.kernel is not None:
        return _paged_attention_cuda(q, k_cache, v_cache, metadata, scale, sliding_window)
    group = num_heads // kv_heads
    q = q.astype(np.float32, copy=False)
    out = xp.empty((num_tokens, num_heads, head_dim), dtype=np.float32)

    d = metadata.decodes
    if d is not None:
        if d.block_range[0] < 0 or d.block_range[1] >= k_cache.shape[0]:
            raise ValueError(f"paged_attention: the block tables name blocks {d.block_range[0]} .. "
                             f"{d.block_range[1]}, but the cache has {k_cache.shape[0]} blocks")
        k, lut = paged_attention_cpu.cache_view(k_cache)
        v, _ = paged_attention_cpu.cache_view(v_cache)
        # NOTE: contiguous q: numba compiles a strided view's loops without vector instructions (2x slower)
        paged_attention_cpu.decode_attention(np.ascontiguousarray(q), k, v, d.tokens, d.tables, d.context_lens,
                                             np.float32(scale), int(sliding_window or 0), out, lut, metadata.threads)

    for c in metadata.prefills:
        T, C = c.length, c.context
        k = k_cache[c.blocks].reshape(-1, kv_heads, head_dim)[:C].astype(np.float32, copy=False)  # [C, Hkv, D]
        v = v_cache[c.blocks].reshape(-1, kv_heads, head_dim)[:C].astype(np.float32, copy=False)
        qi = q[c.start:c.start + T].reshape(T, kv_heads, group, head_dim).transpose(1, 2, 0, 3)  # [Hkv, G, T, D]
        scores = qi @ k.transpose(1, 2, 0)[:, None]  # [Hkv, G, T, C]
        scores *= scale
        scores = xp.where(metadata.prefill_mask(c, sliding_window), scores, np.float32(-np.inf))
        probs = _softmax_last(xp, scores)
        y = probs @ v.transpose(1, 0, 2)[:, None]  # [Hkv, G, T, D]
        out[c.start:c.start + T] = y.transpose(2, 0, 1, 3).reshape(T, num_heads, head_dim)
    return out
