"""What flows through the engine: a Request in, its Sequences inside, RequestOutputs out.

A request asks for `params.n` completions. It starts as one sequence that computes the prompt; once the prompt's
logits exist, the engine forks it into n sibling sequences that share the prompt's KV blocks. Each sequence
carries its tokens (prompt then output), how many of them are in the KV cache (`num_computed_tokens`), and its
own sampling generator, so preempting it (dropping its cache) and recomputing later gives the same tokens.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

FINISH_REASONS = ("stop", "length", "abort", "error")


class RequestError(ValueError):
    """A request the engine refuses: the message names the field, the bad value and the allowed range."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class QueueFullError(RuntimeError):
    """The waiting queue holds max_queue requests already; retry later."""


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # not in the KV cache (new, or preempted and waiting to recompute)
    RUNNING = "running"  # holds KV blocks and is scheduled each step
    FINISHED = "finished"


@dataclass
class Request:
    """One user request: prompt token ids and sampling parameters (zigtensor.llm.SamplingParams)."""

    request_id: str
    prompt_token_ids: list[int]
    params: object
    arrival_time: float = field(default_factory=time.monotonic)
    prompt: str | None = None


@dataclass
class TokenLogprob:
    """The log-probability of a chosen token, and the `logprobs` most likely tokens (id, logprob) at that step."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


class Sequence:
    """One completion in progress: tokens, cache progress, status and the state that produces its text."""

    __slots__ = ("seq_id", "request", "index", "token_ids", "num_prompt_tokens", "num_computed_tokens", "status",
                 "priority", "max_tokens", "fork_into", "finish_reason", "finish_message", "stop_reason",
                 "logprobs", "cumulative_logprob", "generator", "decoder", "stop_checker", "text", "num_preemptions",
                 "emitted_tokens", "emitted_text", "first_token_time", "last_token_time")

    def __init__(self, seq_id: int, request: Request, index: int, token_ids: list[int], priority: tuple,
                 max_tokens: int, fork_into: int = 1):
        self.seq_id = seq_id
        self.request = request
        self.index = index
        self.token_ids = token_ids
        self.num_prompt_tokens = len(request.prompt_token_ids)
        self.num_computed_tokens = 0
        self.status = SequenceStatus.WAITING
        self.priority = priority  # (arrival order, completion index): smaller runs first, larger is preempted first
        self.max_tokens = max_tokens  # output tokens at most
        self.fork_into = fork_into  # sequences this one becomes once its prompt is computed (n; 1 after the fork)
        self.finish_reason: str | None = None
        self.finish_message = ""
        self.stop_reason: int | str | None = None  # the stop token id or stop string that ended it
        self.logprobs: list[TokenLogprob] | None = None
        self.cumulative_logprob = 0.0
        self.generator = None
        self.decoder = None
        self.stop_checker = None
        self.text = ""
        self.num_preemptions = 0
        self.emitted_tokens = 0  # what the last RequestOutput already carried, for deltas
        self.emitted_text = 0
        self.first_token_time: float | None = None
        self.last_token_time: float | None = None

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, request={self.request.request_id!r}, index={self.index}, "
                f"tokens={len(self.token_ids)}, computed={self.num_computed_tokens}, status={self.status.value})")


@dataclass
class RequestMetrics:
    """Timestamps (time.monotonic seconds) of a request's life, for TTFT and inter-token latency."""

    arrival_time: float
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finished_time: float | None = None
    num_preemptions: int = 0


@dataclass
class CompletionOutput:
    """One of the n completions of a request: everything so far, and the delta since the previous output.

    finish_reason: None while running, else "stop" (EOS, a stop token or a stop string), "length" (max_tokens
    or the context limit), "abort" (aborted by the caller) or "error" (`reason` says why).
    """

    index: int
    text: str
    token_ids: list[int]
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    delta_logprobs: list[TokenLogprob] | None = None
    cumulative_logprob: float | None = None
    finish_reason: str | None = None
    reason: str = ""
    stop_reason: int | str | None = None  # the stop token id or stop string that ended it, if any

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """The state of a request after an engine step: one CompletionOutput per completion, in index order."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    metrics: RequestMetrics | None = None
    # with SamplingParams.prompt_logprobs: per prompt token, its log-probability given the tokens before it (None
    # for the first token, which has nothing before it); filled as the prompt is computed
    prompt_logprobs: list[TokenLogprob | None] | None = None

    @property
    def num_generated_tokens(self) -> int:
        return sum(len(o.token_ids) for o in self.outputs)


class RequestState:
    """The engine's record of a live request: its sequences (one, then n after the fork) and metrics."""

    __slots__ = ("request", "sequences", "metrics", "forked", "finished_reported", "order", "prompt_logprobs")

    def __init__(self, request: Request, first: Sequence, order: int):
        self.request = request
        wanted = getattr(request.params, "prompt_logprobs", None) is not None
        self.prompt_logprobs: list[TokenLogprob | None] | None = [None] if wanted else None
        self.sequences: list[Sequence] = [first]
        self.metrics = RequestMetrics(arrival_time=request.arrival_time)
        self.forked = request.params.n == 1
        self.finished_reported = False
        self.order = order

    @property
    def finished(self) -> bool:
        return all(s.is_finished for s in self.sequences)

    def __repr__(self) -> str:
        return (f"RequestState(id={self.request.request_id!r}, sequences={len(self.sequences)}, "
                f"finished={self.finished})")
