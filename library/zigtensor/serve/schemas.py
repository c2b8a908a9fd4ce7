"""The OpenAI request and response bodies, as pydantic models (requests are validated, responses serialized).

Requests are parsed from the raw body with `parse(Model, body)`: strict JSON types (no "0.5" strings for
numbers, no NaN/Infinity), and every bad value becomes a 400 whose `param` names the field.

Unknown fields are REJECTED with a 400 (code "unknown_field"), so a misspelled parameter (`temprature`) never
silently changes nothing. Fields of OpenAI's API that do not change the output here are accepted and ignored
(`user`, `metadata`, `store`, `service_tier`, `parallel_tool_calls`); fields whose behaviour this server does
not implement are accepted only with their neutral value and refused otherwise (`suffix`, `best_of`, `tools`,
`tool_choice`, `response_format` other than text, `dimensions`). Completions' `echo` returns the prompt before
each completion, with the prompt tokens' log-probabilities when `logprobs` is set (what evaluation harnesses
score likelihoods with).

Ranges: temperature [0, 2], top_p (0, 1], n [1, 128] (and at most the server's --max-num-seqs), max_tokens >= 1
(and prompt + max_tokens within the context), presence/frequency_penalty [-2, 2], logprobs [0, 20],
top_logprobs [0, 20], seed >= 0, stop strings non-empty, logit_bias {"token id": bias in [-100, 100]} (ids
within the vocabulary, checked by the engine). vLLM's extensions are accepted too: top_k, min_p,
repetition_penalty, min_tokens, ignore_eos, stop_token_ids, skip_special_tokens (and chat_template_kwargs).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import from_validation

MAX_LOGPROBS = 20
IGNORED_FIELDS = "user", "metadata", "store", "service_tier", "parallel_tool_calls"


def parse(model: type[BaseModel], body: bytes) -> BaseModel:
    """Validate a JSON request body; an APIError 400 naming the field when it is not acceptable."""
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise from_validation(e) from None


def _neutral(name: str, neutral_ok):
    """A validator that refuses a field unless its value is neutral (what the server does anyway)."""

    def check(cls, value):
        if not neutral_ok(value):
            raise ValueError("not supported by this server")
        return value

    return field_validator(name)(check)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(_Request):
    include_usage: bool = False


NonNegativeInt = Annotated[int, Field(ge=0)]


class _SamplingRequest(_Request):
    """Fields shared by completions and chat completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    # accepted and ignored (see the module docstring)
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # vLLM's extensions
    top_k: int = Field(0, ge=-1)
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[NonNegativeInt] | None = None
    skip_special_tokens: bool = True

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, value):
        for key, bias in (value or {}).items():
            if not (key.isascii() and key.isdigit()):
                raise ValueError(f"keys must be token ids (non-negative integers as strings), got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be in [-100, 100], got {bias} for token {key}")
        return value

    def logit_bias_ids(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value):
        strings = [value] if isinstance(value, str) else (value or [])
        for i, s in enumerate(strings):
            if not s:
                raise ValueError(f"stop strings must be non-empty (stop[{i}] is empty)")
        return value

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value, info):
        if value is not None and not info.data.get("stream"):
            raise ValueError("only allowed with stream: true")
        return value

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_SamplingRequest):
    """POST /v1/completions. `prompt` is a string, a list of strings, a list of token ids, or a list of those;
    each prompt gets `n` choices, numbered prompt_index * n + i."""

    prompt: Any
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    check_suffix = _neutral("suffix", lambda v: v is None)

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, value, info):
        if value is not None and value != info.data.get("n", 1):
            raise ValueError("other values than n are not supported by this server")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value):
        """Normalize to a list of prompts, each a string or a list of token ids."""
        def is_id(t):
            return isinstance(t, int) and not isinstance(t, bool)

        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value:
            if all(isinstance(p, str) for p in value):
                return value
            if all(is_id(t) for t in value):
                return [value]
            if all(isinstance(p, list) and p and all(is_id(t) for t in p) for p in value):
                return value
        raise ValueError("prompt must be a string, a non-empty list of strings, a non-empty list of token ids, "
                         "or a list of non-empty token-id lists")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message; keys beyond role/content/name (tool_calls, ...) are passed to the chat template as they are."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, value):
        if isinstance(value, list):
            for i, part in enumerate(value):
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError(f"content[{i}] must be {{'type': 'text', 'text': str}}: this server reads "
                                     "text only")
        return value

    def for_template(self) -> dict:
        """The message as chat templates expect it: content as one string (text parts joined by newlines)."""
        message = self.model_dump(exclude_none=True)
        if isinstance(self.content, list):
            message["content"] = "\n".join(part["text"] for part in self.content)
        return message


class ChatCompletionRequest(_SamplingRequest):
    """POST /v1/chat/completions: `messages` rendered with the model's chat template."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict | None = None
    chat_template_kwargs: dict[str, Any] | None = None  # vLLM's: more variables for the template

    check_tools = _neutral("tools", lambda v: not v)
    check_tool_choice = _neutral("tool_choice", lambda v: v in (None, "none"))
    check_response_format = _neutral("response_format", lambda v: v is None or v == {"type": "text"})

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, value, info):
        if value and not info.data.get("logprobs"):
            raise ValueError("needs logprobs: true")
        return value

    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class EmbeddingRequest(_Request):
    """POST /v1/embeddings: `input` is a string or a non-empty list of non-empty strings."""

    model: str
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError("input must be a string or a non-empty list of strings")
        for i, text in enumerate(value):
            if not isinstance(text, str):
                raise ValueError(f"input[{i}] must be a string (token-id input is not supported: send text)")
            if not text:
                raise ValueError(f"input[{i}] is empty: each input must have some text")
        return value


class TokenizeRequest(_Request):
    """POST /tokenize: a `prompt`, or chat `messages` rendered with the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _one_source(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class DetokenizeRequest(_Request):
    """POST /detokenize: token ids back to text."""

    model: str | None = None
    tokens: list[NonNegativeInt]


# ------------------------------------------------------------------------------------------ responses
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]  # None: an echoed prompt's first token, which has no context
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class CompletionResponse(BaseModel):
    """The body of a completion, and of each streamed chunk (chunks carry only the new text)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobEntry]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "zigtensor"
    root: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

