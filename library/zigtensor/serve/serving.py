"""OpenAIServing: parsed OpenAI requests -> engine calls -> OpenAI responses (JSON bodies or server-sent events).

The engine interface used (AsyncLLMEngine, or AsyncEmbeddingEngine for encoders): `await engine.generate(prompt,
params, request_id)` -> an async iterator of RequestOutputs with deltas, `engine.abort(request_id)`,
`await engine.embed(texts)`, `engine.tokenizer`, `engine.model_name`, `engine.max_model_len`.

Every request the server starts is aborted when its client goes: a stream's generator is cancelled or closed by
Starlette when the client disconnects, and a non-streaming request polls `request.is_disconnected()` while it
waits; either way `merged` aborts what has not finished, so its KV blocks are freed within a step.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from ..llm.sampling import SamplingParams
from ..llm.tokenizer import TokenizerError, _bytes_to_unicode
from . import schemas as s
from .errors import APIError, bad_request, engine_errors, unavailable

logger = logging.getLogger("zigtensor.serve")

DONE = "data: [DONE]\n\n"
CLIENT_CLOSED = 499  # nginx's status for a request whose client went away (recorded in the metrics only)


@dataclass
class ServeConfig:
    """How the HTTP layer behaves (the engine has its own EngineConfig).

    Args:
        served_model_name: the model name clients must send (default: the engine's model_name).
        api_key: when set, every route but /health needs `Authorization: Bearer <api_key>`.
        max_body_bytes: larger request bodies get a 413 (read at most this much, plus a bounded drain).
        retry_after: seconds in the Retry-After header of a 429 (queue full).
        disconnect_poll_s: how often a waiting non-streaming request checks that its client is still there.
    """

    served_model_name: str | None = None
    api_key: str | None = None
    max_body_bytes: int = 4 << 20
    retry_after: int = 1
    disconnect_poll_s: float = 0.1

    def __post_init__(self):
        if self.api_key is not None and not self.api_key:
            raise ValueError("ServeConfig: api_key must be a non-empty string or None, got ''")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ValueError(f"ServeConfig: max_body_bytes must be an int >= 1024, got {self.max_body_bytes!r}")
        if not 0 < self.disconnect_poll_s <= 1:
            raise ValueError(f"ServeConfig: disconnect_poll_s must be in (0, 1], got {self.disconnect_poll_s!r}")


def sse(model) -> str:
    return f"data: {model.model_dump_json()}\n\n"


def json_response(model) -> Response:
    # NOTE: pydantic's JSON (not json.dumps) so that a -inf logprob is written as null instead of failing
    return Response(model.model_dump_json(), media_type="application/json")


async def merged(engine, streams) -> AsyncIterator[tuple[int, object]]:
    """(stream index, RequestOutput) from several request streams as they come. Leaving early (an error, a
    cancelled task, a closed generator) aborts every request that has not finished."""
    queue: asyncio.Queue = asyncio.Queue()
    finished = [False] * len(streams)

    async def pump(i, stream):
        try:
            async for out in stream:
                queue.put_nowait((i, out, None))
        except Exception as e:  # noqa: BLE001  (handed to the consumer, which raises it)
            queue.put_nowait((i, None, e))

    pumps = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    try:
        while not all(finished):
            i, out, error = await queue.get()
            if error is not None:
                finished[i] = True
                raise error
            if out.finished:
                finished[i] = True
            yield i, out
    finally:
        for task in pumps:
            task.cancel()
        for stream, done in zip(streams, finished):
            if not done:
                engine.abort(stream.request_id)


def failure(completion, draining: bool) -> APIError | None:
    """The error a completion that the engine ended abnormally stands for."""
    if completion.finish_reason == "error":
        return APIError(500, f"the model failed while generating: {completion.reason}", code="engine_error")
    if completion.finish_reason == "abort":
        why = "the server is shutting down" if draining else completion.reason
        return unavailable(f"the request was aborted before it finished: {why}")
    return None


class _Format:
    """What completions and chat share: the ids, names and token strings of one request's response."""

    def __init__(self, serving: OpenAIServing, request_id: str, n: int):
        self.serving = serving
        self.id = request_id
        self.n = n
        self.created = int(time.time())
        self.model = serving.model_name

    def choice_index(self, prompt_index: int, completion) -> int:
        return prompt_index * self.n + completion.index

    def token(self, token_id: int) -> str:
        """A token's text; one that holds only part of a UTF-8 character is spelled by its bytes, as OpenAI does
        ("bytes:\\xe6\\x97"), so that distinct tokens keep distinct names in top_logprobs."""
        raw = self.serving.token_bytes(token_id)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


class CompletionFormat(_Format):
    def __init__(self, serving, request_id, n, echo: bool = False):
        super().__init__(serving, request_id, n)
        self.echo = echo
        self.offsets: dict[int, int] = {}  # text offset of each choice's next logprob token
        self.echoed: set[int] = set()  # choices whose prompt a stream has sent

    def _prompt(self, out) -> tuple[str, list | None]:
        """An echoed prompt: its text, and (token id, logprob, top) per token when prompt logprobs were computed
        (the first token's logprob and top are None: nothing comes before it)."""
        text = out.prompt if out.prompt is not None else self.serving.tokenizer.decode(out.prompt_token_ids)
        if out.prompt_logprobs is None:
            return text, None
        entries = [(out.prompt_token_ids[0], None, None)]
        entries += [(e.token_id, e.logprob, e.top) for e in out.prompt_logprobs[1:]]
        return text, entries

    def logprobs(self, index: int, entries, prefix: list | None = None) -> s.CompletionLogprobs | None:
        """The logprobs of a choice's tokens (entries: TokenLogprob), after the echoed prompt's (prefix)."""
        if entries is None:
            return None
        rows = (prefix or []) + [(e.token_id, e.logprob, e.top) for e in entries]
        tokens = [self.token(t) for t, _, _ in rows]
        start = self.offsets.get(index, 0)
        offsets = np.cumsum([start] + [len(t) for t in tokens]).tolist()
        self.offsets[index] = offsets[-1]
        return s.CompletionLogprobs(tokens=tokens, token_logprobs=[lp for _, lp, _ in rows],
                                    top_logprobs=[None if top is None else {self.token(t): lp for t, lp in top}
                                                  for _, _, top in rows],
                                    text_offset=offsets[:-1])

    def chunk(self, index: int, c, out=None) -> str | None:
        prefix_text, prefix = "", None
        if self.echo and index not in self.echoed and out is not None:
            self.echoed.add(index)
            prefix_text, prefix = self._prompt(out)
        if not (prefix_text or c.delta_text or c.finish_reason or c.delta_logprobs):
            return None
        choice = s.CompletionChoice(index=index, text=prefix_text + c.delta_text,
                                    logprobs=self.logprobs(index, c.delta_logprobs, prefix),
                                    finish_reason=c.finish_reason)
        return sse(s.CompletionResponse(id=self.id, created=self.created, model=self.model, choices=[choice]))

    def opening(self, num_prompts: int) -> list[str]:
        return []

    def usage_chunk(self, usage: s.Usage) -> str:
        return sse(s.CompletionResponse(id=self.id, created=self.created, model=self.model, choices=[], usage=usage))

    def response(self, finals, usage: s.Usage) -> s.CompletionResponse:
        choices = []
        for i, out in enumerate(finals):
            prefix_text, prefix = self._prompt(out) if self.echo else ("", None)
            choices += [s.CompletionChoice(index=self.choice_index(i, c), text=prefix_text + c.text,
                                           logprobs=self.logprobs(self.choice_index(i, c), c.logprobs, prefix),
                                           finish_reason=c.finish_reason) for c in out.outputs]
        return s.CompletionResponse(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)


class ChatFormat(_Format):
    def logprobs(self, entries) -> s.ChatLogprobs | None:
        if entries is None:
            return None

        def top(token_id, logprob):
            return s.TopLogprob(token=self.token(token_id), logprob=logprob,
                                bytes=list(self.serving.token_bytes(token_id)))

        return s.ChatLogprobs(content=[s.TokenLogprobEntry(**top(e.token_id, e.logprob).model_dump(),
                                                           top_logprobs=[top(t, lp) for t, lp in e.top])
                                       for e in entries])

    def _chunk(self, choices, usage=None) -> str:
        return sse(s.ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices,
                                         usage=usage))

    def opening(self, num_prompts: int) -> list[str]:
        """The first chunk of each choice announces the assistant's role (as OpenAI's stream does)."""
        return [self._chunk([s.ChatChunkChoice(index=i, delta=s.ChatDelta(role="assistant", content=""))])
                for i in range(num_prompts * self.n)]

    def chunk(self, index: int, c, out=None) -> str | None:
        if not (c.delta_text or c.finish_reason or c.delta_logprobs):
            return None
        delta = s.ChatDelta(content=c.delta_text) if c.delta_text or not c.finish_reason else s.ChatDelta()
        return self._chunk([s.ChatChunkChoice(index=index, delta=delta, logprobs=self.logprobs(c.delta_logprobs),
                                              finish_reason=c.finish_reason)])

    def usage_chunk(self, usage: s.Usage) -> str:
        return self._chunk([], usage)

    def response(self, finals, usage: s.Usage) -> s.ChatCompletionResponse:
        choices = [s.ChatChoice(index=self.choice_index(i, c), message=s.ChatMessageOut(content=c.text),
                                logprobs=self.logprobs(c.logprobs), finish_reason=c.finish_reason)
                   for i, out in enumerate(finals) for c in out.outputs]
        return s.ChatCompletionResponse(id=self.id, created=self.created, model=self.model, choices=choices,
                                        usage=usage)


