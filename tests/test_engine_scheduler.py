"""The continuous-batching scheduler with the fake model and no engine: budgets, chunked prefill, preemption,
never-fitting requests, freeing, prefix caching and forks. Greedy tokens are checked against the fake model's
cache-free reference (`FakeModelRunner.logits_for`), so any cache or scheduling bug shows up as a wrong token."""

from __future__ import annotations

import numpy as np
import pytest

from zigtensor.engine.kv_cache import blocks_for_tokens
from zigtensor.engine.model_runner import FakeModelRunner
from zigtensor.engine.request import Request, Sequence, SequenceStatus
from zigtensor.engine.scheduler import Scheduler, SchedulerConfig

VOCAB = 50


class Params:  # the scheduler reads nothing from sampling parameters
    n = 1


def make_seq(seq_id: int, prompt: list[int], max_tokens: int, order: int | None = None) -> Sequence:
    request = Request(f"r{seq_id}", list(prompt), Params())
    return Sequence(seq_id, request, 0, list(prompt), (seq_id if order is None else order, 0), max_tokens)


def reference(runner: FakeModelRunner, prompt: list[int], max_tokens: int) -> list[int]:
    tokens = list(prompt)
    for _ in range(max_tokens):
        tokens.append(int(np.argmax(runner.logits_for(tokens))))
    return tokens[len(prompt):]


def setup(num_blocks: int, **config) -> tuple[Scheduler, FakeModelRunner]:
    cfg = SchedulerConfig(**{"block_size": 4, "max_num_seqs": 8, "max_num_batched_tokens": 16, "max_model_len": 128,
                             **config})
    runner = FakeModelRunner(vocab_size=VOCAB)
    runner.allocate_kv_cache(num_blocks, cfg.block_size)
    return Scheduler(cfg, num_blocks), runner


def step(scheduler: Scheduler, runner: FakeModelRunner):
    """One engine step with greedy sampling; returns the SchedulerOutput."""
    out = scheduler.schedule()
    if out.batch is None:
        return out
    logits = runner.execute(out.batch)
    scheduler.update(out)
    for row, (seq, _) in enumerate(out.scheduled):
        if seq.num_uncomputed_tokens == 0:
            seq.token_ids.append(int(np.argmax(logits[row])))
            if seq.num_output_tokens >= seq.max_tokens:
                scheduler.finish(seq, "length")
    scheduler.allocator.check_invariants()
    return out


def run_all(scheduler, runner, max_steps=10_000) -> list:
    outs = []
    while scheduler.has_unfinished():
        outs.append(step(scheduler, runner))
        assert len(outs) < max_steps, "the scheduler made no progress (deadlock or livelock)"
    return outs


def prompts(rng, count, low=1, high=30):
    return [[int(t) for t in rng.integers(0, VOCAB, size=rng.integers(low, high))] for _ in range(count)]


def test_greedy_tokens_match_the_cache_free_reference():
    scheduler, runner = setup(64)
    rng = np.random.default_rng(0)
    seqs = [make_seq(i, p, 7) for i, p in enumerate(prompts(rng, 6))]
    for s in seqs:
        assert scheduler.add(s)
    run_all(scheduler, runner)
    for s in seqs:
        assert s.output_token_ids == reference(runner, s.token_ids[:s.num_prompt_tokens], 7)
    assert scheduler.allocator.num_used == 0


def test_token_budget_is_respected_and_running_decodes_are_never_left_out():
    scheduler, runner = setup(64, max_num_batched_tokens=10, max_num_seqs=4)
    rng = np.random.default_rng(1)
    seqs = [make_seq(i, p, 5) for i, p in enumerate(prompts(rng, 6, 8, 30))]
    for s in seqs:
        scheduler.add(s)
    steps = 0
    while scheduler.has_unfinished():
        decoding = [s for s in scheduler.running if s.num_uncomputed_tokens == 1]
        out = step(scheduler, runner)
        steps += 1
        assert out.num_tokens <= 10 and len(out.scheduled) <= 4
        scheduled = [s for s, _ in out.scheduled]
        assert all(s in scheduled for s in decoding), "a running decode was skipped for a prefill chunk"
    assert steps > 10
    for s in seqs:
        assert s.output_token_ids == reference(runner, s.token_ids[:s.num_prompt_tokens], 5)


