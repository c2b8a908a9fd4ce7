"""The engine: requests in, a step loop of schedule -> execute -> update, RequestOutputs out.

`LLMEngine` is synchronous and single-threaded: `add_request`, then `step()` until `has_unfinished()` is False;
each step returns the outputs of the requests it advanced (with per-completion deltas for streaming).

`AsyncLLMEngine` runs the same steps on a background thread, so the event loop (the HTTP server) never waits
for the model. `generate()` validates at once (RequestError, QueueFullError) and returns a stream of
RequestOutputs; requests and aborts reach the engine thread through a queue and take effect between two steps,
and a stream that its consumer closes or cancels aborts its request, so a vanished client frees its KV blocks
within one step.

Determinism: each sequence samples with its own generator (seeded requests: from the seed and the completion
index), draws once per token and keeps the generator across preemption, and the scheduler never changes which
tokens a sequence sees; so with the fake model a request's tokens are exactly the same alone, batched or
preempted (tested). With a real model on CPU the logits of a request alone and batched agree to float32
rounding, not bit for bit: BLAS sums a one-row product (gemv) in another order than a batched one (gemm), and
a prefill chunk's softmax runs over as many keys as the chunk's context. Greedy and seeded tokens therefore
match unless two candidates tie within ~1e-6 (tested on a random Llama against HF, SmolLM2 batch 8 matches
HF's greedy tokens). On GPU the same holds with cuBLAS' order instead of OpenBLAS'.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..llm import sampling
from .kv_cache import blocks_for_tokens
from .model_runner import ModelRunner
from .request import (
    CompletionOutput,
    QueueFullError,
    Request,
    RequestError,
    RequestOutput,
    RequestState,
    Sequence,
    TokenLogprob,
)
from .scheduler import Scheduler, SchedulerConfig

logger = logging.getLogger("zigtensor.engine")

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of KV cache when neither kv_blocks nor memory_budget is given


@dataclass
class EngineConfig:
    """How the engine sizes its cache and batches.

    The KV pool has `kv_blocks` blocks, or as many as fit in `memory_budget` bytes; with neither, enough for
    max_num_seqs sequences of max_model_len tokens, capped at DEFAULT_MEMORY_BUDGET.
    """

    model_name: str | None = None  # the name the server reports (None: "model", or the model as loaded)
    max_model_len: int | None = None  # default: the runner's context length (its `max_model_len`), else 2048
    block_size: int = 16
    kv_blocks: int | None = None
    memory_budget: int | None = None
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512
    max_queue: int = 1024  # waiting requests at most; more raise QueueFullError
    enable_prefix_caching: bool = True

    def __post_init__(self):
        if self.kv_blocks is not None and self.memory_budget is not None:
            raise ValueError(f"EngineConfig: give kv_blocks ({self.kv_blocks}) or memory_budget "
                             f"({self.memory_budget}), not both")
        for name in ("kv_blocks", "memory_budget", "max_model_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"EngineConfig: {name} must be a positive int or None, got {value!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise ValueError(f"EngineConfig: max_queue must be a positive int, got {self.max_queue!r}")


class LatencyHistogram:
    """Cumulative counts of latencies (seconds) under fixed upper bounds, as Prometheus histograms keep them."""

    BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)

    def __init__(self):
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[int(np.searchsorted(self.BOUNDS, seconds))] += 1
        self.count += 1
        self.sum += seconds

    def snapshot(self) -> dict:
        cumulative = list(itertools.accumulate(self.counts))
        buckets = {**dict(zip(self.BOUNDS, cumulative)), float("inf"): cumulative[-1]}
        return {"count": self.count, "sum": self.sum, "buckets": buckets}


class LLMEngine:
    """A continuous-batching engine over a ModelRunner and its paged KV cache.

    Args:
        runner: the ModelRunner (a model on a device, or FakeModelRunner in tests).
        tokenizer: a zigtensor.llm Tokenizer (prompts as text, detokenized output, EOS ids); with None, prompts
            must be token ids and outputs carry token ids only.
        config: EngineConfig.

    >>> engine = LLMEngine(runner, tokenizer, EngineConfig(kv_blocks=64))
    >>> engine.add_request("r1", "Hello", SamplingParams(max_tokens=8))
    >>> while engine.has_unfinished():
    ...     for out in engine.step(): print(out.outputs[0].delta_text, end="")
    """

    def __init__(self, runner: ModelRunner, tokenizer=None, config: EngineConfig | None = None):
        self.runner = runner
        self.tokenizer = tokenizer
        self.config = config = config or EngineConfig()
        self.model_name = config.model_name or "model"
        self.max_model_len = config.max_model_len or getattr(runner, "max_model_len", None) or 2048
        spec = runner.kv_cache_spec
        if config.kv_blocks is not None:
            num_blocks = config.kv_blocks
        else:
            budget_blocks = spec.blocks_in_budget(config.memory_budget or DEFAULT_MEMORY_BUDGET, config.block_size)
            if config.memory_budget is not None:
                num_blocks = budget_blocks
            else:
                want = config.max_num_seqs * blocks_for_tokens(self.max_model_len, config.block_size)
                num_blocks = min(want, budget_blocks)
        self.scheduler = Scheduler(SchedulerConfig(
            block_size=config.block_size, max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens, max_model_len=self.max_model_len,
            enable_prefix_caching=config.enable_prefix_caching), num_blocks)
        runner.allocate_kv_cache(num_blocks, config.block_size)
        self.vocab_size = runner.vocab_size
        self.eos_token_ids: set[int] = set(tokenizer.eos_token_ids) if tokenizer is not None else set()
        self._requests: dict[str, RequestState] = {}
        self._seq_ids = itertools.count()
        self._order = itertools.count()
        self._pending_outputs: list[RequestState] = []  # finished outside a step (abort, never fits)
        self.counters = {"requests_added": 0, "prompt_tokens": 0, "generation_tokens": 0, "steps": 0,
                         "finished_stop": 0, "finished_length": 0, "finished_abort": 0, "finished_error": 0}
        self.ttft = LatencyHistogram()
        self.inter_token_latency = LatencyHistogram()
        self.step_time_model = 0.0  # seconds in runner.execute, and in the whole step, summed over steps
        self.step_time_total = 0.0

    # --- requests -------------------------------------------------------------------------------------
    def make_request(self, request_id: str, prompt, params=None, arrival_time: float | None = None) -> Request:
        """Validate and tokenize a request without touching engine state (safe from any thread)."""
        if params is None:
            params = sampling.SamplingParams()
        if not isinstance(params, sampling.SamplingParams):
            raise RequestError(f"params must be a SamplingParams, got {type(params).__name__}", "params")
        if not isinstance(request_id, str) or not request_id:
            raise RequestError(f"request_id must be a non-empty string, got {request_id!r}", "request_id")
        text = None
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise RequestError("this engine has no tokenizer: give the prompt as token ids", "prompt")
            text, token_ids = prompt, list(self.tokenizer.encode(prompt))
        elif isinstance(prompt, (list, tuple, np.ndarray)):
            token_ids = [int(t) for t in prompt]
            if any(t < 0 or t >= self.vocab_size for t in token_ids):
                bad = next(t for t in token_ids if t < 0 or t >= self.vocab_size)
                raise RequestError(f"prompt token id {bad} is outside the vocabulary [0, {self.vocab_size})",
                                   "prompt")
        else:
            raise RequestError(f"prompt must be a string or a list of token ids, got {type(prompt).__name__}",
                               "prompt")
        if not token_ids:
            raise RequestError("prompt is empty: it must have at least one token", "prompt")
        if len(token_ids) >= self.max_model_len:
            raise RequestError(f"prompt has {len(token_ids)} tokens; this model accepts at most "
                               f"{self.max_model_len - 1} (max_model_len {self.max_model_len} including output)",
                               "prompt")
        room = self.max_model_len - len(token_ids)
        if params.max_tokens is not None and params.max_tokens > room:
            raise RequestError(f"max_tokens {params.max_tokens} plus the prompt's {len(token_ids)} tokens exceeds "
                               f"max_model_len {self.max_model_len}: max_tokens must be in [1, {room}]",
                               "max_tokens")
        outside = [t for t in params.logit_bias if t >= self.vocab_size]
        if outside:
            raise RequestError(f"logit_bias names token id {outside[0]}, outside the vocabulary "
                               f"[0, {self.vocab_size})", "logit_bias")
        max_seqs = self.scheduler.config.max_num_seqs
        if params.n > max_seqs:
            raise RequestError(f"n {params.n} is over this server's max_num_seqs; n must be in [1, {max_seqs}]", "n")
        return Request(request_id, token_ids, params, time.monotonic() if arrival_time is None else arrival_time,
                       text)

    def add(self, request: Request) -> None:
        """Queue a validated request (from make_request)."""
        if request.request_id in self._requests:
            raise RequestError(f"request_id {request.request_id!r} is already in use", "request_id")
        if self.scheduler.num_waiting >= self.config.max_queue:
            raise QueueFullError(f"the queue is full ({self.config.max_queue} waiting requests); retry later")
        params = request.params
        max_tokens = params.max_tokens if params.max_tokens is not None else (
            self.max_model_len - len(request.prompt_token_ids))
        order = next(self._order)
        first = Sequence(next(self._seq_ids), request, 0, list(request.prompt_token_ids), (order, 0), max_tokens,
                         fork_into=params.n)
        state = RequestState(request, first, order)
        self._init_sequence(first)
        self._requests[request.request_id] = state
        self.counters["requests_added"] += 1
        self.counters["prompt_tokens"] += len(request.prompt_token_ids)
        if not self.scheduler.add(first):
            self._finished_outside_step(state)

    def add_request(self, request_id: str, prompt, params=None, arrival_time: float | None = None) -> None:
        self.add(self.make_request(request_id, prompt, params, arrival_time))

    def abort(self, request_id: str) -> bool:
        """Finish the request now (reason "abort") and free all its KV blocks; False if it is not running."""
        state = self._requests.get(request_id)
        if state is None or state.finished:
            return False
        for seq in state.sequences:
            self.scheduler.finish(seq, "abort", "aborted by the caller")
        self._finished_outside_step(state)
        return True

    def abort_all(self) -> None:
        for request_id in list(self._requests):
            self.abort(request_id)

    def fail_all(self, message: str) -> None:
        """Finish every live request with reason "error" (the model failed); their blocks are freed."""
        for state in list(self._requests.values()):
            if not state.finished:
                for seq in state.sequences:
                    self.scheduler.finish(seq, "error", message)
                self._finished_outside_step(state)

    def _finished_outside_step(self, state: RequestState) -> None:
        if state not in self._pending_outputs:
            self._pending_outputs.append(state)

    def has_unfinished(self) -> bool:
        return bool(self._requests)

    # --- the step -------------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule, run the model, sample, detokenize and check stops; the outputs of advanced requests."""
        t0 = time.perf_counter()
        touched: dict[str, RequestState] = {s.request.request_id: s for s in self._pending_outputs}
        self._pending_outputs = []
        sched = self.scheduler.schedule()
        for seq in sched.preempted:
            self._requests[seq.request.request_id].metrics.num_preemptions += 1
        if sched.batch is not None:
            self.counters["steps"] += 1
            t_model = time.perf_counter()
            logits = self.runner.execute(sched.batch)
            self.step_time_model += time.perf_counter() - t_model
            self.scheduler.update(sched)
            now = time.monotonic()
            batch = sched.batch
            rows, seqs = [], []
            for j, (seq, _) in enumerate(sched.scheduled):
                state = self._requests[seq.request.request_id]
                if state.metrics.first_scheduled_time is None:
                    state.metrics.first_scheduled_time = now
                start, end = batch.logit_starts[j], batch.logit_starts[j + 1]
                if state.prompt_logprobs is not None and end - start > 1:
                    self._record_prompt_logprobs(state, seq, logits[start:end],
                                                 batch.positions[batch.logit_indices[start:end]])
                if seq.num_uncomputed_tokens:  # a prefill chunk that is not the last: nothing to sample yet
                    continue
                touched[seq.request.request_id] = state
                for s in self._fork(state, seq):
                    rows.append(end - 1)
                    seqs.append(s)
            if seqs:
                self._append_tokens(seqs, logits[rows], now)
        outputs = [self._output(state) for state in touched.values()]
        for state in touched.values():
            if state.finished:
                self._requests.pop(state.request.request_id, None)
        self.step_time_total += time.perf_counter() - t0
        return outputs

    @staticmethod
    def _record_prompt_logprobs(state: RequestState, seq: Sequence, logits: np.ndarray, positions: np.ndarray):
        """The log-probability of each prompt token after position p (a row of logits per position), with the
        params' number of most likely ones. A chunk computed again after a preemption adds nothing twice."""
        prompt, k = seq.request.prompt_token_ids, seq.request.params.prompt_logprobs
        have = state.prompt_logprobs
        logprobs = sampling.log_softmax(logits)
        for row, position in enumerate(positions.tolist()):
            target = position + 1
            if target == len(have) and target < len(prompt):
                token = prompt[target]
                have.append(TokenLogprob(token, float(logprobs[row, token]), sampling.most_likely(logprobs[row], k)))

    def _fork(self, state: RequestState, seq: Sequence) -> list[Sequence]:
        """The sequences that sample from seq's logits: seq itself, plus its n - 1 siblings on the first token."""
        if seq.fork_into == 1:
            return [seq]
        children = []
        for index in range(1, seq.fork_into):
            child = Sequence(next(self._seq_ids), state.request, index, list(seq.token_ids),
                             (state.order, index), seq.max_tokens)
            self._init_sequence(child)
            children.append(child)
        self.scheduler.fork(seq, children)
        state.sequences.extend(children)
        state.forked = True
        return [seq, *children]

    def _append_tokens(self, seqs: list[Sequence], logits: np.ndarray, now: float) -> None:
        sampled = sampling.sample(
            logits, [s.request.params for s in seqs], [s.generator for s in seqs],
            prompt_ids=[s.token_ids[:s.num_prompt_tokens] for s in seqs],
            output_ids=[s.output_token_ids for s in seqs], eos_token_ids=sorted(self.eos_token_ids))
        for i, seq in enumerate(seqs):
            token = int(sampled.token_ids[i])
            state = self._requests[seq.request.request_id]
            seq.token_ids.append(token)
            seq.cumulative_logprob += float(sampled.logprobs[i])
            if seq.request.params.logprobs is not None:
                if seq.logprobs is None:
                    seq.logprobs = []
                seq.logprobs.append(TokenLogprob(token, float(sampled.logprobs[i]), sampled.top_logprobs[i] or []))
            self.counters["generation_tokens"] += 1
            if seq.first_token_time is None:
                seq.first_token_time = now
                if state.metrics.first_token_time is None:
                    state.metrics.first_token_time = now
                    self.ttft.observe(now - state.request.arrival_time)
            else:
                self.inter_token_latency.observe(now - seq.last_token_time)
            seq.last_token_time = state.metrics.last_token_time = now
            self._check_stops(seq, token)

    def _check_stops(self, seq: Sequence, token: int) -> None:
        """Detokenize the new token; end the sequence on a stop token, a stop string or its length limit."""
        params = seq.request.params
        if sampling.is_stop_token(token, params, self.eos_token_ids):
            # NOTE: the stop token is in token_ids but not in the text (as vLLM and OpenAI)
            self._finish(seq, "stop", token if token in params.stop_token_ids else None)
            return
        if seq.decoder is not None:
            delta = seq.decoder.feed(token)
            if seq.stop_checker is not None:
                delta = seq.stop_checker.feed(delta)
                if seq.stop_checker.stopped:
                    seq.text += delta
                    self._finish(seq, "stop", seq.stop_checker.matched, flush=False)
                    return
            seq.text += delta
        if seq.num_output_tokens >= seq.max_tokens or len(seq.token_ids) >= self.max_model_len:
            self._finish(seq, "length")

    def _finish(self, seq: Sequence, reason: str, stop_reason=None, flush: bool = True) -> None:
        """End a sequence the model finished; with flush, the text held back (an incomplete character, what
        might start a stop string) is released first."""
        if flush and seq.decoder is not None:
            tail = seq.decoder.flush()
            if seq.stop_checker is not None:
                tail = seq.stop_checker.feed(tail)
                if seq.stop_checker.stopped:
                    reason, stop_reason = "stop", seq.stop_checker.matched
                else:
                    tail += seq.stop_checker.flush()
            seq.text += tail
        self.scheduler.finish(seq, reason)
        seq.stop_reason = stop_reason

    def _init_sequence(self, seq: Sequence) -> None:
        """A sequence's own random stream (completion i of a seeded request: seed and i), decoder, stop checker."""
        params = seq.request.params
        seq.generator = None if params.greedy else sampling.make_generator(params.seed, seq.index)
        if self.tokenizer is not None:
            seq.decoder = self.tokenizer.incremental_decoder(seq.request.prompt_token_ids, params.skip_special_tokens)
        seq.stop_checker = sampling.StopChecker(params.stop) if params.stop else None

    # --- outputs --------------------------------------------------------------------------------------
    def _output(self, state: RequestState) -> RequestOutput:
        completions = []
        for seq in sorted(state.sequences, key=lambda s: s.index):
            out_ids = seq.output_token_ids
            text = seq.text
            completions.append(CompletionOutput(
                index=seq.index, text=text, token_ids=list(out_ids),
                delta_text=text[seq.emitted_text:], delta_token_ids=list(out_ids[seq.emitted_tokens:]),
                logprobs=None if seq.logprobs is None else list(seq.logprobs),
                delta_logprobs=None if seq.logprobs is None else seq.logprobs[seq.emitted_tokens:],
                cumulative_logprob=seq.cumulative_logprob if seq.logprobs is not None else None,
                finish_reason=seq.finish_reason, reason=seq.finish_message,
                stop_reason=seq.stop_reason))
            seq.emitted_tokens, seq.emitted_text = len(out_ids), len(text)
        if not state.forked and state.finished:
            # NOTE: a request that ends before its prompt was computed (abort, error) still reports n completions
            n = state.request.params.n
            completions += [CompletionOutput(index=i, text="", token_ids=[], finish_reason=completions[0].finish_reason,
                                             reason=completions[0].reason) for i in range(1, n)]
        finished = state.finished
        if finished and not state.finished_reported:
            state.finished_reported = True
            state.metrics.finished_time = time.monotonic()
            for c in completions:
                self.counters[f"finished_{c.finish_reason}"] += 1
        prompt_logprobs = None if state.prompt_logprobs is None else list(state.prompt_logprobs)
        return RequestOutput(state.request.request_id, state.request.prompt, state.request.prompt_token_ids,
                             completions, finished, state.metrics, prompt_logprobs)

    # --- introspection --------------------------------------------------------------------------------
    def stats(self) -> dict:
        alloc = self.scheduler.allocator
        return {
            "model": self.model_name,
            "num_waiting": self.scheduler.num_waiting,
            "num_running": self.scheduler.num_running,
            "num_requests": len(self._requests),
            "kv_blocks_used": alloc.num_used,
            "kv_blocks_total": alloc.num_blocks,
            "kv_block_size": alloc.block_size,
            "prefix_cache_hit_blocks": alloc.prefix_hits,
            "num_preemptions": self.scheduler.num_preemptions,
            **self.counters,
            "ttft_seconds": self.ttft.snapshot(),
            "inter_token_latency_seconds": self.inter_token_latency.snapshot(),
            "step_time_model_s": self.step_time_model,
            "step_time_total_s": self.step_time_total,
        }

    def generate(self, prompts, params=None) -> list[RequestOutput]:
        """Run prompts (strings or token-id lists) to completion; the final outputs, in prompt order.

        `params` is one SamplingParams for all prompts or a list with one per prompt.
        """
        params_list = params if isinstance(params, list) else [params] * len(prompts)
        if len(params_list) != len(prompts):
            raise ValueError(f"generate: {len(params_list)} SamplingParams for {len(prompts)} prompts")
        ids = [f"generate-{next(self._order)}-{i}" for i in range(len(prompts))]
        for rid, prompt, p in zip(ids, prompts, params_list):
            self.add_request(rid, prompt, p)
        final: dict[str, RequestOutput] = {}
        while any(rid not in final for rid in ids):
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
        return [final[rid] for rid in ids]

    def __repr__(self) -> str:
        return f"LLMEngine(model={self.model_name!r}, runner={self.runner!r}, scheduler={self.scheduler!r})"


