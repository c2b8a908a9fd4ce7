"""Continuous batching: each step, hand out a token budget so every sequence's cache catches up with its tokens.

There are no prefill and decode phases. A sequence knows its tokens (prompt, then output) and how many are in
the KV cache; a step schedules up to `max_num_batched_tokens` new ones across sequences: running sequences
first, oldest first (a decoding one needs 1 token, one whose prompt is partly computed takes a chunk, leaving
room for the decodes after it), then waiting sequences in arrival order (chunked prefill: a prompt longer than
the remaining budget is computed over several steps).

When a running sequence needs a block and none is free, the newest running sequence is preempted: its blocks
are freed and it waits at the head of the queue to be recomputed (prompt and output so far) later. The oldest
sequence always fits alone, because a request whose prompt plus max_tokens needs more blocks than the pool, or
more tokens than max_model_len, is refused when added, so some sequence always progresses: no deadlock.
Waiting sequences are admitted only when their blocks are free (never by preempting), and not in a step that
preempted. Full blocks of computed tokens go into the prefix cache, so a prompt that starts like an earlier one
(or a preempted sequence coming back) skips the blocks it finds.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .kv_cache import BlockAllocator, BlockTables, blocks_for_tokens
from .model_runner import ScheduledBatch
from .request import Sequence, SequenceStatus


def _positive_int(owner: str, name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


@dataclass
class SchedulerConfig:
    block_size: int = 16  # tokens per KV block
    max_num_seqs: int = 32  # sequences running at once
    max_num_batched_tokens: int = 512  # new tokens per step, decodes and prefill chunks together
    max_model_len: int = 2048  # prompt plus output tokens of one sequence, at most
    enable_prefix_caching: bool = True

    def __post_init__(self):
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            _positive_int("SchedulerConfig", name, getattr(self, name))
        if self.max_num_batched_tokens < self.max_num_seqs:
            # NOTE: otherwise some running sequences could not even decode each step, and the last ones starve
            raise ValueError(f"SchedulerConfig: max_num_batched_tokens ({self.max_num_batched_tokens}) must be at "
                             f"least max_num_seqs ({self.max_num_seqs}), so every running sequence can decode")


@dataclass
class SchedulerOutput:
    scheduled: list[tuple[Sequence, int]] = field(default_factory=list)  # (sequence, new tokens this step)
    batch: ScheduledBatch | None = None  # None when nothing is scheduled
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.scheduled)


def wants_prompt_logprobs(seq: Sequence) -> bool:
    return getattr(seq.request.params, "prompt_logprobs", None) is not None


class Scheduler:
    """Decides each step which sequences run and how many of their tokens, and owns their KV blocks.

    Args:
        config: the SchedulerConfig.
        num_blocks: size of the KV block pool.
    """

    def __init__(self, config: SchedulerConfig, num_blocks: int):
        self.config = config
        self.allocator = BlockAllocator(num_blocks, config.block_size, config.enable_prefix_caching)
        self.blocks = BlockTables(self.allocator)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # sorted by priority: oldest first
        self.num_preemptions = 0

    # --- admission ------------------------------------------------------------------------------------
    def never_fits(self, num_prompt_tokens: int, max_tokens: int) -> str | None:
        """Why a sequence of this size can never run here, or None if it can."""
        total = num_prompt_tokens + max_tokens
        if total > self.config.max_model_len:
            return (f"prompt ({num_prompt_tokens} tokens) plus max_tokens ({max_tokens}) is {total} tokens, over "
                    f"max_model_len {self.config.max_model_len}")
        need = blocks_for_tokens(total, self.config.block_size)
        if need > self.allocator.num_blocks:
            return (f"prompt ({num_prompt_tokens} tokens) plus max_tokens ({max_tokens}) needs {need} KV blocks of "
                    f"{self.config.block_size} tokens, but the whole pool has {self.allocator.num_blocks}")
        return None

    def add(self, seq: Sequence) -> bool:
        """Queue a new sequence; one that can never fit is finished at once (reason "error") and False returned."""
        reason = self.never_fits(seq.num_prompt_tokens, seq.max_tokens)
        if reason is not None:
            self._mark_finished(seq, "error", reason)
            return False
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)
        return True

    # --- the step -------------------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        # NOTE: a prefill chunk leaves one token of budget for each decode behind it, so that a long prompt
        # never stalls the running decodes (budget >= max_num_seqs makes room for all of them)
        decodes_left = sum(s.num_uncomputed_tokens == 1 for s in self.running)
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            if seq.num_uncomputed_tokens == 0:
                raise RuntimeError(f"{seq} is running with no token to compute (a sampled token was not appended)")
            if seq.num_uncomputed_tokens == 1:
                decodes_left -= 1
                num_new = 1
            else:
                num_new = min(seq.num_uncomputed_tokens, budget - decodes_left)
                if num_new < 1:
                    i += 1
                    continue
            while not self.blocks.can_allocate(seq.seq_id, seq.num_computed_tokens, num_new):
                victim = self.running[-1]  # the newest; never one scheduled already (those sit before i)
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is seq:
                    break
            if seq.status is not SequenceStatus.RUNNING:
                break
            self.blocks.allocate(seq.seq_id, seq.num_computed_tokens, num_new)
            out.scheduled.append((seq, num_new))
            budget -= num_new
            i += 1

        seats = sum(s.fork_into for s in self.running)
        while self.waiting and budget > 0 and not out.preempted:
            seq = self.waiting[0]
            if seats + seq.fork_into > self.config.max_num_seqs:
                break
            if seq.seq_id not in self.blocks and not wants_prompt_logprobs(seq):
                # NOTE: a request for prompt log-probabilities computes its whole prompt: cached blocks skip logits
                seq.num_computed_tokens = self.blocks.match_prefix(seq.seq_id, seq.token_ids)
            num_new = min(seq.num_uncomputed_tokens, budget)
            if not self.blocks.can_allocate(seq.seq_id, seq.num_computed_tokens, num_new):
                self.blocks.free(seq.seq_id)  # give back prefix-cache hits; they stay cached
                seq.num_computed_tokens = 0
                break
            self.blocks.allocate(seq.seq_id, seq.num_computed_tokens, num_new)
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self._insert_running(seq)
            seats += seq.fork_into
            out.scheduled.append((seq, num_new))
            budget -= num_new

        if out.scheduled:
            out.batch = self._build_batch(out.scheduled)
        return out

    def update(self, out: SchedulerOutput) -> None:
        """After the model ran: the scheduled tokens are in the cache; full blocks go to the prefix cache."""
        for seq, num_new in out.scheduled:
            if seq.is_finished:
                continue
            seq.num_computed_tokens += num_new
            self.blocks.register_computed(seq.seq_id, seq.token_ids, seq.num_computed_tokens)

    def _build_batch(self, scheduled: list[tuple[Sequence, int]]) -> ScheduledBatch:
        tokens, positions, slots, starts, context_lens, tables = [], [], [], [0], [], []
        logit_indices, logit_starts = [], [0]
        for seq, num_new in scheduled:
            c = seq.num_computed_tokens
            end = starts[-1] + num_new  # the flat index after this sequence's tokens
            # every token of a prompt chunk whose log-probabilities were asked for, else the last one
            first = end - num_new if wants_prompt_logprobs(seq) and c < seq.num_prompt_tokens else end - 1
            logit_indices.extend(range(first, end))
            logit_starts.append(len(logit_indices))
            tokens.extend(seq.token_ids[c:c + num_new])
            positions.append(np.arange(c, c + num_new, dtype=np.int64))
            slots.append(self.blocks.slots(seq.seq_id, c, c + num_new))
            starts.append(starts[-1] + num_new)
            context_lens.append(c + num_new)
            tables.append(self.blocks.table(seq.seq_id))
        block_tables = np.zeros((len(tables), max(len(t) for t in tables)), dtype=np.int32)
        for row, table in zip(block_tables, tables):
            row[:len(table)] = table
        return ScheduledBatch(
            seq_ids=[seq.seq_id for seq, _ in scheduled],
            token_ids=np.asarray(tokens, dtype=np.int64),
            positions=np.concatenate(positions),
            slot_mapping=np.concatenate(slots),
            query_start_loc=np.asarray(starts, dtype=np.int64),
            context_lens=np.asarray(context_lens, dtype=np.int64),
            block_tables=block_tables,
            block_copies=self.blocks.take_copies(),
            logit_indices=np.asarray(logit_indices, dtype=np.int64),
            logit_starts=np.asarray(logit_starts, dtype=np.int64),
        )

    # --- lifetime -------------------------------------------------------------------------------------
    def _insert_running(self, seq: Sequence) -> None:
        bisect.insort(self.running, seq, key=lambda s: s.priority)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free(seq.seq_id)
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def fork(self, parent: Sequence, children: list[Sequence]) -> None:
        """Children of a running sequence share its blocks and run from the next step on."""
        if parent.status is not SequenceStatus.RUNNING:
            raise RuntimeError(f"cannot fork {parent}: it is not running")
        parent.fork_into = 1
        for child in children:
            self.blocks.fork(parent.seq_id, child.seq_id)
            child.num_computed_tokens = parent.num_computed_tokens
            child.status = SequenceStatus.RUNNING
            self._insert_running(child)

    def _mark_finished(self, seq: Sequence, reason: str, message: str) -> None:
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        seq.finish_message = message

    def finish(self, seq: Sequence, reason: str, message: str = "") -> None:
        """End a sequence wherever it is and free its blocks at once."""
        if seq.is_finished:
            return
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq.seq_id)
        self._mark_finished(seq, reason, message)

    # --- state ----------------------------------------------------------------------------------------
    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def __repr__(self) -> str:
        return (f"Scheduler(running={len(self.running)}, waiting={len(self.waiting)}, "
                f"blocks_used={self.allocator.num_used}/{self.allocator.num_blocks})")
