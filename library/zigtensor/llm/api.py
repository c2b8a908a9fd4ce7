"""The offline Python API, modelled on vLLM's `LLM`: load once, then generate, chat, score or embed.

>>> from zigtensor.llm import LLM, SamplingParams
>>> llm = LLM("smollm2")
>>> out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=16, temperature=0))
>>> out[0].text, out[0].token_ids, out[0].finish_reason
>>> llm.chat([{"role": "user", "content": "Hi!"}], SamplingParams(max_tokens=32))[0].text
>>> llm.score(llm.tokenizer.encode("Hello world")).shape           # (3, 49152): logits per position
>>> LLM("minilm").embed(["a sentence"]).shape                      # (1, 384)

Generation runs the prompts together: each prompt is read once (prefill) into its own rows of a contiguous
KV cache (one row per completion, SamplingParams.n), then every step decodes one token for all rows in one
batched forward. Each row samples with its own generator (seeded per request), stops on eos / stop tokens /
stop strings / max_tokens, and streams its text through an incremental detokenizer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

import numpy as np

from ..autograd.grad_mode import no_grad
from .kv_cache import KVCache
from .outputs import CompletionOutput, GenerationMetrics, RequestOutput, StreamDelta
from .sampling import SamplingParams, StopChecker, is_stop_token, make_generator, sample
from .threads import decode_threads
from .transformer import token_tensor


class _Row:
    """One completion being generated: a row of the KV cache."""

    def __init__(self, request: int, index: int, prompt_ids: list[int], params: SamplingParams, tokenizer):
        self.request, self.index, self.prompt_ids, self.params = request, index, prompt_ids, params
        self.generator = make_generator(params.seed, index)
        self.output_ids: list[int] = []
        self.decoder = tokenizer.incremental_decoder(prompt_ids, params.skip_special_tokens) if tokenizer else None
        self.stops = StopChecker(params.stop if isinstance(params.stop, list) else [params.stop]) \
            if params.stop else None
        self.text = ""
        self.finish_reason: str | None = None
        self.stop_reason = None
        self.cumulative_logprob = 0.0
        self.logprobs: list | None = [] if params.logprobs is not None else None

    def completion(self) -> CompletionOutput:
        return CompletionOutput(index=self.index, text=self.text, token_ids=list(self.output_ids),
                                finish_reason=self.finish_reason, stop_reason=self.stop_reason,
                                cumulative_logprob=self.cumulative_logprob, logprobs=self.logprobs)


class LLM:
    """A language model (or a sentence encoder) ready to run.

    Args:
        model (str | Path): an HF folder, a .gguf file, a zt train run, or a short name (smollm2, minilm).
        device (str): "cpu" (default) or "cuda[:i]".
        dtype: weight dtype; default float32.
        max_model_len (int | None): longest prompt + output; default the model's context length.
        keep_quantized (bool): a GGUF file's quantized linear weights stay in their blocks (GPTQ / AWQ folders
            always stay packed).
    """

    def __init__(self, model, device="cpu", dtype=None, max_model_len: int | None = None,
                 keep_quantized: bool = False):
        from .loader import load_model

        self.loaded = load_model(model, device=device, dtype=dtype, keep_quantized=keep_quantized)
        self.tokenizer = self.loaded.tokenizer
        self.config = self.loaded.config
        if self.loaded.kind == "decoder":
            context = self.config.max_position_embeddings
            if max_model_len is not None and not (isinstance(max_model_len, int) and max_model_len > 0):
                raise ValueError(f"LLM: max_model_len must be a positive int, got {max_model_len!r}")
            self.max_model_len = min(max_model_len or context, context) if self.config.position == "learned" \
                else (max_model_len or context)

    def __repr__(self) -> str:
        return f"LLM({self.loaded.name!r}, {self.loaded.kind}, format={self.loaded.format})"

    @property
    def model(self):
        return self.loaded.model

    # ------------------------------------------------------------------------------------------ prompts
    def _need(self, kind: str, what: str) -> None:
        if self.loaded.kind != kind:
            raise ValueError(f"LLM.{what} needs a {kind} model; {self.loaded.name!r} is a {self.loaded.kind} "
                             f"({'use embed()' if self.loaded.kind == 'encoder' else 'use generate()'})")

    def _prompt_ids(self, prompt, scoring: bool = False) -> tuple[str | None, list[int]]:
        """(text, token ids) of a prompt given as text, as token ids, or as {'prompt_token_ids': [...]}; it
        must leave room for a generated token within max_model_len (or, scoring, fit in it)."""
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            prompt = prompt["prompt_token_ids"]
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError(f"{self.loaded.name!r} has no tokenizer: pass prompts as token ids")
            ids = self.tokenizer.encode(prompt)
            text = prompt
        elif isinstance(prompt, (list, tuple, np.ndarray)) and all(isinstance(i, (int, np.integer)) for i in prompt):
            ids, text = [int(i) for i in prompt], None
        else:
            raise TypeError(f"a prompt must be a str, a list of token ids or {{'prompt_token_ids': [...]}}, got "
                            f"{type(prompt).__name__}")
        vocab = self.config.vocab_size
        if not ids:
            raise ValueError("a prompt must have at least one token (the empty text encodes to none here)")
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"prompt token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})")
        if scoring and len(ids) > self.max_model_len:
            raise ValueError(f"{len(ids)} tokens is more than max_model_len {self.max_model_len}")
        if not scoring and len(ids) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(ids)} tokens, but max_model_len is {self.max_model_len}: no room "
                             "for a generated token")
        return text, ids

    def _requests(self, prompts, sampling_params):
        if isinstance(prompts, (str, dict)) or (isinstance(prompts, (list, tuple)) and prompts
                                                 and isinstance(prompts[0], (int, np.integer))):
            prompts = [prompts]
        prompts = list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        params = list(sampling_params) if isinstance(sampling_params, (list, tuple)) \
            else [sampling_params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} SamplingParams (give one, or one per prompt)")
        for p in params:
            if not isinstance(p, SamplingParams):
                raise TypeError(f"sampling_params must be SamplingParams, got {type(p).__name__}")
            if p.prompt_logprobs is not None:
                raise ValueError("prompt_logprobs is computed by the serving engine (zigtensor.engine, zt serve); "
                                 "LLM's generate does not return it: LLM.score(token_ids) gives every position's "
                                 "logits")
        texts, ids = zip(*(self._prompt_ids(p) for p in prompts)) if prompts else ((), ())
        return list(texts), list(ids), params

    # ------------------------------------------------------------------------------------------ generation
    def generate(self, prompts, sampling_params: SamplingParams | Sequence[SamplingParams] | None = None
                 ) -> list[RequestOutput]:
        """Complete each prompt (text, token ids, or a list of either). One RequestOutput per prompt, in order."""
        self._need("decoder", "generate")
        texts, ids, params = self._requests(prompts, sampling_params)
        rows = self._rows(ids, params)
        metrics = GenerationMetrics()
        for _ in self._run(rows, metrics):
            pass
        outputs = []
        for r, (text, prompt_ids) in enumerate(zip(texts, ids)):
            mine = [row.completion() for row in rows if row.request == r]
            outputs.append(RequestOutput(request_id=str(r), prompt=text, prompt_token_ids=prompt_ids, outputs=mine,
                                         metrics=metrics))
        return outputs

    def generate_stream(self, prompt, sampling_params: SamplingParams | None = None) -> Iterator[StreamDelta]:
        """Complete one prompt, yielding each completion's text as it is produced (the CLI's path). The last
        delta of each completion carries its finish_reason; the very last one the run's metrics."""
        self._need("decoder", "generate_stream")
        _, ids, params = self._requests([prompt], sampling_params)
        rows = self._rows(ids, params)
        metrics = GenerationMetrics()
        for events in self._run(rows, metrics):
            for i, (row, text, token) in enumerate(events):
                last = i == len(events) - 1 and all(r.finish_reason for r in rows)
                yield StreamDelta(index=row.index, text=text, token_ids=[token] if token is not None else [],
                                  finish_reason=row.finish_reason, metrics=metrics if last else None)

    def chat(self, messages, sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
             add_generation_prompt: bool = True, **template_kwargs) -> list[RequestOutput]:
        """Generate replies to one conversation ([{'role', 'content'}, ...]) or a list of conversations, each
        rendered with the model's chat template."""
        self._need("decoder", "chat")
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.loaded.name!r} has no chat template; use generate() with a plain prompt")
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        return self.generate([self.chat_prompt_ids(c, add_generation_prompt, **template_kwargs)
                              for c in conversations], sampling_params)

    def chat_prompt_ids(self, messages, add_generation_prompt: bool = True, **template_kwargs) -> list[int]:
        """The token ids of a conversation rendered with the chat template (no bos added: the template has it)."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                  **template_kwargs)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _rows(self, prompt_ids: list[list[int]], params: list[SamplingParams]) -> list[_Row]:
        """One row per completion: the n completions of each prompt side by side."""
        return [_Row(r, i, ids, p, self.tokenizer) for r, (ids, p) in enumerate(zip(prompt_ids, params))
                for i in range(p.n)]

    @no_grad()
    def _run(self, rows: list[_Row], metrics: GenerationMetrics):
        """The generation loop over rows. Yields the events of the prefill, then of each decode step: (row, new
        text, new token id) of the rows that produced a token; metrics are updated as it goes."""
        if not rows:
            return
        model, tok = self.loaded.model, self.tokenizer
        budget = [self._max_new_tokens(row) for row in rows]
        steps = max(budget)
        max_len = max(len(r.prompt_ids) for r in rows) + steps
        cache = KVCache.for_model(model, batch=len(rows), max_len=max_len)
        eos = tok.eos_token_ids if tok is not None else set(self.config.eos_token_ids)

        start = time.perf_counter()
        last = []
        r = 0
        while r < len(rows):  # prefill each prompt once, into the rows of all its completions
            n = rows[r].params.n
            ids = rows[r].prompt_ids
            if n == 1:  # following single-completion prompts of the same length join it: one forward, not one each
                same = r + 1
                while same < len(rows) and rows[same].params.n == 1 and len(rows[same].prompt_ids) == len(ids):
                    same += 1
                if same > r + 1:
                    batch = [row.prompt_ids for row in rows[r:same]]
                    with self._step(len(batch) * len(ids)):
                        logits = model(token_tensor(batch, cache.device), cache=cache, rows=slice(r, same),
                                       last_only=True).numpy()
                    last += list(logits[:, -1])
                    metrics.prompt_tokens += len(batch) * len(ids)
                    r = same
                    continue
            with self._step(len(ids)):
                logits = model(token_tensor([ids], cache.device), cache=cache, rows=slice(r, r + 1), last_only=True)
            for j in range(1, n):  # siblings share the prompt: copy its keys and values
                for k, v in zip(cache.k, cache.v):
                    k[r + j, :, :len(ids)] = k[r, :, :len(ids)]
                    v[r + j, :, :len(ids)] = v[r, :, :len(ids)]
            cache.lengths[r:r + n] = len(ids)
            last += [logits.numpy()[0, -1]] * n
            metrics.prompt_tokens += len(ids)
            r += n
        events = self._sample(rows, np.stack(last), budget, eos, metrics)
        metrics.prefill_seconds = time.perf_counter() - start
        yield events

        start = time.perf_counter()
        for _ in range(steps - 1):
            if all(row.finish_reason for row in rows):
                break
            # NOTE: finished rows keep stepping (their token is ignored): the batch stays one contiguous slice
            # of the cache, and the cache was sized for every row to take all steps
            step = [[row.output_ids[-1]] for row in rows]
            with self._step(len(rows)):
                logits = model(token_tensor(step, cache.device), cache=cache).numpy()[:, -1]
            events = self._sample(rows, logits, budget, eos, metrics)
            metrics.decode_tokens += len(events)
            metrics.decode_seconds = time.perf_counter() - start
            yield events
        for row in rows:  # rows cut short by the step count (a context limit) end by length
            if row.finish_reason is None:
                row.finish_reason = "length"

    def _step(self, tokens: int):
        """Around a model step of `tokens` tokens: on CPU, the BLAS threads that time fastest (threads.py)."""
        if self.loaded.model.transformer.wte.weight.device.type != "cpu":
            return contextlib.nullcontext()
        return decode_threads.step(tokens)

    def _max_new_tokens(self, row: _Row) -> int:
        room = self.max_model_len - len(row.prompt_ids)
        return room if row.params.max_tokens is None else min(row.params.max_tokens, room)

    def _sample(self, rows, logits: np.ndarray, budget, eos, metrics) -> list:
        active = [i for i, row in enumerate(rows) if row.finish_reason is None]
        if not active:
            return []
        chosen = sample(logits[active], [rows[i].params for i in active], [rows[i].generator for i in active],
                        prompt_ids=[rows[i].prompt_ids for i in active],
                        output_ids=[rows[i].output_ids for i in active], eos_token_ids=sorted(eos))
        events = []
        for j, i in enumerate(active):
            row, token = rows[i], int(chosen.token_ids[j])
            row.output_ids.append(token)
            row.cumulative_logprob += float(chosen.logprobs[j])
            if row.logprobs is not None:
                row.logprobs.append(chosen.top_logprobs[j])
            metrics.generated_tokens += 1
            if is_stop_token(token, row.params, eos):  # (the sampler keeps them out until min_tokens)
                row.finish_reason, row.stop_reason = "stop", token
                text = self._finish_text(row)  # the stop token itself adds no text
            else:
                text = self._emit(row, row.decoder.feed(token) if row.decoder else "")
                if row.finish_reason is None and len(row.output_ids) >= budget[i]:
                    row.finish_reason = "length"
                    text += self._finish_text(row)
            events.append((row, text, token))
        return events

    def _emit(self, row: _Row, delta: str) -> str:
        if row.stops is None:
            row.text += delta
            return delta
        out = row.stops.feed(delta)
        row.text += out
        if row.stops.stopped:
            row.finish_reason, row.stop_reason = "stop", row.stops.matched
        return out

    def _finish_text(self, row: _Row) -> str:
        """What the detokenizer and the stop checker still hold when a row ends without a stop string."""
        out = self._emit(row, row.decoder.flush()) if row.decoder else ""
        if row.stops is not None and not row.stops.stopped:
            tail = row.stops.flush()
            row.text += tail
            out += tail
        return out

    # ------------------------------------------------------------------------------------------ scoring
    @no_grad()
    def score(self, token_ids) -> np.ndarray:
        """The logits float32 [len(token_ids), vocab] of a token sequence: row t scores the token after t."""
        self._need("decoder", "score")
        _, ids = self._prompt_ids(list(token_ids), scoring=True)
        with self._step(len(ids)):
            logits = self.loaded.model(token_tensor([ids], self.loaded.model.transformer.wte.weight.device))
        return logits.numpy()[0].astype(np.float32, copy=False)

    def embed(self, texts, batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings float32 [len(texts), hidden] of an encoder model (pooled, normalized as the model's
        sentence-transformers config says)."""
        self._need("encoder", "embed")
        return self.loaded.model.embed([texts] if isinstance(texts, str) else list(texts), batch_size=batch_size)

