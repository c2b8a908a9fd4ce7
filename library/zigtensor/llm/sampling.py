"""Sampling: vLLM's SamplingParams, the logits pipeline that turns a row of logits into a token, and stop strings.

    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=64, seed=0, stop=["\\n\\n"])
    out = sample(logits, [params], [make_generator(params.seed)], prompt_ids=[prompt], output_ids=[generated])
    out.token_ids[0], out.logprobs[0]

The pipeline, per row, on float32 logits [batch, vocab]:
  0. logit_bias: each listed token's bias added to its logit (OpenAI's logit_bias: -100 bans a token, 100 all
     but forces it), before anything else reads the row.
  1. penalties: repetition over prompt + output tokens (logit / p when positive, * p when negative, as HF and
     vLLM define it); frequency and presence over output tokens (logit -= f * count + p * (count > 0), OpenAI's
     definition); then min_tokens masks the end-of-sequence tokens while the output is shorter than min_tokens.
  2. temperature 0 (below 1e-5, as vLLM): greedy, the argmax of the penalized logits.
  3. otherwise: divide by temperature, keep the top-k, then the top-p nucleus, then tokens with probability at
     least min_p times the most likely one's (the order of transformers' generate), and draw one token from the
     softmax with the row's own np.random.Generator.
Each row draws exactly one uniform number per step from its own generator, so a seeded request gives the same
tokens alone or in any batch. The returned logprobs are those of the model's raw distribution (log_softmax of the
logits as given, before penalties and filters), as vLLM returns by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

GREEDY_EPS = 1e-5  # temperatures below this sample greedily (vLLM's _SAMPLING_EPS)


@dataclass
class SamplingParams:
    """How to sample one request (vLLM's names and defaults).

    Args:
        n: completions per prompt.
        max_tokens: tokens to generate at most (None: until the context is full).
        temperature: 0 is greedy; higher flattens the distribution.
        top_p: keep the smallest set of most likely tokens whose probability reaches top_p (1 = off).
        top_k: keep the k most likely tokens (0 or -1 = off).
        min_p: keep tokens with probability >= min_p * the top token's (0 = off).
        repetition_penalty: > 1 discourages tokens already in the prompt or output (1 = off).
        presence_penalty: subtracted once from tokens already in the output, in [-2, 2].
        frequency_penalty: subtracted per occurrence in the output, in [-2, 2].
        seed: makes this request's sampling reproducible, alone or batched.
        stop: strings that end the output (not included in it).
        stop_token_ids: token ids that end the output.
        ignore_eos: keep generating after the end-of-sequence token.
        logprobs: also return the log-probabilities of this many most likely tokens per step.
        min_tokens: generate at least this many tokens before eos or stop_token_ids may end the output.
        skip_special_tokens: leave special tokens out of the output text.
        logit_bias: {token id: bias in [-100, 100]} added to those tokens' logits before sampling.
        prompt_logprobs: also return each prompt token's log-probability given the tokens before it, with this
            many most likely tokens at each position (0: the prompt token's alone; the engine only).
    """

    n: int = 1
    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    logprobs: int | None = None
    min_tokens: int = 0
    skip_special_tokens: bool = True
    logit_bias: dict[int, float] | None = None
    prompt_logprobs: int | None = None

    def __post_init__(self):
        def need(ok: bool, what: str, value) -> None:
            if not ok:
                raise ValueError(f"{what}, got {value!r}")

        def number(name: str) -> float:
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value),
                 f"{name} must be a finite number", value)
            return float(value)

        def integer(name: str, allow_none: bool = False) -> int | None:
            value = getattr(self, name)
            if allow_none and value is None:
                return None
            need(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
                 f"{name} must be an integer" + (" or None" if allow_none else ""), value)
            return int(value)

        need(integer("n") >= 1, "n must be at least 1", self.n)
        max_tokens = integer("max_tokens", allow_none=True)
        need(max_tokens is None or max_tokens >= 1, "max_tokens must be at least 1 (or None)", self.max_tokens)
        need(number("temperature") >= 0, "temperature must be >= 0 (0 is greedy)", self.temperature)
        need(0 < number("top_p") <= 1, "top_p must be in (0, 1]", self.top_p)
        need(integer("top_k") >= -1, "top_k must be 0 or -1 (off) or at least 1", self.top_k)
        need(0 <= number("min_p") <= 1, "min_p must be in [0, 1]", self.min_p)
        need(number("repetition_penalty") > 0, "repetition_penalty must be > 0 (1 is off)", self.repetition_penalty)
        need(-2 <= number("presence_penalty") <= 2, "presence_penalty must be in [-2, 2]", self.presence_penalty)
        need(-2 <= number("frequency_penalty") <= 2, "frequency_penalty must be in [-2, 2]", self.frequency_penalty)
        need(integer("seed", allow_none=True) is None or self.seed >= 0, "seed must be a non-negative integer",
             self.seed)
        need(integer("logprobs", allow_none=True) is None or self.logprobs >= 0, "logprobs must be >= 0 (or None)",
             self.logprobs)
        need(integer("min_tokens") >= 0, "min_tokens must be >= 0", self.min_tokens)
        need(integer("prompt_logprobs", allow_none=True) is None or self.prompt_logprobs >= 0,
             "prompt_logprobs must be >= 0 (or None)", self.prompt_logprobs)
        need(max_tokens is None or self.min_tokens <= max_tokens, f"min_tokens must be <= max_tokens "
             f"({max_tokens})", self.min_tokens)
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        elif self.stop is None:
            self.stop = []
        else:
            need(isinstance(self.stop, (list, tuple)) and all(isinstance(s, str) for s in self.stop),
                 "stop must be a string or a list of strings", self.stop)
            self.stop = list(self.stop)
        need(all(self.stop), "stop strings must not be empty", self.stop)
        if self.stop_token_ids is None:
            self.stop_token_ids = []
        else:
            need(isinstance(self.stop_token_ids, (list, tuple)) and all(
                isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t >= 0 for t in self.stop_token_ids),
                "stop_token_ids must be a list of non-negative integers", self.stop_token_ids)
            self.stop_token_ids = [int(t) for t in self.stop_token_ids]
        bias = {} if self.logit_bias is None else self.logit_bias
        need(isinstance(bias, dict) and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t >= 0
                                            for t in bias),
             "logit_bias must map non-negative integer token ids to numbers", self.logit_bias)
        need(all(isinstance(v, (int, float)) and not isinstance(v, bool) and -100 <= v <= 100 for v in bias.values()),
             "logit_bias values must be numbers in [-100, 100]", self.logit_bias)
        self.logit_bias = {int(t): float(v) for t, v in bias.items()}

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_EPS


def make_generator(seed: int | None, index: int = 0) -> np.random.Generator:
    """The random stream of a request (completion `index` of its n): seeded streams are reproducible.

    Without a seed, fresh OS entropy. Completion 0 uses `seed` itself, so n=1 and the first of n agree.
    """
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(seed if index == 0 else [seed, index])


# ------------------------------------------------------------------------------------------- filters
# Each takes float32 logits [batch, vocab] (or [vocab]) and returns a new array with filtered tokens at -inf.
def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def most_likely(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely (token id, log-probability) of one row of log-probabilities, most likely first."""
    k = min(k, logprobs.shape[-1])
    if k <= 0:
        return []
    best = np.argpartition(-logprobs, k - 1)[:k]
    best = best[np.argsort(-logprobs[best], kind="stable")]
    return [(int(t), float(logprobs[t])) for t in best]


def apply_logit_bias(logits: np.ndarray, bias: dict[int, float]) -> np.ndarray:
    """logits [rows, vocab] with bias[t] added to column t (a new array); ValueError for an id outside the vocab."""
    ids = np.fromiter(bias, dtype=np.int64, count=len(bias))
    outside = ids[ids >= logits.shape[-1]]
    if outside.size:
        raise ValueError(f"logit_bias names token id {int(outside[0])}, outside the vocabulary "
                         f"[0, {logits.shape[-1]})")
    out = logits.copy()
    out[:, ids] += np.fromiter(bias.values(), dtype=np.float32, count=len(bias))
    return out


def apply_repetition_penalty(logits: np.ndarray, seen_ids: Sequence[Sequence[int]], penalty: float) -> np.ndarray:
    """Each row's tokens in `seen_ids` (prompt + output): logit / penalty when positive, * penalty otherwise."""
    out = np.array(logits, dtype=np.float32, copy=True)
    if penalty == 1.0:
        return out
    for row, ids in zip(out.reshape(-1, out.shape[-1]), seen_ids):
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if ids.size:
            x = row[ids]
            row[ids] = np.where(x < 0, x * np.float32(penalty), x / np.float32(penalty))
    return out


def apply_presence_frequency(logits: np.ndarray, output_ids: Sequence[Sequence[int]], presence: float,
                             frequency: float) -> np.ndarray:
    """logit -= frequency * (times the token is in the output) + presence * (1 if it is at all)."""
    out = np.array(logits, dtype=np.float32, copy=True)
    if presence == 0 and frequency == 0:
        return out
    vocab = out.shape[-1]
    for row, ids in zip(out.reshape(-1, vocab), output_ids):
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab)[:vocab].astype(np.float32)
        row -= np.float32(frequency) * counts + np.float32(presence) * (counts > 0)
    return out


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return np.asarray(logits, dtype=np.float32) / np.float32(temperature)


def apply_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits of each row (all tokens tied with the k-th are kept); k <= 0 keeps all."""
    out = np.array(logits, dtype=np.float32, copy=True)
    vocab = out.shape[-1]
    if k <= 0 or k >= vocab:
        return out
    kth = np.partition(out, vocab - k, axis=-1)[..., vocab - k:vocab - k + 1]
    out[out < kth] = -np.inf
    return out


def apply_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the most likely tokens until their probability reaches p: drop the tail whose mass is <= 1 - p.

    The most likely token is always kept, and tokens tied with the least likely kept one are kept too.
    """
    out = np.array(logits, dtype=np.float32, copy=True)
    if p >= 1.0:
        return out
    # NOTE: as transformers: accumulate probabilities from the least likely up, in float32. Sorting values
    # (not indices, 2-3x faster) is enough: the first kept position gives a threshold logit.
    sorted_logits = np.sort(out, axis=-1)
    cumulative = np.cumsum(_softmax(sorted_logits), axis=-1, dtype=np.float32)
    first_kept = np.minimum((cumulative <= np.float32(1 - p)).sum(axis=-1, keepdims=True), out.shape[-1] - 1)
    out[out < np.take_along_axis(sorted_logits, first_kept, axis=-1)] = -np.inf
    return out


def apply_min_p(logits: np.ndarray, min_p: float) -> np.ndarray:
    """Drop tokens whose probability is below min_p times the most likely token's."""
    out = np.array(logits, dtype=np.float32, copy=True)
    if min_p <= 0:
        return out
    probs = _softmax(out)
    out[probs < np.float32(min_p) * probs.max(axis=-1, keepdims=True)] = -np.inf
    return out


# ------------------------------------------------------------------------------------------- sampling
@dataclass
class SamplerOutput:
    token_ids: np.ndarray  # [batch] int64
    logprobs: np.ndarray  # [batch] float32: log-probability of each chosen token under the raw distribution
    top_logprobs: list[list[tuple[int, float]] | None] = field(default_factory=list)  # per row when asked


def _draw(probs: np.ndarray, generator: np.random.Generator) -> int:
    """One token from `probs` (float64, unnormalized is fine) with one uniform draw: inverse CDF."""
    cdf = np.cumsum(probs)
    u = generator.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), probs.size - 1))


