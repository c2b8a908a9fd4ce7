"""`zt bench serve`: serving latency and throughput, driving the engine in-process or a running server (--url).

Each request sends `input_len` prompt tokens and asks for exactly `output_len` tokens (greedy, ignore_eos);
`concurrency` requests are in flight at a time (default: the batch size). Per request, as vLLM's serving
benchmark defines them:
    TTFT  time to first token: request sent -> first token received
    TPOT  time per output token: (E2E - TTFT) / (output tokens - 1)
    ITL   inter-token latency: time between two consecutive arrivals of tokens (one sample per arrival)
    E2E   end-to-end latency: request sent -> last token received
and over the run: completed requests / wall time, output tokens / wall time. In-process, the batch size is the
engine's max_num_seqs and the report adds the engine's overhead (the share of step time spent outside the
model: scheduling, sampling, detokenization); with --url the server's own settings apply and the batch size
only sets the concurrency.

>>> from zigtensor.bench import serve
>>> results = serve.run_engine(serve.engine_factory("smollm2"), [1, 8], input_len=64, output_len=32)
>>> print(serve.table(results))
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..llm.sampling import SamplingParams

PERCENTILES = (50, 90, 99)
WORDS = ("the", "model", "serves", "many", "requests", "at", "once", "while", "each", "client", "streams", "its",
         "tokens", "through", "a", "paged", "cache", "of", "fixed", "blocks", "and", "one", "scheduler")


@dataclass
class RequestTiming:
    """What one request measured (seconds)."""

    prompt_tokens: int
    output_tokens: int = 0
    ttft: float | None = None
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def summarize(values: list[float]) -> dict | None:
    """Mean and percentiles in milliseconds (None without samples)."""
    if not values:
        return None
    ms = np.asarray(values, dtype=np.float64) * 1e3
    return {"mean": float(ms.mean()), **{f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES}}


@dataclass
class ServeBenchResult:
    """One configuration of the sweep. Latencies are {mean, p50, p90, p99} in milliseconds."""

    target: str  # "engine" (in-process) or the server's URL
    batch_size: int
    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    completed: int
    failed: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_ms: dict | None
    tpot_ms: dict | None
    itl_ms: dict | None
    e2e_ms: dict | None
    engine_overhead_pct: float | None = None  # in-process only: step time outside the model
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_timings(cls, timings: list[RequestTiming], duration: float, **config) -> ServeBenchResult:
        ok = [t for t in timings if t.error is None]
        return cls(
            completed=len(ok), failed=len(timings) - len(ok), duration_s=duration,
            requests_per_s=len(ok) / duration, output_tokens_per_s=sum(t.output_tokens for t in ok) / duration,
            ttft_ms=summarize([t.ttft for t in ok if t.ttft is not None]),
            tpot_ms=summarize([t.tpot for t in ok if t.tpot is not None]),
            itl_ms=summarize([x for t in ok for x in t.itl]), e2e_ms=summarize([t.e2e for t in ok if t.e2e]),
            errors=sorted({t.error for t in timings if t.error})[:5], **config)


def prompt_texts(num_prompts: int, input_len: int, seed: int = 0) -> list[str]:
    """Texts of input_len random words: at least input_len tokens with any tokenizer (a word is one token or
    more), different per prompt so that no prefix cache hides the prefill."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=input_len)) for _ in range(num_prompts)]


def fit_prompts(token_lists: list[list[int]], input_len: int) -> list[list[int]]:
    """Each tokenized text cut to exactly input_len tokens."""
    short = [len(ids) for ids in token_lists if len(ids) < input_len]
    if short:
        raise ValueError(f"a prompt text tokenized to {short[0]} tokens, fewer than --input-len {input_len}")
    return [list(ids[:input_len]) for ids in token_lists]