# --------------------------------------------------------------------------------------------- async
class EngineDeadError(RuntimeError):
    """The engine is shut down (or its thread died): no new requests."""


class _Stream:
    """Where the engine thread delivers one request's outputs: an asyncio.Queue on the caller's loop."""

    __slots__ = ("loop", "queue", "finished")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.finished = False

    def put(self, item) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody listens any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


async def _outputs(engine: AsyncLLMEngine, request_id: str, stream: _Stream):
    """The outputs of one request; aborts it when closed (or collected) before its last output.

    NOTE: a module-level generator that holds no reference to its RequestStream: without a reference cycle, a
    client that drops the stream (a `break`, a `return` out of `async for`) frees it at once, and asyncio's
    finalizer closes the generator, which aborts the request, instead of waiting for the cyclic GC.
    """
    try:
        while True:
            out = await stream.queue.get()
            if isinstance(out, BaseException):
                stream.finished = True
                raise out
            yield out
            if out.finished:
                stream.finished = True
                return
    finally:
        if not stream.finished:
            engine.abort(request_id)


class RequestStream:
    """The outputs of one request as an async iterator (`async for out in stream`); also awaitable to itself.

    Closing it (`await stream.aclose()`), dropping it, or cancelling the task iterating it aborts the request
    if it has not finished. An engine failure ends the stream with an output whose finish_reason is "error".
    """

    def __init__(self, engine: AsyncLLMEngine, request_id: str, stream: _Stream):
        self.request_id = request_id
        self._iterator = _outputs(engine, request_id, stream)

    def __aiter__(self):
        return self._iterator

    async def __anext__(self):
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()

    def __await__(self):
        async def itself():
            return self

        return itself().__await__()