def sample(logits: np.ndarray, params: Sequence[SamplingParams], generators: Sequence[np.random.Generator | None],
           prompt_ids: Sequence[Sequence[int]] | None = None, output_ids: Sequence[Sequence[int]] | None = None,
           eos_token_ids: Sequence[int] = ()) -> SamplerOutput:
    """Choose one next token per row of `logits` [batch, vocab], each row with its own params and generator.

    Args:
        logits: float logits [batch, vocab] of the last position of each sequence.
        params: one SamplingParams per row.
        generators: one np.random.Generator per row (make_generator(params.seed)); None for greedy rows.
        prompt_ids, output_ids: each row's prompt and generated tokens so far (for penalties and min_tokens).
        eos_token_ids: the model's end-of-sequence ids (masked while the output is shorter than min_tokens).
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [batch, vocab], got shape {logits.shape}")
    batch, vocab = logits.shape
    if len(params) != batch or len(generators) != batch:
        raise ValueError(f"{batch} rows of logits but {len(params)} params and {len(generators)} generators")
    prompt_ids = prompt_ids if prompt_ids is not None else [()] * batch
    output_ids = output_ids if output_ids is not None else [()] * batch
    if len(prompt_ids) != batch or len(output_ids) != batch:
        raise ValueError(f"{batch} rows of logits but {len(prompt_ids)} prompts and {len(output_ids)} outputs")

    logits = logits.astype(np.float32, copy=False)
    # NOTE: log_softmax = z - log(sum(exp(z))), z = logits - max: the shifted rows and their log-sums, but the
    # full [batch, vocab] log-probabilities only when some row asks for its top logprobs
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - top
    raw_logprobs = None
    if any(p.logprobs for p in params):
        log_sums = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        raw_logprobs = shifted - log_sums
    else:
        log_sums = np.log(np.exp(shifted, out=shifted).sum(axis=-1, keepdims=True))
    token_ids = np.empty(batch, dtype=np.int64)
    top_logprobs: list[list[tuple[int, float]] | None] = []
    for i, p in enumerate(params):
        row = logits[i:i + 1]  # a view: each filter below returns a new array, none writes into it
        output = output_ids[i]
        if p.logit_bias:
            row = apply_logit_bias(row, p.logit_bias)
        if p.repetition_penalty != 1.0:
            row = apply_repetition_penalty(row, [list(prompt_ids[i]) + list(output)], p.repetition_penalty)
        if p.presence_penalty != 0 or p.frequency_penalty != 0:
            row = apply_presence_frequency(row, [list(output)], p.presence_penalty, p.frequency_penalty)
        if len(output) < p.min_tokens:
            enders = [t for t in (*([] if p.ignore_eos else eos_token_ids), *p.stop_token_ids) if 0 <= t < vocab]
            row = row.copy()
            row[0, enders] = -np.inf
        if p.greedy:
            token_ids[i] = int(np.argmax(row[0]))
        else:
            if generators[i] is None:
                raise ValueError(f"row {i} samples at temperature {p.temperature} but has no generator")
            row = apply_temperature(row, p.temperature)
            # NOTE: top-k first, on the candidates only: top-p and min-p over the k survivors (in vocabulary
            # order) give exactly the result of filtering the whole row, and skip sorting the vocabulary.
            candidates = None
            if 0 < p.top_k < vocab:
                kth = np.partition(row[0], vocab - p.top_k)[vocab - p.top_k]
                candidates = np.flatnonzero(row[0] >= kth)
                row = row[:, candidates]
            row = apply_top_p(row, p.top_p)
            row = apply_min_p(row, p.min_p)
            chosen = _draw(_softmax(row[0].astype(np.float64)), generators[i])
            token_ids[i] = chosen if candidates is None else int(candidates[chosen])
        if p.logprobs:
            top_logprobs.append(most_likely(raw_logprobs[i], p.logprobs))
        else:
            top_logprobs.append([] if p.logprobs == 0 else None)
    rows = np.arange(batch)
    chosen = ((logits[rows, token_ids] - top[:, 0]) - log_sums[:, 0]).astype(np.float32)
    return SamplerOutput(token_ids=token_ids, logprobs=chosen, top_logprobs=top_logprobs)


def is_stop_token(token_id: int, params: SamplingParams, eos_token_ids: Sequence[int] | set[int]) -> bool:
    """Whether this generated token ends the output: one of stop_token_ids, or an eos unless ignore_eos."""
    return token_id in params.stop_token_ids or (not params.ignore_eos and token_id in eos_token_ids)


# ---------------------------------------------------------------------------------------- stop strings
class StopChecker:
    """Stop strings over streamed text: emit what is safe, hold back what may begin a stop string, cut at one.

        checker = StopChecker(["\\n\\n", "User:"])
        for piece in stream:
            print(checker.feed(piece), end="")
            if checker.stopped: break
        print(checker.flush())           # the held-back tail when the stream ended without a stop

    The stop string itself is not part of the output (as in vLLM and OpenAI); `matched` says which one hit.
    """

    def __init__(self, stop: Sequence[str]):
        if isinstance(stop, str):
            stop = [stop]
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(stop)!r}")
        self.stop = list(stop)
        self.held = ""
        self.stopped = False
        self.matched: str | None = None

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def feed(self, text: str) -> str:
        """Add newly decoded text; return the part that can be emitted now ('' once stopped)."""
        if self.stopped:
            return ""
        buffer = self.held + text
        hits = [(buffer.find(s), s) for s in self.stop]
        hits = [(at, s) for at, s in hits if at >= 0]
        if hits:
            at, s = min(hits, key=lambda h: (h[0], -len(h[1])))
            self.stopped, self.matched, self.held = True, s, ""
            return buffer[:at]
        keep = self._held_back(buffer)
        self.held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep]

    def flush(self) -> str:
        """The end of the stream without a stop: release the held-back text."""
        held, self.held = ("" if self.stopped else self.held), ""
        return held