_BYTE_OF_CHAR = {c: b for b, c in _bytes_to_unicode().items()}


def _token_bytes(tokenizer, token_id: int) -> bytes:
    if tokenizer is None:
        return b""
    text = tokenizer.decode([token_id], skip_special_tokens=False)
    if "\ufffd" not in text:
        return text.encode()
    piece = tokenizer.id_to_token(token_id) or ""
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):  # SentencePiece's byte fallback
        return bytes([int(piece[3:5], 16)])
    if piece and all(c in _BYTE_OF_CHAR for c in piece):  # byte-level BPE spells bytes as printable characters
        return bytes(_BYTE_OF_CHAR[c] for c in piece)
    return text.encode()


def usage_of(finals) -> s.Usage:
    prompt = sum(len(out.prompt_token_ids) for out in finals)
    completion = sum(len(c.token_ids) for out in finals for c in out.outputs)
    return s.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class OpenAIServing:
    """The OpenAI API over one engine. Routes parse the body and call these methods; they return Responses."""

    def __init__(self, engine, config: ServeConfig):
        self.engine = engine
        self.config = config
        self.model_name = config.served_model_name or engine.model_name
        self.tokenizer = engine.tokenizer
        self.created = int(time.time())
        self._token_bytes: dict[int, bytes] = {}
        self.draining = False  # set when the server shuts down (the reason given for aborted requests)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (a byte-level BPE or byte-fallback token may be part of a character)."""
        raw = self._token_bytes.get(token_id)
        if raw is None:
            raw = self._token_bytes[token_id] = _token_bytes(self.tokenizer, token_id)
        return raw

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise APIError(404, f"model {name!r} does not exist: this server serves {self.model_name!r} (see "
                                "GET /v1/models)", "model", "model_not_found")

    def model_card(self) -> s.ModelCard:
        return s.ModelCard(id=self.model_name, created=self.created, root=self.engine.model_name,
                           max_model_len=self.engine.max_model_len)

    # --- generation -----------------------------------------------------------------------------------
    def sampling_params(self, req, max_tokens: int | None, logprobs: int | None,
                        prompt_logprobs: int | None = None) -> SamplingParams:
        try:
            return SamplingParams(
                n=req.n, max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
                min_p=req.min_p, repetition_penalty=req.repetition_penalty, presence_penalty=req.presence_penalty,
                frequency_penalty=req.frequency_penalty, seed=req.seed, stop=req.stop_list(),
                stop_token_ids=req.stop_token_ids, ignore_eos=req.ignore_eos, logprobs=logprobs,
                min_tokens=req.min_tokens, skip_special_tokens=req.skip_special_tokens,
                logit_bias=req.logit_bias_ids(), prompt_logprobs=prompt_logprobs)
        except ValueError as e:  # a combination pydantic cannot see (min_tokens over max_tokens)
            field = str(e).split(" ", 1)[0]
            raise bad_request(str(e), field if field in type(req).model_fields else None) from None

    async def start(self, prompts: list, params: SamplingParams, request_id: str, prompt_param: str) -> list:
        """One engine request per prompt; if one is refused, those already queued are aborted."""
        streams = []
        try:
            with engine_errors(prompt_param, self.config.retry_after):
                for i, prompt in enumerate(prompts):
                    streams.append(await self.engine.generate(prompt, params, request_id=f"{request_id}-{i}"))
        except BaseException:
            for stream in streams:
                self.engine.abort(stream.request_id)
            raise
        return streams

    async def completions(self, req: s.CompletionRequest, request: Request) -> Response:
        self.check_model(req.model)
        params = self.sampling_params(req, req.max_tokens, req.logprobs, req.logprobs if req.echo else None)
        request_id = f"cmpl-{uuid.uuid4().hex}"
        streams = await self.start(req.prompt, params, request_id, "prompt")
        return await self.respond(streams, CompletionFormat(self, request_id, req.n, req.echo), req, request)

    def chat_prompt(self, req: s.ChatCompletionRequest | s.TokenizeRequest, add_generation_prompt: bool = True,
                    template_kwargs: dict | None = None) -> list[int]:
        """The token ids of the conversation rendered with the model's chat template (no BOS added: the template
        has it, as zigtensor.llm.LLM.chat_prompt_ids does)."""
        if self.tokenizer is None:
            raise bad_request(f"model {self.model_name!r} has no tokenizer, so no chat template", "messages")
        messages = [m.for_template() for m in req.messages]
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                      **(template_kwargs or {}))
        except (TokenizerError, TypeError) as e:
            raise bad_request(str(e), "messages") from None
        return self.tokenizer.encode(text, add_special_tokens=False)

    async def chat(self, req: s.ChatCompletionRequest, request: Request) -> Response:
        self.check_model(req.model)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        params = self.sampling_params(req, req.output_limit(), logprobs)
        prompt = self.chat_prompt(req, template_kwargs=req.chat_template_kwargs)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        streams = await self.start([prompt], params, request_id, "messages")
        return await self.respond(streams, ChatFormat(self, request_id, req.n), req, request)

    async def respond(self, streams: list, fmt, req, request: Request) -> Response:
        if req.stream:
            include_usage = req.stream_options is not None and req.stream_options.include_usage
            return StreamingResponse(self.events(streams, fmt, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finals = await self.collect(streams, request)
        if finals is None:
            return Response(status_code=CLIENT_CLOSED)
        for out in finals:
            for c in out.outputs:
                error = failure(c, self.draining)
                if error is not None:
                    raise error
        return json_response(fmt.response(finals, usage_of(finals)))

    async def events(self, streams: list, fmt, include_usage: bool) -> AsyncIterator[str]:
        """The server-sent events of a streamed response; a failure sends an error event, then [DONE]."""
        finals = [None] * len(streams)
        try:
            for line in fmt.opening(len(streams)):
                yield line
            with engine_errors():
                async with contextlib.aclosing(merged(self.engine, streams)) as outputs:
                    async for i, out in outputs:
                        for c in out.outputs:
                            error = failure(c, self.draining)
                            if error is not None:
                                raise error
                            line = fmt.chunk(fmt.choice_index(i, c), c, out)
                            if line is not None:
                                yield line
                        if out.finished:
                            finals[i] = out
            if include_usage:
                yield fmt.usage_chunk(usage_of(finals))
        except APIError as e:
            yield e.sse_event()
        except Exception as e:  # noqa: BLE001  (the stream has started: report in-band, never hang the client)
            logger.exception("stream %s failed", fmt.id)
            yield APIError(500, f"internal server error: {type(e).__name__}: {e}", code="internal_error").sse_event()
        yield DONE

    async def collect(self, streams: list, request: Request) -> list | None:
        """The final output of each stream; None if the client disconnected first (its requests are aborted)."""
        finals = [None] * len(streams)

        async def consume():
            async with contextlib.aclosing(merged(self.engine, streams)) as outputs:
                async for i, out in outputs:
                    if out.finished:
                        finals[i] = out

        task = asyncio.ensure_future(consume())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.config.disconnect_poll_s)
                if not task.done() and await request.is_disconnected():
                    return None
            with engine_errors():
                task.result()
            return finals
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- embeddings and tokens ------------------------------------------------------------------------
    async def embeddings(self, req: s.EmbeddingRequest) -> Response:
        self.check_model(req.model)
        with engine_errors("input", self.config.retry_after):
            vectors = np.asarray(await self.engine.embed(req.input), dtype=np.float32)
        if req.dimensions is not None and req.dimensions != vectors.shape[1]:
            raise bad_request(f"dimensions {req.dimensions} is not supported: {self.model_name!r} makes "
                              f"{vectors.shape[1]}-dimensional embeddings (leave dimensions out)", "dimensions")
        if req.encoding_format == "base64":
            data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            data = [v.tolist() for v in vectors]
        count = getattr(self.engine, "count_tokens", None)
        tokens = count(req.input) if count is not None else sum(len(self.tokenizer.encode(t)) for t in req.input)
        body = s.EmbeddingResponse(data=[s.Embedding(index=i, embedding=e) for i, e in enumerate(data)],
                                   model=self.model_name, usage=s.Usage(prompt_tokens=tokens, total_tokens=tokens))
        return json_response(body)

    def tokenize(self, req: s.TokenizeRequest) -> dict:
        self.check_model(req.model)
        if self.tokenizer is None:
            raise bad_request(f"model {self.model_name!r} has no tokenizer")
        if req.messages is not None:
            tokens = self.chat_prompt(req, add_generation_prompt=req.add_generation_prompt)
        else:
            tokens = self.tokenizer.encode(req.prompt, add_special_tokens=req.add_special_tokens)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": self.engine.max_model_len}

    def detokenize(self, req: s.DetokenizeRequest) -> dict:
        self.check_model(req.model)
        if self.tokenizer is None:
            raise bad_request(f"model {self.model_name!r} has no tokenizer")
        vocab = self.tokenizer.vocab_size
        bad = next((i for i, t in enumerate(req.tokens) if t >= vocab), None)
        if bad is not None:
            raise bad_request(f"tokens[{bad}] = {req.tokens[bad]} is outside the vocabulary [0, {vocab})",
                              f"tokens[{bad}]")
        return {"prompt": self.tokenizer.decode(req.tokens)}