def test_a_long_prefill_chunk_leaves_room_for_the_decodes_behind_it():
    scheduler, runner = setup(64, max_num_batched_tokens=8, max_num_seqs=4)
    short = make_seq(1, [1, 2], 8, order=1)
    scheduler.add(short)
    step(scheduler, runner)
    step(scheduler, runner)
    # an older sequence (as one coming back from preemption) runs ahead of short in priority order
    long = make_seq(0, list(range(1, 20)), 2, order=0)
    scheduler.add(long)
    outs = run_all(scheduler, runner)
    assert [(s.seq_id, n) for s, n in outs[0].scheduled] == [(1, 1), (0, 7)]
    assert [(s.seq_id, n) for s, n in outs[1].scheduled] == [(0, 7), (1, 1)]
    assert [(s.seq_id, n) for s, n in outs[2].scheduled] == [(0, 5), (1, 1)]
    assert long.output_token_ids == reference(runner, list(range(1, 20)), 2)
    assert short.output_token_ids == reference(runner, [1, 2], 8)


def test_long_prompt_is_prefilled_in_chunks():
    scheduler, runner = setup(64, max_num_batched_tokens=8, max_num_seqs=2)
    prompt = list(range(1, 30))  # 29 tokens: chunks of 8, 8, 8, 5
    seq = make_seq(0, prompt, 3)
    scheduler.add(seq)
    outs = run_all(scheduler, runner)
    assert [o.scheduled[0][1] for o in outs] == [8, 8, 8, 5, 1, 1]
    assert [o.batch.context_lens.tolist() for o in outs] == [[8], [16], [24], [29], [30], [31]]
    assert seq.output_token_ids == reference(runner, prompt, 3)


def test_decodes_share_the_budget_with_a_chunked_prefill():
    scheduler, runner = setup(64, max_num_batched_tokens=8, max_num_seqs=4)
    short = make_seq(0, [1, 2], 6)
    long = make_seq(1, list(range(3, 23)), 2)
    scheduler.add(short)
    scheduler.add(long)
    outs = run_all(scheduler, runner)
    # step 1: short's prompt (2) + 6 of long's; then short decodes 1 and long takes the other 7 of the budget
    assert [(s.seq_id, n) for s, n in outs[0].scheduled] == [(0, 2), (1, 6)]
    assert [(s.seq_id, n) for s, n in outs[1].scheduled] == [(0, 1), (1, 7)]
    assert short.output_token_ids == reference(runner, [1, 2], 6)
    assert long.output_token_ids == reference(runner, list(range(3, 23)), 2)


def test_newest_running_sequence_is_preempted_and_recomputed_with_the_same_tokens():
    # 3 sequences of 6 prompt + 10 output tokens need 4 blocks each; the pool has 9
    scheduler, runner = setup(9, enable_prefix_caching=False)
    rng = np.random.default_rng(2)
    seqs = [make_seq(i, p, 10) for i, p in enumerate(prompts(rng, 3, 6, 7))]
    for s in seqs:
        scheduler.add(s)
    outs = run_all(scheduler, runner)
    preempted = [s for o in outs for s in o.preempted]
    assert preempted, "the pool is too small for all three: someone must be preempted"
    for o in outs:
        for victim in o.preempted:
            others = [s for s, _ in o.scheduled]
            assert all(victim.priority > s.priority for s in others), "only the newest is preempted"
    assert seqs[0].num_preemptions == 0, "the oldest sequence always keeps its blocks"
    for s in seqs:
        assert s.output_token_ids == reference(runner, s.token_ids[:s.num_prompt_tokens], 10)
    assert scheduler.allocator.num_used == 0


def test_random_workloads_on_a_tiny_pool_never_deadlock():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        max_tokens = 12
        longest = 20 + max_tokens
        scheduler, runner = setup(blocks_for_tokens(longest, 4) + 1, max_num_batched_tokens=int(rng.integers(8, 24)))
        seqs = [make_seq(i, p, int(rng.integers(1, max_tokens + 1))) for i, p in enumerate(prompts(rng, 10, 1, 20))]
        pending = list(seqs)
        steps = 0
        while pending or scheduler.has_unfinished():
            if pending and rng.random() < 0.5:  # requests keep arriving while others run
                scheduler.add(pending.pop(0))
            step(scheduler, runner)
            steps += 1
            assert steps < 2000
        for s in seqs:
            assert s.output_token_ids == reference(runner, s.token_ids[:s.num_prompt_tokens], s.max_tokens)
        assert scheduler.allocator.num_used == 0


