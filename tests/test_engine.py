"""LLMEngine and AsyncLLMEngine over the fake model and a character tokenizer, no HTTP.

The fake model's logits hash the whole history read back from the paged cache, so comparing with its
cache-free reference (`logits_for`) checks scheduling, preemption, forks and the cache at once.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from zigtensor.engine import (
    AsyncLLMEngine,
    EngineConfig,
    EngineDeadError,
    FakeModelRunner,
    LLMEngine,
    QueueFullError,
    RequestError,
)
from zigtensor.llm.sampling import SamplingParams, log_softmax, make_generator, sample
from zigtensor.llm.tokenizer import Tokenizer

CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ.,!?\n0123456789"
EOS = len(CHARS)
VOCAB = len(CHARS) + 1


def char_tokenizer() -> Tokenizer:
    """One token per character, and <eos>."""
    vocab = {c: i for i, c in enumerate(CHARS)}
    vocab["<eos>"] = EOS
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken("<eos>", special=True)])
    return Tokenizer(backend, special_tokens={"eos_token": "<eos>"})


TOKENIZER = char_tokenizer()


def make_engine(**config) -> LLMEngine:
    config = {"block_size": 4, "kv_blocks": 256, "max_num_seqs": 16, "max_num_batched_tokens": 32,
              "max_model_len": 128, **config}
    return LLMEngine(FakeModelRunner(vocab_size=VOCAB), TOKENIZER, EngineConfig(**config))


def reference(prompt: str, params: SamplingParams, index: int = 0) -> list[int]:
    """The tokens the fake model gives with no cache, no batching and no engine: sampling one row at a time."""
    runner = FakeModelRunner(vocab_size=VOCAB)
    prompt_ids = TOKENIZER.encode(prompt)
    out: list[int] = []
    generator = None if params.greedy else make_generator(params.seed, index)
    for _ in range(params.max_tokens):
        logits = runner.logits_for(prompt_ids + out)[None]
        token = int(sample(logits, [params], [generator], [prompt_ids], [out], [EOS]).token_ids[0])
        out.append(token)
        if token == EOS and not params.ignore_eos or token in params.stop_token_ids:
            break
    return out


PROMPTS = ["hello", "the quick brown fox", "a", "jumps over the lazy dog. ", "0123", "Is it?", "zz top\n", "many words"]
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)


def test_greedy_outputs_equal_the_cache_free_reference():
    engine = make_engine()
    outs = engine.generate(PROMPTS, GREEDY)
    for prompt, out in zip(PROMPTS, outs):
        c = out.outputs[0]
        assert c.token_ids == reference(prompt, GREEDY), prompt
        assert c.text == TOKENIZER.decode(c.token_ids) and c.finish_reason == "length"
        assert out.finished and out.prompt == prompt and out.prompt_token_ids == TOKENIZER.encode(prompt)
    assert engine.stats()["kv_blocks_used"] == 0 and not engine.has_unfinished()


def test_16_requests_on_a_pool_for_two_sequences_complete_with_the_outputs_of_running_alone():
    prompts = [f"request {i} " + "x" * (i % 5) for i in range(16)]  # at most 15 prompt tokens
    params = SamplingParams(temperature=0, max_tokens=9, ignore_eos=True)  # at most 24 tokens: 6 blocks of 4
    alone = [make_engine().generate([p], params)[0].outputs[0].token_ids for p in prompts]
    engine = make_engine(kv_blocks=12, max_num_batched_tokens=16)
    outs = engine.generate(prompts, params)
    assert [o.outputs[0].token_ids for o in outs] == alone
    assert [reference(p, params) for p in prompts] == alone
    stats = engine.stats()
    assert stats["num_preemptions"] > 0, "a pool for two sequences must preempt with 16 running"
    assert stats["kv_blocks_used"] == 0 and stats["kv_blocks_total"] == 12


def test_preempted_seeded_sampling_recomputes_to_the_same_tokens():
    params = [SamplingParams(temperature=1.0, top_p=0.9, seed=i, max_tokens=10, ignore_eos=True) for i in range(8)]
    prompts = [f"seed {i}" for i in range(8)]
    tight = make_engine(kv_blocks=10, max_num_batched_tokens=16).generate(prompts, params)
    roomy = make_engine().generate(prompts, params)
    assert [o.outputs[0].token_ids for o in tight] == [o.outputs[0].token_ids for o in roomy]
    assert [o.outputs[0].token_ids for o in roomy] == [reference(p, q) for p, q in zip(prompts, params)]


def test_seeded_sampling_is_the_same_alone_and_batched():
    seeded = SamplingParams(temperature=0.8, top_k=20, seed=1234, max_tokens=16, ignore_eos=True)
    alone = make_engine().generate(["tell me"], seeded)[0].outputs[0].token_ids
    others = [SamplingParams(temperature=1.2, max_tokens=20, ignore_eos=True)] * 5  # unseeded neighbours
    batched = make_engine().generate(["a", "tell me", "b c", "d e f", "tell me", "g"],
                                     [others[0], seeded, *others[1:3], seeded, others[3]])
    assert batched[1].outputs[0].token_ids == alone == batched[4].outputs[0].token_ids
    assert alone == reference("tell me", seeded)


def test_n_completions_share_the_prompt_and_sample_independently():
    engine = make_engine()
    params = SamplingParams(n=3, temperature=1.0, seed=7, max_tokens=8, ignore_eos=True)
    prompt = "shared prompt of some length"
    out = engine.generate([prompt], params)[0]
    assert [c.index for c in out.outputs] == [0, 1, 2]
    for c in out.outputs:
        assert c.token_ids == reference(prompt, params, c.index) and len(c.token_ids) == 8
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1, "siblings draw from their own streams"
    single = make_engine().generate([prompt], SamplingParams(temperature=1.0, seed=7, max_tokens=8,
                                                              ignore_eos=True))[0]
    assert single.outputs[0].token_ids == out.outputs[0].token_ids, "completion 0 of n is the n=1 completion"
    prompt_len = len(TOKENIZER.encode(prompt))
    prefill_tokens = sum(len(b.token_ids) for b in engine.runner.batch_log if b.query_lens.max() > 1)
    assert prefill_tokens == prompt_len, "the prompt is computed once for the three completions"
    assert engine.stats()["kv_blocks_used"] == 0


def test_greedy_n_gives_identical_completions():
    out = make_engine().generate(["same"], SamplingParams(n=2, temperature=0, max_tokens=6, ignore_eos=True))[0]
    assert out.outputs[0].token_ids == out.outputs[1].token_ids == reference("same", GREEDY)[:6]


def test_stop_strings_cut_the_text_and_streamed_deltas_add_up():
    full = make_engine().generate(["stop here"], SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0]
    text = full.outputs[0].text
    stop = text[9:12]
    assert len(stop) == 3 and text.find(stop) >= 9 - 2
    engine = make_engine()
    engine.add_request("s", "stop here", SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, stop=[stop]))
    deltas, final = [], None
    while engine.has_unfinished():
        for out in engine.step():
            deltas.append(out.outputs[0].delta_text)
            final = out
    c = final.outputs[0]
    assert c.finish_reason == "stop" and c.stop_reason == stop
    assert c.text == text[:text.find(stop)] == "".join(deltas)
    assert stop not in c.text


def test_stop_token_ids_and_eos_end_the_completion():
    tokens = reference("stop token", GREEDY)
    stopper = tokens[4]
    first = tokens.index(stopper)
    out = make_engine().generate(["stop token"], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True,
                                                                stop_token_ids=[stopper]))[0].outputs[0]
    assert out.token_ids == tokens[:first + 1] and out.finish_reason == "stop" and out.stop_reason == stopper
    assert out.text == TOKENIZER.decode(tokens[:first]), "the stop token's text is left out"
    # a prompt whose greedy continuation reaches <eos>: it stops there, unless ignore_eos
    long = SamplingParams(temperature=0, max_tokens=60, ignore_eos=True)
    prompt = next(p for p in (f"eos {i}" for i in range(500)) if EOS in reference(p, long))
    expect = reference(prompt, long)
    out = make_engine().generate([prompt], SamplingParams(temperature=0, max_tokens=60))[0].outputs[0]
    assert out.token_ids == expect[:expect.index(EOS) + 1] and out.finish_reason == "stop"
    assert out.stop_reason is None
    ignored = make_engine().generate([prompt], long)[0].outputs[0]
    assert ignored.token_ids == expect and ignored.finish_reason == "length"


def test_logprobs_are_those_of_the_model_distribution():
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True, logprobs=3)
    out = make_engine().generate(["logprobs"], params)[0].outputs[0]
    runner = FakeModelRunner(vocab_size=VOCAB)
    history = TOKENIZER.encode("logprobs")
    assert len(out.logprobs) == 4
    for lp in out.logprobs:
        logits = runner.logits_for(history).astype(np.float64)
        expect = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        assert lp.token_id == int(np.argmax(logits))
        assert lp.logprob == pytest.approx(expect[lp.token_id], abs=1e-5)
        assert [t for t, _ in lp.top] == list(np.argsort(-expect)[:3])
        history.append(lp.token_id)
    assert out.cumulative_logprob == pytest.approx(sum(lp.logprob for lp in out.logprobs), abs=1e-4)


def _reference_prompt_logprobs(prompt_ids: list[int], k: int) -> list:
    """Each prompt token's log-probability after the tokens before it, from the cache-free logits."""
    runner = FakeModelRunner(vocab_size=VOCAB)
    out = [None]
    for t in range(1, len(prompt_ids)):
        row = log_softmax(runner.logits_for(prompt_ids[:t])[None])[0]
        top = np.argsort(-row, kind="stable")[:k]
        out.append((prompt_ids[t], float(row[prompt_ids[t]]), [(int(i), float(row[i])) for i in top]))
    return out


