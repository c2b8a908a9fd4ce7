"""The contract between the engine and a model: one ScheduledBatch in, one row of logits per sequence out.

The scheduler flattens a step into a ScheduledBatch: the new tokens of every scheduled sequence back to back,
their positions, the cache slot each token's K/V goes to, and per sequence its block table and context length
(tokens in the cache once this step's are written). A ModelRunner owns the PagedKVCache, writes the new K/V
through the slot mapping, attends through the block tables (paged_attention) and returns the logits of the
tokens at `logit_indices`, as NumPy float32 [len(logit_indices), vocab]: the last token of each sequence's
chunk, and every token of the chunk for a sequence that asked for its prompt's log-probabilities (sequence i's
rows are logit_starts[i]:logit_starts[i + 1], the last of them the one sampled from).

FakeModelRunner is the model of the engine's tests: its logits are a hash of the sequence's whole history as
read back from the cache through the block table, so any scheduling, allocation or copy bug changes the tokens
(and a position read back out of order raises at once).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..device import device as as_device
from .kv_cache import KVCacheSpec, PagedKVCache


@dataclass
class ScheduledBatch:
    """One engine step's work, flattened (all arrays on the host; runners move them to their device)."""

    seq_ids: list[int]
    token_ids: np.ndarray  # int64 [num_tokens]: each sequence's new tokens, sequence after sequence
    positions: np.ndarray  # int64 [num_tokens]: position of each token in its sequence
    slot_mapping: np.ndarray  # int64 [num_tokens]: cache slot (block * block_size + offset) of each token
    query_start_loc: np.ndarray  # int64 [num_seqs + 1]: where each sequence's tokens start
    context_lens: np.ndarray  # int64 [num_seqs]: tokens cached per sequence after this step's writes
    block_tables: np.ndarray  # int32 [num_seqs, max_blocks]: entries past a sequence's blocks are padding (0)
    block_copies: list[tuple[int, int]] = field(default_factory=list)  # (src, dst) to copy before writing
    # flat token indices whose logits are returned, and where each sequence's rows start among them (default:
    # each sequence's last token, one row each)
    logit_indices: np.ndarray | None = None
    logit_starts: np.ndarray | None = None

    def __post_init__(self):
        if self.logit_indices is None:
            self.logit_indices = self.last_token_indices
            self.logit_starts = np.arange(self.num_seqs + 1, dtype=np.int64)

    @property
    def num_seqs(self) -> int:
        return len(self.seq_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def query_lens(self) -> np.ndarray:
        return np.diff(self.query_start_loc)

    @property
    def last_token_indices(self) -> np.ndarray:
        """Index in the flat token arrays of each sequence's last new token (the one sampled from)."""
        return self.query_start_loc[1:] - 1

    @property
    def sample_rows(self) -> np.ndarray:
        """The row of the returned logits that each sequence samples from (its last)."""
        return self.logit_starts[1:] - 1

    def __repr__(self) -> str:
        return (f"ScheduledBatch(seqs={self.num_seqs}, tokens={self.num_tokens}, "
                f"query_lens={self.query_lens.tolist()}, copies={len(self.block_copies)})")


class ModelRunner:
    """Base of the runners: owns the paged cache; subclasses implement `forward`.

    Subclasses set `kv_cache_spec` (KVCacheSpec), `vocab_size` and `device` before the engine allocates the cache.
    """

    kv_cache_spec: KVCacheSpec
    vocab_size: int
    device = as_device("cpu")
    kv_cache: PagedKVCache | None = None

    def allocate_kv_cache(self, num_blocks: int, block_size: int) -> PagedKVCache:
        self.kv_cache = PagedKVCache(self.kv_cache_spec, num_blocks, block_size, self.device)
        return self.kv_cache

    def execute(self, batch: ScheduledBatch) -> np.ndarray:
        """Run one step: copy-on-write copies, then the model; returns logits float32 [len(logit_indices), vocab]."""
        if self.kv_cache is None:
            raise RuntimeError(f"{type(self).__name__}.execute: allocate_kv_cache must be called first")
        self.kv_cache.copy_blocks(batch.block_copies)
        logits = self.forward(batch)
        rows = len(batch.logit_indices)
        if logits.shape != (rows, self.vocab_size):
            raise RuntimeError(f"{type(self).__name__}.forward returned logits of shape {logits.shape}, expected "
                               f"{(rows, self.vocab_size)}")
        return logits

    def forward(self, batch: ScheduledBatch) -> np.ndarray:
        raise NotImplementedError


class FakeModelRunner(ModelRunner):
    """A deterministic stand-in model whose logits depend on the whole cached history of each sequence.

    Each layer's cache stores K = (token + layer, position) and V = (position, token - layer) per token. A
    forward writes the new tokens, reads every sequence's history back through its block table, checks that the
    positions come back in order in every layer (else raises: the cache was corrupted), and draws the logits
    from a generator seeded by a hash of the history tokens. `logits_for(history)` gives the same logits with no
    cache at all: the reference that engine tests compare with.

    Args:
        vocab_size: size of the logit rows (token ids must stay below it).
        num_layers: cache layers to write and check.
        device: where the cache lives.
        step_delay: seconds each forward sleeps, to stand in for compute in latency tests.
    """

    def __init__(self, vocab_size: int = 64, num_layers: int = 2, device="cpu", step_delay: float = 0.0):
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"FakeModelRunner: vocab_size must be an int >= 2, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.device = as_device(device)
        self.kv_cache_spec = KVCacheSpec(num_layers=num_layers, num_kv_heads=1, head_dim=2)
        self.step_delay = step_delay
        self.num_steps = 0
        self.batch_log: deque[ScheduledBatch] = deque(maxlen=4096)  # the latest batches, for tests to inspect

    def logits_for(self, history) -> np.ndarray:
        """The logits after the token ids `history` (the reference, computed without the cache)."""
        digest = hashlib.blake2b(np.asarray(history, dtype=np.int64).tobytes(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        return (3.0 * rng.standard_normal(self.vocab_size)).astype(np.float32)

    def forward(self, batch: ScheduledBatch) -> np.ndarray:
        self.num_steps += 1
        self.batch_log.append(batch)
        if self.step_delay:
            time.sleep(self.step_delay)
        cache, backend = self.kv_cache, self.device.backend
        if batch.token_ids.size and (batch.token_ids.min() < 0 or batch.token_ids.max() >= self.vocab_size):
            raise ValueError(f"FakeModelRunner: token ids must lie in [0, {self.vocab_size}), got "
                             f"{batch.token_ids.min()}..{batch.token_ids.max()}")
        tokens = batch.token_ids.astype(np.float32)
        positions = batch.positions.astype(np.float32)
        slots = backend.from_numpy(batch.slot_mapping)
        for layer in range(self.kv_cache_spec.num_layers):
            k = np.stack([tokens + layer, positions], axis=-1)[:, None, :]
            v = np.stack([positions, tokens - layer], axis=-1)[:, None, :]
            cache.write(layer, slots, backend.from_numpy(k), backend.from_numpy(v))
        logits = np.empty((len(batch.logit_indices), self.vocab_size), dtype=np.float32)
        bs = cache.block_size
        for i, ctx in enumerate(batch.context_lens.tolist()):
            table = batch.block_tables[i, :-(-ctx // bs)]
            history = None
            for layer in range(self.kv_cache_spec.num_layers):
                k = backend.to_numpy(cache.k[layer][backend.from_numpy(table)]).reshape(-1, 2)[:ctx]
                v = backend.to_numpy(cache.v[layer][backend.from_numpy(table)]).reshape(-1, 2)[:ctx]
                expect = np.arange(ctx, dtype=np.float32)
                if not (np.array_equal(k[:, 1], expect) and np.array_equal(v[:, 0], expect)
                        and np.array_equal(k[:, 0] - layer, v[:, 1] + layer)):
                    raise RuntimeError(f"FakeModelRunner: KV cache of sequence {batch.seq_ids[i]} is corrupted in "
                                       f"layer {layer} (block table {table.tolist()}, context {ctx})")
                layer_history = (k[:, 0] - layer).astype(np.int64)
                if history is not None and not np.array_equal(history, layer_history):
                    raise RuntimeError(f"FakeModelRunner: layers disagree on sequence {batch.seq_ids[i]}'s tokens")
                history = layer_history
            for row in range(batch.logit_starts[i], batch.logit_starts[i + 1]):  # the history up to each row's token
                logits[row] = self.logits_for(history[:batch.positions[batch.logit_indices[row]] + 1])
        return logits

    def __repr__(self) -> str:
        return (f"FakeModelRunner(vocab_size={self.vocab_size}, layers={self.kv_cache_spec.num_layers}, "
                f"device='{self.device}')")