def test_requests_that_can_never_fit_finish_with_a_reason():
    scheduler, _ = setup(5, max_model_len=32)
    too_long = make_seq(0, [1] * 20, 13)
    assert not scheduler.add(too_long)
    assert too_long.is_finished and too_long.finish_reason == "error"
    assert "33 tokens, over max_model_len 32" in too_long.finish_message
    too_big = make_seq(1, [1] * 10, 11)  # 21 tokens = 6 blocks of 4; the pool has 5
    assert not scheduler.add(too_big)
    assert "needs 6 KV blocks of 4 tokens, but the whole pool has 5" in too_big.finish_message
    fits = make_seq(2, [1] * 10, 10)
    assert scheduler.add(fits) and list(scheduler.waiting) == [fits], "exactly the pool's size fits"


def test_finish_frees_every_block_at_once():
    scheduler, runner = setup(32)
    a, b = make_seq(0, list(range(1, 14)), 20), make_seq(1, list(range(2, 9)), 20)
    scheduler.add(a)
    scheduler.add(b)
    for _ in range(3):
        step(scheduler, runner)
    assert scheduler.allocator.num_used == len(scheduler.blocks.table(0)) + len(scheduler.blocks.table(1)) > 0
    scheduler.finish(a, "abort")
    assert a.finish_reason == "abort" and a.status is SequenceStatus.FINISHED
    assert scheduler.allocator.num_used == len(scheduler.blocks.table(1))
    scheduler.finish(b, "abort")
    assert scheduler.allocator.num_used == 0 and not scheduler.has_unfinished()
    waiting = make_seq(2, [1, 2, 3], 4)
    scheduler.add(waiting)
    scheduler.finish(waiting, "abort")  # a waiting sequence is dropped from the queue
    assert not scheduler.has_unfinished()
    scheduler.allocator.check_invariants()


def test_prefix_cache_skips_the_shared_prompt_blocks():
    scheduler, runner = setup(32, max_num_batched_tokens=64)
    prompt = list(range(1, 19))  # 18 tokens: 4 full blocks of 4
    first = make_seq(0, prompt, 3)
    scheduler.add(first)
    run_all(scheduler, runner)
    second = make_seq(1, prompt + [7], 3)
    scheduler.add(second)
    out = step(scheduler, runner)
    assert out.scheduled[0][1] == 19 - 16, "the 4 full cached blocks are reused, only the tail is computed"
    run_all(scheduler, runner)
    assert second.output_token_ids == reference(runner, prompt + [7], 3)
    assert scheduler.allocator.prefix_hits == 4


def test_forked_siblings_share_the_prompt_and_copy_on_write():
    scheduler, runner = setup(32)
    prompt = [5, 6, 7, 8, 9, 10]  # ends inside the second block: siblings share a partial block
    parent = make_seq(0, prompt, 4)
    parent.fork_into = 3
    scheduler.add(parent)
    out = step(scheduler, runner)
    assert parent.num_uncomputed_tokens == 1
    children = [Sequence(i, parent.request, i, list(prompt) + [i], (0, i), 4) for i in (1, 2)]
    scheduler.fork(parent, children)
    assert all(scheduler.blocks.table(c.seq_id) == scheduler.blocks.table(0) for c in children)
    out = step(scheduler, runner)
    assert len(out.batch.block_copies) == 2, "two of the three writers into the shared block get a copy"
    run_all(scheduler, runner)
    for s in [parent, *children]:
        history = s.token_ids[:len(prompt) + 1]
        expect = history[len(prompt):] + reference(runner, history, 3)
        assert s.output_token_ids == expect
    assert scheduler.allocator.num_used == 0


def test_fork_seats_count_toward_max_num_seqs():
    scheduler, runner = setup(32, max_num_seqs=3, max_num_batched_tokens=16)
    a = make_seq(0, [1, 2], 2)
    a.fork_into = 3
    b = make_seq(1, [3, 4], 2)
    scheduler.add(a)
    scheduler.add(b)
    out = scheduler.schedule()
    assert [s.seq_id for s, _ in out.scheduled] == [0], "b waits: a will become 3 sequences"


def test_fake_model_notices_a_corrupted_cache():
    scheduler, runner = setup(16)
    seq = make_seq(0, list(range(1, 10)), 3)
    scheduler.add(seq)
    step(scheduler, runner)
    runner.kv_cache.k[1][scheduler.blocks.table(0)[0], 2, 0, 1] = 99.0  # one position, one layer
    with pytest.raises(RuntimeError, match="corrupted in layer 1"):
        step(scheduler, runner)


def test_scheduler_config_is_validated():
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        SchedulerConfig(block_size=0)
    with pytest.raises(ValueError, match=r"max_num_batched_tokens \(4\) must be at least max_num_seqs \(8\)"):
        SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=4)
