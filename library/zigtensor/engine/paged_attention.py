"""Attention that reads keys and values through block tables, for one engine step's mixed batch.

A step holds, per sequence, a chunk of new queries: a prefill chunk (many tokens) or a decode (one token). Their
K/V are already written into the paged cache, so the chunk of sequence i sits at positions
context_lens[i] - query_len .. context_lens[i] - 1 and each query attends causally to every cached position up
to its own: the full cached prefix, and the chunk up to itself.

`AttentionMetadata.build` turns the step's block tables and lengths into gather indices and masks once; every
layer then calls `paged_attention(q, k_cache, v_cache, metadata, scale)`. Written with the device's array
module (`xp`: NumPy on CPU), in float32 whatever the cache dtype.

Decodes are batched: sequences whose contexts span the same number of blocks are gathered together, padded to
whole blocks and masked. NOTE: grouping by block count keeps each sequence's arithmetic (the lengths summed
over) the same whether it runs alone or in a batch, so the same request gives the same bits either way.
Prefill chunks run one sequence at a time; their matrix products are large enough that the loop costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class _DecodeGroup:
    tokens: object  # xp int [B]: rows of q
    blocks: object  # xp int [B, num_blocks]: block ids to gather
    positions: np.ndarray  # host [B]: position of each query (context_len - 1)
    masks: dict = field(default_factory=dict)  # sliding window -> xp bool [B, 1, 1, L]


@dataclass
class _Prefill:
    start: int  # first row of q
    length: int  # queries
    context: int  # keys (cached prefix + the chunk)
    blocks: object  # xp int [num_blocks]
    masks: dict = field(default_factory=dict)  # sliding window -> xp bool [T, C]


@dataclass
class AttentionMetadata:
    """Where one step's queries and keys are, prepared once and shared by all layers."""

    num_tokens: int
    block_size: int
    decode_groups: list[_DecodeGroup]
    prefills: list[_Prefill]
    xp: object = np

    @classmethod
    def build(cls, block_tables, context_lens, query_start_loc, block_size: int, xp=np) -> AttentionMetadata:
        """Args:
            block_tables: host ints [num_seqs, max_blocks]; entries past a sequence's blocks are padding.
            context_lens: host ints [num_seqs], cached tokens of each sequence including this step's.
            query_start_loc: host ints [num_seqs + 1], where each sequence's queries start in q.
            block_size: tokens per cache block.
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
        decodes = np.flatnonzero(query_lens == 1)
        groups = []
        for nb in np.unique(blocks_of[decodes]):
            rows = decodes[blocks_of[decodes] == nb]
            groups.append(_DecodeGroup(tokens=xp.asarray(query_start_loc[rows]),
                                       blocks=xp.asarray(block_tables[rows, :int(nb)]),
                                       positions=context_lens[rows] - 1))
        prefills = [_Prefill(start=int(query_start_loc[i]), length=int(query_lens[i]), context=int(context_lens[i]),
                             blocks=xp.asarray(block_tables[i, :int(blocks_of[i])]))
                    for i in np.flatnonzero(query_lens > 1)]
        return cls(int(query_start_loc[-1]), block_size, groups, prefills, xp)

    def decode_mask(self, group: _DecodeGroup, window: int | None):
        """[B, 1, 1, L]: key j is visible to the query at position p if j <= p (and j > p - window)."""
        if window not in group.masks:
            keys = np.arange(group.blocks.shape[1] * self.block_size)[None, :]
            pos = group.positions[:, None]
            visible = keys <= pos if window is None else (keys <= pos) & (keys > pos - window)
            group.masks[window] = self.xp.asarray(visible[:, None, None, :])
        return group.masks[window]

    def prefill_mask(self, chunk: _Prefill, window: int | None):
        """[T, C]: causal within the chunk, everything before it cached and visible (within the window)."""
        if window not in chunk.masks:
            keys = np.arange(chunk.context)[None, :]
            pos = np.arange(chunk.context - chunk.length, chunk.context)[:, None]
            visible = keys <= pos if window is None else (keys <= pos) & (keys > pos - window)
            chunk.masks[window] = self.xp.asarray(visible)
        return chunk.masks[window]


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

    Returns [num_tokens, num_heads, head_dim] float32.
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
    group = num_heads // kv_heads
    q = q.astype(np.float32, copy=False)
    out = xp.empty((num_tokens, num_heads, head_dim), dtype=np.float32)

    for g in metadata.decode_groups:
        B, nb = g.blocks.shape
        L = nb * metadata.block_size
        k = k_cache[g.blocks].reshape(B, L, kv_heads, head_dim).astype(np.float32, copy=False)
        v = v_cache[g.blocks].reshape(B, L, kv_heads, head_dim).astype(np.float32, copy=False)
        qd = q[g.tokens].reshape(B, kv_heads, group, head_dim)  # [B, Hkv, G, D]
        scores = qd @ k.transpose(0, 2, 3, 1)  # [B, Hkv, G, L]
        scores *= scale
        scores = xp.where(metadata.decode_mask(g, sliding_window), scores, np.float32(-np.inf))
        probs = _softmax_last(xp, scores)
        out[g.tokens] = (probs @ v.transpose(0, 2, 1, 3)).reshape(B, num_heads, head_dim)

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