@pytest.mark.parametrize("config", [{}, {"max_num_batched_tokens": 8, "max_num_seqs": 4},
                                    {"kv_blocks": 12, "max_num_batched_tokens": 16}],
                         ids=["one chunk", "chunked prefill", "preempted and recomputed"])
def test_prompt_logprobs_are_the_models_for_every_prompt_token(config):
    prompts = [f"prompt {i} with some words" for i in range(8)]
    params = SamplingParams(temperature=0, max_tokens=9, ignore_eos=True, prompt_logprobs=2)
    engine = make_engine(**config)
    outs = engine.generate(prompts, params)
    for prompt, out in zip(prompts, outs):
        want = _reference_prompt_logprobs(TOKENIZER.encode(prompt), 2)
        got = out.prompt_logprobs
        assert len(got) == len(want) and got[0] is None
        for g, w in zip(got[1:], want[1:]):
            assert g.token_id == w[0] and g.logprob == pytest.approx(w[1], abs=1e-5)
            assert [t for t, _ in g.top] == [t for t, _ in w[2]]
        assert out.outputs[0].token_ids == reference(prompt, params)  # sampling is unchanged
    if "kv_blocks" in config:
        assert engine.stats()["num_preemptions"] > 0
    assert engine.stats()["kv_blocks_used"] == 0


