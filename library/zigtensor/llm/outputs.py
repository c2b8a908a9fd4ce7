"""What LLM.generate returns, in vLLM's shape: a RequestOutput per prompt holding a CompletionOutput per
completion (SamplingParams.n), and the timing of the run.

>>> out = llm.generate(["Hello"], SamplingParams(max_tokens=8))[0]
>>> out.outputs[0].text == out.text, out.finish_reason
(True, 'length')
"""

from __future__ import annotations

from dataclasses import dataclass, field

FINISH_REASONS = ("stop", "length")  # stop: eos, a stop token or a stop string; length: max_tokens or the context


@dataclass
class CompletionOutput:
    """One completion: its text (stop string and special tokens left out), its token ids (an ending eos or
    stop token included, as transformers' generate returns it) and why it ended."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: int | str | None = None  # the stop token id or stop string that ended it
    cumulative_logprob: float | None = None  # sum of the chosen tokens' log-probabilities
    logprobs: list[list[tuple[int, float]]] | None = None  # per token, the top `logprobs` (id, log-probability)


@dataclass
class GenerationMetrics:
    """Where the time of a generate call went (seconds, perf_counter)."""

    prompt_tokens: int = 0  # tokens read in prefill, over all rows
    prefill_seconds: float = 0.0
    generated_tokens: int = 0  # tokens sampled, over all rows (the first of each row comes with the prefill)
    decode_tokens: int = 0  # tokens sampled by the decode steps
    decode_seconds: float = 0.0  # the decode steps

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens per second of the decode steps, over all rows (the prefill's first tokens left out)."""
        return self.decode_tokens / self.decode_seconds if self.decode_seconds else 0.0


@dataclass
class RequestOutput:
    """The result for one prompt. .text, .token_ids and .finish_reason are those of the first completion."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True
    metrics: GenerationMetrics = field(default_factory=GenerationMetrics)

    @property
    def text(self) -> str:
        return self.outputs[0].text

    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids

    @property
    def finish_reason(self) -> str | None:
        return self.outputs[0].finish_reason


@dataclass
class StreamDelta:
    """One piece of a streamed completion: new text (may be '' while a character or a possible stop string is
    held back), the new token id, and on the last piece the finish reason and the run's metrics."""

    index: int  # the completion
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    metrics: GenerationMetrics | None = None