async def _drive(one: Callable, prompts: list[list[int]], concurrency: int) -> tuple[list[RequestTiming], float]:
    """Run one(prompt) for every prompt with `concurrency` in flight; the timings and the wall time."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(prompt):
        async with gate:
            return await one(prompt)

    start = time.perf_counter()
    timings = await asyncio.gather(*(gated(p) for p in prompts))
    return list(timings), time.perf_counter() - start


class _Clock:
    """Arrival times of tokens for one request."""

    def __init__(self, prompt_tokens: int):
        self.timing = RequestTiming(prompt_tokens)
        self.start = self.last = time.perf_counter()

    def tokens_arrived(self) -> None:
        now = time.perf_counter()
        if self.timing.ttft is None:
            self.timing.ttft = now - self.start
        else:
            self.timing.itl.append(now - self.last)
        self.last = now

    def done(self, output_tokens: int) -> RequestTiming:
        self.timing.output_tokens = output_tokens
        self.timing.e2e = self.last - self.start
        return self.timing


# ------------------------------------------------------------------------------------------ in-process
def engine_factory(model, device="cpu", dtype=None, keep_quantized: bool = False,
                   **engine_config) -> Callable[[int, int], object]:
    """make(batch_size, tokens_per_seq) -> a fresh AsyncLLMEngine over one loaded model (loaded once;
    keep_quantized: load_model's)."""
    from ..engine import AsyncLLMEngine, EngineConfig, LLMEngine
    from ..engine.llm_runner import TransformerRunner
    from ..llm.loader import load_model

    loaded = load_model(model, device=device, dtype=dtype, keep_quantized=keep_quantized)
    if loaded.kind != "decoder":
        raise ValueError(f"zt bench serve needs a decoder model; {model!r} is an {loaded.kind}")
    runner = TransformerRunner(loaded.model)

    def make(batch_size: int, tokens_per_seq: int):
        block_size = engine_config.get("block_size", 16)
        kv_blocks = engine_config.get("kv_blocks") or batch_size * (-(-tokens_per_seq // block_size) + 1)
        config = EngineConfig(**{"model_name": str(model), **engine_config, "max_num_seqs": batch_size,
                                 "kv_blocks": kv_blocks})
        return AsyncLLMEngine(LLMEngine(runner, loaded.tokenizer, config))

    return make


def run_engine(make_engine: Callable[[int, int], object], batch_sizes: list[int], num_prompts: int | None = None,
               input_len: int = 128, output_len: int = 64, concurrency: int | None = None,
               seed: int = 0) -> list[ServeBenchResult]:
    """The sweep in-process: a fresh engine per batch size (its max_num_seqs), the same prompts for all."""
    return [asyncio.run(_engine_one(make_engine, n, num_prompts or 4 * n, input_len, output_len,
                                    concurrency or n, seed)) for n in batch_sizes]


async def _engine_one(make_engine, batch_size, num_prompts, input_len, output_len, concurrency, seed):
    engine = make_engine(batch_size, input_len + output_len)
    try:
        tokenizer = engine.tokenizer
        if tokenizer is None:  # token ids only: random ones
            rng = np.random.default_rng(seed)
            prompts = rng.integers(0, engine.engine.vocab_size, size=(num_prompts, input_len)).tolist()
        else:
            prompts = fit_prompts([tokenizer.encode(t, add_special_tokens=False)
                                   for t in prompt_texts(num_prompts, input_len, seed)], input_len)
        params = SamplingParams(max_tokens=output_len, temperature=0, ignore_eos=True)

        async def one(prompt):
            clock = _Clock(len(prompt))
            final = None
            try:
                async for out in await engine.generate(prompt, params):
                    if out.outputs[0].delta_token_ids:
                        clock.tokens_arrived()
                    final = out
            except Exception as e:  # noqa: BLE001  (counted as a failed request)
                clock.timing.error = f"{type(e).__name__}: {e}"
                return clock.timing
            if final.outputs[0].finish_reason not in ("stop", "length"):
                clock.timing.error = f"finished with {final.outputs[0].finish_reason}: {final.outputs[0].reason}"
            return clock.done(len(final.outputs[0].token_ids))

        await one(prompts[0][: max(1, min(input_len, 8))])  # warm-up, untimed
        before = engine.stats()
        timings, duration = await _drive(one, prompts, concurrency)
        after = engine.stats()
        total = after["step_time_total_s"] - before["step_time_total_s"]
        model = after["step_time_model_s"] - before["step_time_model_s"]
        return ServeBenchResult.from_timings(
            timings, duration, target="engine", batch_size=batch_size, concurrency=concurrency,
            num_prompts=num_prompts, input_len=input_len, output_len=output_len,
            engine_overhead_pct=100 * (total - model) / total if total > 0 else None)
    finally:
        await engine.shutdown()


# ------------------------------------------------------------------------------------------- over HTTP
def run_url(url: str, batch_sizes: list[int], model: str | None = None, num_prompts: int | None = None,
            input_len: int = 128, output_len: int = 64, concurrency: int | None = None, api_key: str | None = None,
            seed: int = 0) -> list[ServeBenchResult]:
    """The sweep against a running server (POST /v1/completions, streamed); batch size = concurrency."""
    return [asyncio.run(_url_one(url.rstrip("/"), model, n, num_prompts or 4 * n, input_len, output_len,
                                 concurrency or n, api_key, seed)) for n in batch_sizes]


async def _url_one(url, model, batch_size, num_prompts, input_len, output_len, concurrency, api_key, seed):
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=None, limits=limits) as client:
        if model is None:
            model = (await _json(client.get("/v1/models")))["data"][0]["id"]
        token_lists = [(await _json(client.post("/tokenize", json={
            "model": model, "prompt": text, "add_special_tokens": False})))["tokens"]
            for text in prompt_texts(num_prompts, input_len, seed)]
        prompts = fit_prompts(token_lists, input_len)

        async def one(prompt):
            clock = _Clock(len(prompt))
            body = {"model": model, "prompt": prompt, "max_tokens": output_len, "temperature": 0,
                    "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
            output_tokens = 0
            try:
                async with client.stream("POST", "/v1/completions", json=body) as response:
                    if response.status_code != 200:
                        clock.timing.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                        return clock.timing
                    async for line in response.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            clock.timing.error = chunk["error"]["message"]
                            return clock.timing
                        if any(c["text"] for c in chunk["choices"]):
                            clock.tokens_arrived()
                        if chunk.get("usage"):
                            output_tokens = chunk["usage"]["completion_tokens"]
            except httpx.HTTPError as e:
                clock.timing.error = f"{type(e).__name__}: {e}"
                return clock.timing
            return clock.done(output_tokens)

        await one(prompts[0][: max(1, min(input_len, 8))])  # warm-up, untimed
        timings, duration = await _drive(one, prompts, concurrency)
    return ServeBenchResult.from_timings(timings, duration, target=url, batch_size=batch_size,
                                         concurrency=concurrency, num_prompts=num_prompts, input_len=input_len,
                                         output_len=output_len)


async def _json(request) -> dict:
    response = await request
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.method} {response.request.url}: HTTP {response.status_code}: "
                           f"{response.text[:300]}")
    return response.json()


# ------------------------------------------------------------------------------------------- reports
def _cell(stats: dict | None) -> str:
    return "n/a" if stats is None else "/".join(f"{stats[k]:.1f}" for k in ("mean", "p50", "p90", "p99"))


def table(results: list[ServeBenchResult]) -> str:
    """One row per configuration; latency cells are mean/p50/p90/p99 in milliseconds."""
    header = (f"{'batch':>5} {'conc':>4} {'ok':>5} {'fail':>4} {'req/s':>7} {'out tok/s':>9} {'ovh %':>6}  "
              f"{'TTFT ms':>27} {'TPOT ms':>27} {'ITL ms':>27} {'E2E ms':>31}")
    lines = [header, "-" * len(header)]
    for r in results:
        overhead = f"{r.engine_overhead_pct:.1f}" if r.engine_overhead_pct is not None else "n/a"
        lines.append(f"{r.batch_size:>5} {r.concurrency:>4} {r.completed:>5} {r.failed:>4} {r.requests_per_s:>7.2f} "
                     f"{r.output_tokens_per_s:>9.1f} {overhead:>6}  {_cell(r.ttft_ms):>27} {_cell(r.tpot_ms):>27} "
                     f"{_cell(r.itl_ms):>27} {_cell(r.e2e_ms):>31}")
    return "\n".join(lines)


def json_lines(results: list[ServeBenchResult]) -> list[str]:
    return [json.dumps(asdict(r)) for r in results]