def test_prompt_logprobs_skip_the_prefix_cache_and_are_none_unless_asked():
    engine = make_engine()
    prompt = "a shared prefix of three blocks!"
    plain = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    first = engine.generate([prompt], plain)[0]
    assert first.prompt_logprobs is None
    asked = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True, prompt_logprobs=0)
    again = engine.generate([prompt], asked)[0]
    assert len(again.prompt_logprobs) == len(first.prompt_token_ids)
    assert all(e.top == [] for e in again.prompt_logprobs[1:])
    assert again.outputs[0].token_ids == first.outputs[0].token_ids


def test_abort_frees_every_block_at_once():
    engine = make_engine()
    engine.add_request("a", "to be aborted " * 3, SamplingParams(n=2, temperature=1.0, seed=1, max_tokens=50,
                                                                         ignore_eos=True))
    engine.add_request("b", "keeps going", SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    for _ in range(4):
        engine.step()
    used = engine.stats()["kv_blocks_used"]
    assert engine.abort("a") and not engine.abort("a") and not engine.abort("nobody")
    assert engine.stats()["kv_blocks_used"] < used
    outs = {o.request_id: o for o in engine.step()}
    assert outs["a"].finished and [c.finish_reason for c in outs["a"].outputs] == ["abort", "abort"]
    final = None
    while engine.has_unfinished():
        final = engine.step()[-1]
    b = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
    assert final.request_id == "b" and final.outputs[0].token_ids == reference("keeps going", b)
    assert engine.stats()["kv_blocks_used"] == 0
    engine.scheduler.allocator.check_invariants()


def test_requests_that_never_fit_finish_with_a_reason():
    engine = make_engine(kv_blocks=4)  # 16 tokens at most
    engine.add_request("big", "a" * 10, SamplingParams(max_tokens=10))
    out = engine.step()[0]
    assert out.finished and out.outputs[0].finish_reason == "error"
    assert "needs 5 KV blocks of 4 tokens, but the whole pool has 4" in out.outputs[0].reason
    assert not engine.has_unfinished()


@pytest.mark.parametrize("prompt,params,param,message", [
    ("", SamplingParams(), "prompt", "prompt is empty"),
    ([1, VOCAB], SamplingParams(), "prompt", f"token id {VOCAB} is outside the vocabulary"),
    (3.5, SamplingParams(), "prompt", "prompt must be a string or a list of token ids"),
    ("x" * 128, SamplingParams(), "prompt", "at most 127"),
    ("hello", SamplingParams(max_tokens=124), "max_tokens", r"max_tokens must be in \[1, 123\]"),
    ("hello", SamplingParams(n=17), "n", r"n must be in \[1, 16\]"),
    ("hello", {"max_tokens": 3}, "params", "params must be a SamplingParams"),
])
def test_bad_requests_raise_a_request_error_naming_the_field(prompt, params, param, message):
    engine = make_engine()
    with pytest.raises(RequestError, match=message) as e:
        engine.add_request("r", prompt, params)
    assert e.value.param == param and isinstance(e.value, ValueError)
    assert not engine.has_unfinished()


def test_duplicate_ids_and_a_full_queue_are_refused():
    engine = make_engine(max_queue=2)
    engine.add_request("a", "one", SamplingParams())
    with pytest.raises(RequestError, match="'a' is already in use"):
        engine.add_request("a", "two", SamplingParams())
    engine.add_request("b", "two", SamplingParams())
    with pytest.raises(QueueFullError, match="2 waiting requests"):
        engine.add_request("c", "three", SamplingParams())


def test_pool_sized_from_a_memory_budget():
    runner = FakeModelRunner(vocab_size=VOCAB)
    per_block = runner.kv_cache_spec.bytes_per_block(4)
    engine = LLMEngine(runner, TOKENIZER, EngineConfig(block_size=4, memory_budget=7 * per_block + 1,
                                                       max_model_len=64))
    assert engine.stats()["kv_blocks_total"] == 7 == runner.kv_cache.num_blocks
    with pytest.raises(ValueError, match="not both"):
        EngineConfig(kv_blocks=4, memory_budget=1 << 20)


def test_stats_count_tokens_and_latencies():
    engine = make_engine()
    engine.generate(PROMPTS[:3], GREEDY)
    s = engine.stats()
    assert s["generation_tokens"] == 36 and s["finished_length"] == 3 and s["requests_added"] == 3
    assert s["ttft_seconds"]["count"] == 3 and s["inter_token_latency_seconds"]["count"] == 33
    assert s["ttft_seconds"]["buckets"][float("inf")] == 3


# ------------------------------------------------------------------------------------------- async
def run_async(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def collect(stream):
    outs = []
    async for out in stream:
        outs.append(out)
    return outs


def test_async_generate_streams_deltas_and_aborts_free_everything():
    async def main():
        tasks_before = asyncio.all_tasks()
        engine = AsyncLLMEngine(make_engine(kv_blocks=40, max_num_batched_tokens=16))
        engine.engine.runner.step_delay = 0.002
        long = SamplingParams(temperature=0, max_tokens=100, ignore_eos=True)
        keep = [asyncio.create_task(collect(engine.generate(p, GREEDY, request_id=f"k{i}")))
                for i, p in enumerate(PROMPTS)]
        # 1. aborted by id while streaming
        aborted = engine.generate("abort me", long, request_id="by-id")
        first = await aborted.__anext__()
        assert not first.finished
        engine.abort("by-id")
        rest = [o async for o in aborted]
        assert rest[-1].finished and rest[-1].outputs[0].finish_reason == "abort"
        # 2. a consumer task cancelled mid-stream (a client that disconnects)
        started = asyncio.Event()

        async def consume():
            async for _ in engine.generate("cancel me", long, request_id="cancelled"):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # 3. a stream closed by its consumer
        closed = await engine.generate("close me", long, request_id="closed")
        await closed.__anext__()
        await closed.aclose()

        results = await asyncio.gather(*keep)
        for prompt, outs in zip(PROMPTS, results):
            final = outs[-1]
            assert final.finished and final.outputs[0].token_ids == reference(prompt, GREEDY)
            assert "".join(o.outputs[0].delta_text for o in outs) == final.outputs[0].text
            assert sum(len(o.outputs[0].delta_token_ids) for o in outs) == 12
        for _ in range(200):  # aborts take effect between steps
            if engine.stats()["num_requests"] == 0:
                break
            await asyncio.sleep(0.01)
        stats = engine.stats()
        assert stats["kv_blocks_used"] == 0 and stats["num_requests"] == 0 and stats["num_streams"] == 0
        assert stats["finished_abort"] == 3
        await engine.shutdown()
        assert not engine.health() and not engine._thread.is_alive()
        assert asyncio.all_tasks() == tasks_before, "no task is left running"

    run_async(main())
    assert not any(t.name == "zigtensor-engine" for t in threading.enumerate())


def test_async_errors_are_raised_at_submission():
    async def main():
        engine = AsyncLLMEngine(make_engine(max_queue=1))
        with pytest.raises(RequestError, match="max_tokens"):
            engine.generate("x", SamplingParams(max_tokens=1000))
        engine.engine.runner.step_delay = 0.05
        a = engine.generate("a", SamplingParams(max_tokens=3), request_id="a")
        with pytest.raises(RequestError, match="already in use"):
            engine.generate("b", request_id="a")
        with pytest.raises(QueueFullError):
            engine.generate("b", request_id="b")
        await collect(a)
        await engine.shutdown()
        with pytest.raises(EngineDeadError):
            engine.generate("c")

    run_async(main())


def test_a_failing_model_ends_the_streams_with_an_error_and_the_engine_keeps_serving():
    class Flaky(FakeModelRunner):
        fail = True

        def forward(self, batch):
            if self.fail and self.num_steps >= 2:
                self.fail = False
                raise RuntimeError("device lost")
            return super().forward(batch)

    async def main():
        runner = Flaky(vocab_size=VOCAB)
        engine = AsyncLLMEngine(LLMEngine(runner, TOKENIZER, EngineConfig(block_size=4, kv_blocks=64,
                                                                          max_model_len=64)))
        outs = await asyncio.gather(*(collect(engine.generate(p, GREEDY)) for p in PROMPTS[:3]))
        for o in outs:
            assert o[-1].finished and o[-1].outputs[0].finish_reason == "error"
            assert "RuntimeError: device lost" in o[-1].outputs[0].reason
        assert engine.health() and engine.stats()["kv_blocks_used"] == 0
        again = await collect(engine.generate(PROMPTS[0], GREEDY))
        assert again[-1].outputs[0].token_ids == reference(PROMPTS[0], GREEDY)
        await engine.shutdown()

    run_async(main())


def test_shutdown_lets_running_requests_finish_within_the_grace_period():
    async def main():
        engine = AsyncLLMEngine(make_engine())
        engine.engine.runner.step_delay = 0.001
        short = asyncio.create_task(collect(engine.generate("short", GREEDY)))
        endless = asyncio.create_task(collect(engine.generate("endless", SamplingParams(
            temperature=0, max_tokens=120, ignore_eos=True))))
        await asyncio.sleep(0.02)
        await engine.shutdown(grace_period=0.3)
        assert (await short)[-1].outputs[0].finish_reason == "length"
        assert (await endless)[-1].outputs[0].finish_reason in ("abort", "length")
        assert engine.engine.stats()["kv_blocks_used"] == 0

    run_async(main())


def test_32_concurrent_streams_with_disconnects_on_a_small_pool():
    rng = np.random.default_rng(5)
    prompts = ["".join(rng.choice(list(CHARS[:26]), size=int(rng.integers(1, 20)))) for _ in range(32)]
    params = [SamplingParams(temperature=float(rng.choice([0.0, 0.9])), seed=i, max_tokens=int(rng.integers(1, 30)),
                             ignore_eos=True) for i in range(32)]
    leaving = set(rng.choice(32, size=4, replace=False).tolist())
    for i in leaving:  # long enough that the client leaves before the end
        params[i] = SamplingParams(temperature=0, max_tokens=60, ignore_eos=True)

    async def client(engine, i):
        got = 0
        async for out in engine.generate(prompts[i], params[i], request_id=f"c{i}"):
            got += len(out.outputs[0].delta_token_ids)
            if i in leaving and got >= 1:
                return None  # the client goes away mid-stream
            if out.finished:
                return out

    async def main():
        tasks_before = asyncio.all_tasks()
        engine = AsyncLLMEngine(make_engine(kv_blocks=30, max_num_batched_tokens=24))
        results = await asyncio.gather(*(client(engine, i) for i in range(32)))
        for i, out in enumerate(results):
            if i in leaving:
                assert out is None
            else:
                assert out.outputs[0].token_ids == reference(prompts[i], params[i]), f"request {i}"
        for _ in range(200):
            if engine.stats()["num_requests"] == 0:
                break
            await asyncio.sleep(0.01)
        stats = engine.stats()
        assert stats["kv_blocks_used"] == 0 and stats["num_requests"] == 0 and stats["num_preemptions"] > 0
        assert stats["finished_abort"] == len(leaving)
        engine.engine.scheduler.allocator.check_invariants()
        await engine.shutdown()
        assert asyncio.all_tasks() == tasks_before

    run_async(main())
