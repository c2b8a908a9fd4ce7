"""The paged KV cache: fixed-size blocks handed out from one pool, a block table per sequence.

Three parts, from bookkeeping to memory:
- `BlockAllocator` owns block ids: a free pool, reference counts (siblings and prefix hits share blocks) and
  the prefix cache (full blocks found again by their token contents).
- `BlockTables` maps each sequence to its blocks: allocation for the tokens a step will write, copy-on-write of
  a shared partial block, prefix-cache lookups and registration, fork and free. Pure Python, no arrays.
- `PagedKVCache` holds the K and V arrays of every layer, [num_blocks, block_size, kv_heads, head_dim], on the
  model's device, and writes a step's new K/V through a slot mapping (slot = block * block_size + offset).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..device import device as as_device


class NoFreeBlocksError(RuntimeError):
    """The pool has no block left (the scheduler checks capacity first, so this is a bug when it escapes)."""


@dataclass(frozen=True)
class KVCacheSpec:
    """What one token costs in the cache: layers x (K and V) x kv_heads x head_dim values of `dtype`."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: dtypes.DType = dtypes.float32

    def __post_init__(self):
        for name in ("num_layers", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"KVCacheSpec: {name} must be a positive int, got {value!r}")
        object.__setattr__(self, "dtype", dtypes.as_dtype(self.dtype))

    def bytes_per_block(self, block_size: int) -> int:
        return 2 * self.num_layers * block_size * self.num_kv_heads * self.head_dim * self.dtype.itemsize

    def blocks_in_budget(self, memory_budget: int, block_size: int) -> int:
        """How many blocks fit in `memory_budget` bytes (at least one block, else a ValueError)."""
        per_block = self.bytes_per_block(block_size)
        if memory_budget < per_block:
            raise ValueError(f"memory budget {memory_budget} bytes is below one KV block ({per_block} bytes: "
                             f"{self.num_layers} layers x 2 x {block_size} tokens x {self.num_kv_heads} kv heads x "
                             f"{self.head_dim} x {self.dtype.itemsize} bytes)")
        return memory_budget // per_block


