"""The paged KV cache: allocator invariants, block tables (fork, copy-on-write, prefix cache), device arrays,
and paged attention against dense PyTorch attention."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from oracle import oracle

import zigtensor as zt
from zigtensor.engine.kv_cache import (
    BlockAllocator,
    BlockTables,
    KVCacheSpec,
    NoFreeBlocksError,
    PagedKVCache,
    blocks_for_tokens,
)
from zigtensor.engine.paged_attention import AttentionMetadata, paged_attention


# ------------------------------------------------------------------------------------------- allocator
def test_allocator_hands_out_every_block_once_then_refuses():
    a = BlockAllocator(4, block_size=8)
    blocks = [a.allocate() for _ in range(4)]
    assert sorted(blocks) == [0, 1, 2, 3] and a.num_free == 0 and a.num_used == 4
    with pytest.raises(NoFreeBlocksError, match="all 4"):
        a.allocate()
    a.free(blocks[2])
    assert a.num_free == 1 and a.allocate() == blocks[2]
    a.check_invariants()


def test_allocator_reference_counts_and_double_free():
    a = BlockAllocator(2, block_size=4)
    b = a.allocate()
    a.share(b)
    assert a.ref_count(b) == 2
    a.free(b)
    assert a.num_used == 1, "a shared block stays in use until its last holder frees it"
    a.free(b)
    assert a.num_used == 0
    with pytest.raises(RuntimeError, match=f"block {b} freed twice"):
        a.free(b)
    with pytest.raises(RuntimeError, match="free"):
        a.share(b)
    a.check_invariants()


def test_allocator_keeps_freed_cached_blocks_findable_until_evicted():
    a = BlockAllocator(2, block_size=4)
    b0, b1 = a.allocate(), a.allocate()
    a.register(b0, ("k0",))
    a.register(b1, ("k1",))
    a.free(b0)
    a.free(b1)
    assert a.num_free == 2 and a.num_used == 0
    assert a.lookup(("k1",)) == b1 and a.ref_count(b1) == 1, "a hit takes the block back out of the free pool"
    assert a.lookup(("missing",)) is None
    # the only free block is the cached b0: allocating evicts it and forgets its contents
    assert a.allocate() == b0
    assert a.lookup(("k0",)) is None
    a.check_invariants()


def test_allocator_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_blocks must be a positive int, got 0"):
        BlockAllocator(0, 16)
    with pytest.raises(ValueError, match="block_size must be a positive int, got -1"):
        BlockAllocator(4, -1)


# ------------------------------------------------------------------------------------------- block tables
def _refs_from_tables(tables: BlockTables, seq_ids) -> dict:
    refs = {}
    for s in seq_ids:
        for b in tables.table(s):
            refs[b] = refs.get(b, 0) + 1
    return refs


def test_block_tables_grow_with_tokens_and_map_slots():
    t = BlockTables(BlockAllocator(8, block_size=4))
    t.allocate(seq_id=1, num_computed=0, num_new=6)
    assert len(t.table(1)) == 2
    t.allocate(1, 6, 2)  # fills the second block exactly
    assert len(t.table(1)) == 2
    t.allocate(1, 8, 1)
    assert len(t.table(1)) == 3
    table = t.table(1)
    np.testing.assert_array_equal(t.slots(1, 3, 9), [table[0] * 4 + 3] + [table[1] * 4 + i for i in range(4)]
                                  + [table[2] * 4])
    assert t.blocks_needed(1, 9, 100) == blocks_for_tokens(109, 4) - 3
    with pytest.raises(NoFreeBlocksError, match="sequence 1 needs"):
        t.allocate(1, 9, 100)
    t.free(1)
    assert t.allocator.num_used == 0


def test_fork_shares_blocks_and_copies_the_partial_block_on_write():
    t = BlockTables(BlockAllocator(8, block_size=4))
    t.allocate(1, 0, 6)  # blocks: one full, one with 2 of 4 slots
    t.fork(1, 2)
    assert t.table(2) == t.table(1) and all(t.allocator.ref_count(b) == 2 for b in t.table(1))
    shared_partial = t.table(1)[1]
    assert t.blocks_needed(2, 6, 1) == 1, "writing into the shared partial block needs a private copy"
    t.allocate(2, 6, 1)
    assert t.table(2)[0] == t.table(1)[0] and t.table(2)[1] != shared_partial
    assert t.take_copies() == [(shared_partial, t.table(2)[1])] and t.take_copies() == []
    assert t.allocator.ref_count(shared_partial) == 1
    t.allocate(1, 6, 1)  # the parent now holds the partial block alone: it writes in place
    assert t.table(1)[1] == shared_partial and t.take_copies() == []
    t.free(1)
    t.free(2)
    assert t.allocator.num_used == 0
    t.allocator.check_invariants()


def test_prefix_cache_finds_full_blocks_and_never_the_last_token():
    t = BlockTables(BlockAllocator(16, block_size=4))
    prompt = list(range(10, 22))  # 12 tokens: 3 full blocks
    t.allocate(1, 0, len(prompt))
    t.register_computed(1, prompt, len(prompt))
    # the same prompt again: the last token must be computed, so only the first 2 blocks are reused
    assert t.match_prefix(2, prompt) == 8
    assert t.table(2) == t.table(1)[:2]
    # a prompt that diverges inside the second block reuses only the first
    assert t.match_prefix(3, prompt[:5] + [0, 0, 0, 0]) == 4
    # after everyone frees, cached blocks count as free but are still found
    for s in (1, 2, 3):
        t.free(s)
    assert t.allocator.num_used == 0
    assert t.match_prefix(4, prompt + [99]) == 12
    t.free(4)
    t.allocator.check_invariants()


def test_prefix_cache_can_be_disabled():
    t = BlockTables(BlockAllocator(8, block_size=4, enable_prefix_caching=False))
    prompt = list(range(9))
    t.allocate(1, 0, 9)
    t.register_computed(1, prompt, 9)
    assert t.match_prefix(2, prompt) == 0 and t.table(2) == []


def test_random_block_table_operations_keep_the_invariants():
    rng = np.random.default_rng(0)
    t = BlockTables(BlockAllocator(24, block_size=4))
    lengths: dict[int, int] = {}
    tokens: dict[int, list[int]] = {}
    next_id = 0
    for _ in range(600):
        op = rng.integers(4)
        if op == 0 or not lengths:  # a new sequence, maybe with a prefix hit
            prompt = [int(x) for x in rng.integers(0, 3, size=rng.integers(1, 14))]
            cached = t.match_prefix(next_id, prompt)
            if t.can_allocate(next_id, cached, len(prompt) - cached):
                t.allocate(next_id, cached, len(prompt) - cached)
                t.register_computed(next_id, prompt, len(prompt))
                lengths[next_id], tokens[next_id] = len(prompt), prompt
            else:
                t.free(next_id)
            next_id += 1
        elif op == 1:  # grow
            s = int(rng.choice(list(lengths)))
            if t.can_allocate(s, lengths[s], 1):
                t.allocate(s, lengths[s], 1)
                tokens[s] = tokens[s] + [int(rng.integers(0, 3))]
                lengths[s] += 1
                t.register_computed(s, tokens[s], lengths[s])
        elif op == 2:  # fork
            s = int(rng.choice(list(lengths)))
            t.fork(s, next_id)
            lengths[next_id], tokens[next_id] = lengths[s], list(tokens[s])
            next_id += 1
        else:  # free
            s = int(rng.choice(list(lengths)))
            t.free(s)
            del lengths[s], tokens[s]
        t.take_copies()
        t.allocator.check_invariants()
        refs = _refs_from_tables(t, lengths)
        for b in range(24):
            assert t.allocator.ref_count(b) == refs.get(b, 0), f"block {b}: allocator and tables disagree"
        for s, n in lengths.items():
            assert len(t.table(s)) == blocks_for_tokens(n, 4)
    for s in list(lengths):
        t.free(s)
    assert t.allocator.num_used == 0


# ------------------------------------------------------------------------------------------- device arrays
def test_kv_cache_spec_sizes_the_pool_from_a_budget():
    spec = KVCacheSpec(num_layers=2, num_kv_heads=3, head_dim=4, dtype=zt.float16)
    assert spec.bytes_per_block(8) == 2 * 2 * 8 * 3 * 4 * 2
    assert spec.blocks_in_budget(10 * spec.bytes_per_block(8) + 5, 8) == 10
    with pytest.raises(ValueError, match="below one KV block"):
        spec.blocks_in_budget(100, 8)
    with pytest.raises(ValueError, match="head_dim must be a positive int, got 0"):
        KVCacheSpec(num_layers=1, num_kv_heads=1, head_dim=0)


def test_paged_cache_writes_through_slots_and_copies_blocks():
    spec = KVCacheSpec(num_layers=2, num_kv_heads=2, head_dim=3)
    cache = PagedKVCache(spec, num_blocks=4, block_size=2)
    assert cache.k[0].shape == (4, 2, 2, 3) and cache.nbytes == 4 * spec.bytes_per_block(2)
    k = np.arange(18, dtype=np.float32).reshape(3, 2, 3)
    cache.write(1, np.array([5, 0, 2]), k, -k)
    np.testing.assert_array_equal(cache.k[1][2, 1], k[0])  # slot 5 = block 2, offset 1
    np.testing.assert_array_equal(cache.v[1][0, 0], -k[1])
    np.testing.assert_array_equal(cache.k[1][1, 0], k[2])
    assert not cache.k[0].any(), "another layer is untouched"
    cache.copy_blocks([(2, 3), (0, 2)])  # sources are read before any destination is written
    np.testing.assert_array_equal(cache.k[1][3, 1], k[0])
    np.testing.assert_array_equal(cache.v[1][2, 0], -k[1])


# ------------------------------------------------------------------------------------------- paged attention
def _dense_reference(torch, q, k, v, scale, window=None):
    """torch SDPA of queries at the last len(q) positions over all of k/v (causal), GQA by head groups."""
    T, H, _ = q.shape
    C, Hkv, _ = k.shape
    qt = torch.tensor(q, dtype=torch.float64).permute(1, 0, 2)
    kt = torch.tensor(k, dtype=torch.float64).permute(1, 0, 2).repeat_interleave(H // Hkv, dim=0)
    vt = torch.tensor(v, dtype=torch.float64).permute(1, 0, 2).repeat_interleave(H // Hkv, dim=0)
    mask = torch.arange(C)[None, :] <= torch.arange(C - T, C)[:, None]
    if window is not None:
        mask &= torch.arange(C)[None, :] > torch.arange(C - T, C)[:, None] - window
    out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)
    return out.permute(1, 0, 2).numpy()


@pytest.mark.parametrize("num_heads,kv_heads,dtype,window", [
    (4, 4, np.float32, None), (6, 2, np.float32, None), (8, 1, np.float32, None), (4, 2, np.float16, None),
    (4, 2, ml_dtypes.bfloat16, None), (6, 2, np.float64, None), (6, 2, np.float32, 5),
])
def test_paged_attention_matches_dense_attention(num_heads, kv_heads, dtype, window):
    torch = oracle("torch")
    rng = np.random.default_rng(num_heads * 10 + kv_heads)
    head_dim, block_size, num_blocks = 8, 4, 64
    # (context length, new queries): decodes of several lengths (some the same block count), prefill chunks
    # with and without a cached prefix, a chunk that is the whole context
    shapes = [(1, 1), (7, 1), (8, 1), (9, 1), (30, 1), (6, 6), (13, 5), (21, 17), (5, 1), (16, 1)]
    k_cache = rng.standard_normal((num_blocks, block_size, kv_heads, head_dim)).astype(dtype)
    v_cache = rng.standard_normal((num_blocks, block_size, kv_heads, head_dim)).astype(dtype)
    free = list(rng.permutation(num_blocks))  # scattered, out-of-order blocks
    tables, qs, refs = [], [], []
    scale = 0.7 / np.sqrt(head_dim)
    for C, T in shapes:
        table = [int(free.pop()) for _ in range(blocks_for_tokens(C, block_size))]
        tables.append(table)
        k = k_cache[table].reshape(-1, kv_heads, head_dim)[:C].astype(np.float32)
        v = v_cache[table].reshape(-1, kv_heads, head_dim)[:C].astype(np.float32)
        q = rng.standard_normal((T, num_heads, head_dim)).astype(np.float32)
        qs.append(q)
        refs.append(_dense_reference(torch, q, k, v, scale, window))
    block_tables = np.zeros((len(shapes), max(map(len, tables)) + 2), dtype=np.int32)  # extra padding columns
    for row, table in zip(block_tables, tables):
        row[:len(table)] = table
    starts = np.concatenate([[0], np.cumsum([T for _, T in shapes])])
    meta = AttentionMetadata.build(block_tables, [C for C, _ in shapes], starts, block_size)
    out = paged_attention(np.concatenate(qs), k_cache, v_cache, meta, scale, sliding_window=window)
    assert out.shape == (starts[-1], num_heads, head_dim) and out.dtype == np.float32
    for i, ref in enumerate(refs):
        np.testing.assert_allclose(out[starts[i]:starts[i + 1]], ref, atol=2e-5, rtol=1e-4,
                                   err_msg=f"sequence {i} (context, queries) = {shapes[i]}")


def test_paged_attention_gives_the_same_bits_alone_and_batched():
    rng = np.random.default_rng(3)
    k_cache = rng.standard_normal((32, 4, 2, 8)).astype(np.float32)
    v_cache = rng.standard_normal((32, 4, 2, 8)).astype(np.float32)
    contexts = [13, 14, 16, 3, 27]
    tables = np.arange(32, dtype=np.int32).reshape(4, 8)[[0, 1, 2, 3, 0]]
    tables[3, :1] = [30]
    q = rng.standard_normal((5, 4, 8)).astype(np.float32)
    batched = paged_attention(q, k_cache, v_cache, AttentionMetadata.build(tables, contexts, np.arange(6), 4), 0.3)
    on_threads = paged_attention(q, k_cache, v_cache,
                                 AttentionMetadata.build(tables, contexts, np.arange(6), 4, threads=3), 0.3)
    np.testing.assert_array_equal(on_threads, batched)   # the pairs split over numba's threads: the same bits
    for i, c in enumerate(contexts):
        alone = paged_attention(q[i:i + 1], k_cache, v_cache, AttentionMetadata.build(tables[i:i + 1], [c], [0, 1], 4),
                                0.3)
        np.testing.assert_array_equal(alone[0], batched[i])


def test_paged_attention_rejects_inconsistent_metadata():
    k = np.zeros((4, 2, 1, 4), dtype=np.float32)
    tables = np.zeros((2, 2), dtype=np.int32)
    with pytest.raises(ValueError, match="query_start_loc"):
        AttentionMetadata.build(tables, [2, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="1 <= query_len <= context_len"):
        AttentionMetadata.build(tables, [1, 2], [0, 2, 3], 2)
    with pytest.raises(ValueError, match="cannot cover context_lens"):
        AttentionMetadata.build(tables, [5, 2], [0, 2, 3], 2)
    meta = AttentionMetadata.build(tables, [2, 2], [0, 2, 3], 2)
    with pytest.raises(ValueError, match="q must be"):
        paged_attention(np.zeros((4, 2, 4), np.float32), k, k, meta, 1.0)
    with pytest.raises(ValueError, match="block_size=2"):
        paged_attention(np.zeros((3, 2, 4), np.float32), k[:, :1], k[:, :1], meta, 1.0)
    with pytest.raises(ValueError, match="3 query heads are not a multiple of 2"):
        paged_attention(np.zeros((3, 3, 4), np.float32), np.zeros((4, 2, 2, 4), np.float32),
                        np.zeros((4, 2, 2, 4), np.float32), meta, 1.0)