class AsyncLLMEngine:
    """An LLMEngine stepping on a background thread, for asyncio callers (the server, `zt bench serve`).

    >>> engine = AsyncLLMEngine(LLMEngine(runner, tokenizer, config))
    >>> async for out in engine.generate("Hello", SamplingParams(max_tokens=8), request_id="r1"):
    ...     print(out.outputs[0].delta_text, end="")
    >>> await engine.shutdown()
    """

    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.model_name = engine.model_name
        self.max_model_len = engine.max_model_len
        self._cv = threading.Condition()
        self._adds: deque[tuple[Request, _Stream]] = deque()
        self._aborts: deque[str] = deque()
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count()
        self._accepting = True
        self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="zigtensor-engine", daemon=True)
        self._thread.start()

    # --- the engine thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # NOTE: the thread is dying: end every stream rather than leave it hanging
            self._error = e
            logger.exception("engine thread died")
            raise
        finally:
            self._accepting = False
            dead = EngineDeadError(f"the engine stopped: {self._error!r}" if self._error else "the engine stopped")
            for stream in list(self._streams.values()):
                stream.put(dead)
            self._streams.clear()

    def _loop(self) -> None:
        engine = self.engine
        while True:
            with self._cv:
                while not (self._adds or self._aborts or self._stop or engine.has_unfinished()):
                    self._cv.wait()
                stopping = self._stop and not self._adds and not self._aborts
                adds, aborts = list(self._adds), list(self._aborts)
                self._adds.clear()
                self._aborts.clear()
            if stopping:
                engine.abort_all()
                self._dispatch(engine.step())
                return
            try:
                for request, stream in adds:
                    try:
                        engine.add(request)
                    except (RequestError, QueueFullError) as e:  # raced with another add: report on the stream
                        self._streams.pop(request.request_id, None)
                        stream.put(e)
                for request_id in aborts:
                    engine.abort(request_id)
                outputs = engine.step()
            except Exception as e:  # NOTE: the model failed: fail the live requests, keep serving new ones
                logger.exception("engine step failed")
                engine.fail_all(f"engine error: {type(e).__name__}: {e}")
                outputs = engine.step()
            self._dispatch(outputs)

    def _dispatch(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                if out.finished:
                    del self._streams[out.request_id]
                stream.put(out)

    def _submit_abort(self, request_id: str) -> None:
        with self._cv:
            self._aborts.append(request_id)
            self._cv.notify()

    # --- the API --------------------------------------------------------------------------------------
    def generate(self, prompt, params=None, request_id: str | None = None) -> RequestStream:
        """Queue a request and return the stream of its outputs (each with deltas since the previous one).

        Raises RequestError (a bad value; `.param` names the field), QueueFullError (max_queue requests
        waiting) or EngineDeadError (shut down) at once, before anything is queued.
        """
        if not self._accepting or not self._thread.is_alive():
            raise EngineDeadError("the engine is shutting down or stopped; it accepts no new requests")
        request_id = request_id if request_id is not None else f"req-{next(self._ids)}"
        request = self.engine.make_request(request_id, prompt, params)
        stream = _Stream(asyncio.get_running_loop())
        with self._cv:
            if request_id in self._streams:
                raise RequestError(f"request_id {request_id!r} is already in use", "request_id")
            waiting = self.engine.scheduler.num_waiting + len(self._adds)
            if waiting >= self.engine.config.max_queue:
                raise QueueFullError(f"the queue is full ({self.engine.config.max_queue} waiting requests); "
                                     "retry later")
            self._streams[request_id] = stream
            self._adds.append((request, stream))
            self._cv.notify()
        return RequestStream(self, request_id, stream)

    def abort(self, request_id: str) -> None:
        """Abort a request (thread-safe, returns at once): its blocks are freed before the next step runs."""
        self._submit_abort(request_id)

    def health(self) -> bool:
        """True while the engine thread runs and accepts requests."""
        return self._accepting and self._thread.is_alive()

    def stats(self) -> dict:
        """The engine's gauges and counters (see LLMEngine.stats), plus requests queued for the thread."""
        stats = self.engine.stats()
        stats["num_waiting"] += len(self._adds)
        stats["num_streams"] = len(self._streams)
        return stats

    async def embed(self, texts):
        raise RequestError(f"model {self.model_name!r} is a decoder-only language model: it has no embeddings "
                           "endpoint; serve an encoder model (e.g. minilm) for embeddings", "model")

    async def shutdown(self, grace_period: float = 0.0) -> None:
        """Refuse new requests, let running ones finish for up to `grace_period` seconds, abort the rest, stop."""
        self._accepting = False
        deadline = time.monotonic() + grace_period
        while self._streams and time.monotonic() < deadline and self._thread.is_alive():
            await asyncio.sleep(0.01)
        for request_id in list(self._streams):
            self._submit_abort(request_id)
        with self._cv:
            self._stop = True
            self._cv.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def __repr__(self) -> str:
        return f"AsyncLLMEngine({self.engine!r}, alive={self._thread.is_alive()})"