def blocks_for_tokens(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


# --------------------------------------------------------------------------------------------- block ids
class BlockAllocator:
    """Block ids 0..num_blocks-1 with reference counts, a free pool and a prefix cache of full blocks.

    A freed block whose contents are registered (a full block of known tokens) is not wiped: it waits in an
    LRU list, still counted as free, so a later prompt with the same prefix finds it; allocation takes plain free
    blocks first and evicts the least recently freed cached block only when none is left.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"BlockAllocator: num_blocks must be a positive int, got {num_blocks!r}")
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"BlockAllocator: block_size must be a positive int, got {block_size!r}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._refs = [0] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))
        self._evictable: OrderedDict[int, None] = OrderedDict()  # ref 0 but contents registered, LRU first
        self._key_of_block: dict[int, tuple] = {}
        self._block_of_key: dict[tuple, int] = {}
        self.prefix_hits = 0  # blocks found in the prefix cache, for stats

    @property
    def num_free(self) -> int:
        return len(self._free) + len(self._evictable)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    def ref_count(self, block: int) -> int:
        return self._refs[block]

    def allocate(self) -> int:
        if self._free:
            block = self._free.popleft()
        elif self._evictable:
            block, _ = self._evictable.popitem(last=False)
            del self._block_of_key[self._key_of_block.pop(block)]
        else:
            raise NoFreeBlocksError(f"no free KV block: all {self.num_blocks} are in use")
        self._refs[block] = 1
        return block

    def share(self, block: int) -> None:
        if self._refs[block] < 1:
            raise RuntimeError(f"cannot share KV block {block}: it is free")
        self._refs[block] += 1

    def free(self, block: int) -> None:
        if self._refs[block] < 1:
            raise RuntimeError(f"KV block {block} freed twice")
        self._refs[block] -= 1
        if self._refs[block] == 0:
            if block in self._key_of_block:
                self._evictable[block] = None
            else:
                self._free.append(block)

    # --- prefix cache ---------------------------------------------------------------------------------
    def lookup(self, key: tuple) -> int | None:
        """The block holding the contents `key`, now referenced once more; None if not cached."""
        block = self._block_of_key.get(key)
        if block is None:
            return None
        if self._refs[block] == 0:
            del self._evictable[block]
        self._refs[block] += 1
        self.prefix_hits += 1
        return block

    def register(self, block: int, key: tuple) -> None:
        """Record that `block` (in use, full) holds the contents `key`; a key cached already keeps its block."""
        if not self.enable_prefix_caching or key in self._block_of_key or block in self._key_of_block:
            return
        self._block_of_key[key] = block
        self._key_of_block[block] = key

    def check_invariants(self) -> None:
        """Every block is exactly one of: in use (ref > 0), plainly free, or cached and evictable."""
        free, evictable = set(self._free), set(self._evictable)
        if len(free) != len(self._free):
            raise AssertionError("a block is twice in the free pool")
        for block, ref in enumerate(self._refs):
            places = (ref > 0) + (block in free) + (block in evictable)
            if ref < 0 or places != 1:
                raise AssertionError(f"KV block {block}: ref {ref}, in free pool {block in free}, "
                                     f"evictable {block in evictable}")
            if block in evictable and block not in self._key_of_block:
                raise AssertionError(f"KV block {block} is evictable but caches nothing")
        for key, block in self._block_of_key.items():
            if self._key_of_block.get(block) != key:
                raise AssertionError(f"prefix cache maps are inconsistent at block {block}")

    def __repr__(self) -> str:
        return (f"BlockAllocator(num_blocks={self.num_blocks}, block_size={self.block_size}, used={self.num_used}, "
                f"cached={len(self._block_of_key)})")


# --------------------------------------------------------------------------------------------- block tables
class BlockTables:
    """The blocks of each sequence (by seq id), allocated as its tokens are scheduled.

    Copy-on-write: siblings forked from one prompt share its blocks; a sequence about to write into a partial
    block that another sequence also holds first moves to a private copy, and the (src, dst) pair is queued in
    `pending_copies` for the model runner to apply before the step's writes.
    """

    def __init__(self, allocator: BlockAllocator):
        self.allocator = allocator
        self.block_size = allocator.block_size
        self._tables: dict[int, list[int]] = {}
        self._keys: dict[int, list[tuple]] = {}  # prefix-cache keys of the sequence's full blocks so far
        self._registered: dict[int, int] = {}  # how many leading blocks of the sequence are registered
        self.pending_copies: list[tuple[int, int]] = []

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._tables

    def table(self, seq_id: int) -> list[int]:
        return self._tables.get(seq_id, [])

    def _needs_copy(self, table: list[int], num_computed: int) -> bool:
        first = num_computed // self.block_size
        return first < len(table) and self.allocator.ref_count(table[first]) > 1

    def blocks_needed(self, seq_id: int, num_computed: int, num_new: int) -> int:
        """Free blocks that writing tokens num_computed..num_computed+num_new-1 takes."""
        table = self.table(seq_id)
        grow = max(0, blocks_for_tokens(num_computed + num_new, self.block_size) - len(table))
        return grow + self._needs_copy(table, num_computed)

    def can_allocate(self, seq_id: int, num_computed: int, num_new: int) -> bool:
        return self.blocks_needed(seq_id, num_computed, num_new) <= self.allocator.num_free

    def allocate(self, seq_id: int, num_computed: int, num_new: int) -> None:
        """Make room to write `num_new` tokens after the first `num_computed` (check can_allocate first)."""
        needed = self.blocks_needed(seq_id, num_computed, num_new)
        if needed > self.allocator.num_free:
            raise NoFreeBlocksError(f"sequence {seq_id} needs {needed} KV blocks, {self.allocator.num_free} free")
        table = self._tables.setdefault(seq_id, [])
        if self._needs_copy(table, num_computed):
            i = num_computed // self.block_size
            src, dst = table[i], self.allocator.allocate()
            self.pending_copies.append((src, dst))
            self.allocator.free(src)  # NOTE: still held by a sibling (ref was > 1), so its data stays for the copy
            table[i] = dst
        while len(table) < blocks_for_tokens(num_computed + num_new, self.block_size):
            table.append(self.allocator.allocate())

    def take_copies(self) -> list[tuple[int, int]]:
        copies, self.pending_copies = self.pending_copies, []
        return copies

    # --- prefix cache ---------------------------------------------------------------------------------
    def _block_keys(self, seq_id: int, token_ids: list[int], num_full: int) -> list[tuple]:
        keys = self._keys.setdefault(seq_id, [])
        bs = self.block_size
        while len(keys) < num_full:
            i = len(keys)
            parent = hash(keys[-1]) if keys else 0
            keys.append((parent, tuple(token_ids[i * bs:(i + 1) * bs])))
        return keys

    def match_prefix(self, seq_id: int, token_ids: list[int]) -> int:
        """Attach the cached blocks that hold a prefix of `token_ids` to a sequence with no blocks yet.

        Returns how many tokens they hold (a multiple of block_size). The last token is never taken from the
        cache: its logits are needed, so it is always computed.
        """
        if not self.allocator.enable_prefix_caching or self.table(seq_id):
            return 0
        num_full = (len(token_ids) - 1) // self.block_size
        table = []
        for key in self._block_keys(seq_id, token_ids, num_full):
            block = self.allocator.lookup(key)
            if block is None:
                break
            table.append(block)
        if table:
            self._tables[seq_id] = table
            self._registered[seq_id] = len(table)
        return len(table) * self.block_size

    def register_computed(self, seq_id: int, token_ids: list[int], num_computed: int) -> None:
        """Put the sequence's blocks that are now full of computed tokens into the prefix cache."""
        if not self.allocator.enable_prefix_caching:
            return
        num_full = num_computed // self.block_size
        done = self._registered.get(seq_id, 0)
        if num_full <= done:
            return
        table = self._tables[seq_id]
        keys = self._block_keys(seq_id, token_ids, num_full)
        for i in range(done, num_full):
            self.allocator.register(table[i], keys[i])
        self._registered[seq_id] = num_full

    # --- lifetime -------------------------------------------------------------------------------------
    def fork(self, parent_id: int, child_id: int) -> None:
        """The child starts with the parent's blocks, shared (copy-on-write on the next partial write)."""
        if child_id in self._tables:
            raise RuntimeError(f"sequence {child_id} already has KV blocks")
        table = list(self.table(parent_id))
        for block in table:
            self.allocator.share(block)
        self._tables[child_id] = table
        self._keys[child_id] = list(self._keys.get(parent_id, []))
        self._registered[child_id] = self._registered.get(parent_id, 0)

    def free(self, seq_id: int) -> None:
        """Give back every block of the sequence (blocks still shared stay with their other holders)."""
        for block in self._tables.pop(seq_id, []):
            self.allocator.free(block)
        self._keys.pop(seq_id, None)
        self._registered.pop(seq_id, None)

    def slots(self, seq_id: int, start: int, stop: int) -> np.ndarray:
        """Cache slots (block * block_size + offset) of token positions start..stop-1."""
        positions = np.arange(start, stop, dtype=np.int64)
        table = np.asarray(self._tables[seq_id], dtype=np.int64)
        return table[positions // self.block_size] * self.block_size + positions % self.block_size

    @property
    def num_sequences(self) -> int:
        return len(self._tables)


# --------------------------------------------------------------------------------------------- device memory
class PagedKVCache:
    """K and V arrays of every layer, [num_blocks, block_size, kv_heads, head_dim], on the model's device."""

    def __init__(self, spec: KVCacheSpec, num_blocks: int, block_size: int, device="cpu"):
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"PagedKVCache: num_blocks must be a positive int, got {num_blocks!r}")
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"PagedKVCache: block_size must be a positive int, got {block_size!r}")
        self.spec = spec
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.device = as_device(device)
        self.xp = self.device.backend.xp
        shape = (num_blocks, block_size, spec.num_kv_heads, spec.head_dim)
        self.k = [self.xp.zeros(shape, dtype=spec.dtype.np) for _ in range(spec.num_layers)]
        self.v = [self.xp.zeros(shape, dtype=spec.dtype.np) for _ in range(spec.num_layers)]

    @property
    def nbytes(self) -> int:
        return self.spec.bytes_per_block(self.block_size) * self.num_blocks

    def write(self, layer: int, slot_mapping, k, v) -> None:
        """Store k, v [num_tokens, kv_heads, head_dim] at the given slots of one layer."""
        kv_shape = (-1, self.spec.num_kv_heads, self.spec.head_dim)
        self.k[layer].reshape(kv_shape)[slot_mapping] = k
        self.v[layer].reshape(kv_shape)[slot_mapping] = v

    def copy_blocks(self, copies: list[tuple[int, int]]) -> None:
        """Copy whole blocks src -> dst in every layer (copy-on-write of shared partial blocks)."""
        if not copies:
            return
        src = self.xp.asarray([s for s, _ in copies])
        dst = self.xp.asarray([d for _, d in copies])
        for layer in range(self.spec.num_layers):
            self.k[layer][dst] = self.k[layer][src]
            self.v[layer][dst] = self.v[layer][src]

    def __repr__(self) -> str:
        s = self.spec
        return (f"PagedKVCache(layers={s.num_layers}, blocks={self.num_blocks}x{self.block_size}, "
                f"kv_heads={s.num_kv_heads}, head_dim={s.head_dim}, dtype={s.dtype.name}, device='{self.device}', "
                f"{self.nbytes / 2**20:.1f} MiB)")
