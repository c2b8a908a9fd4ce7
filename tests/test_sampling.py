"""zigtensor.llm.sampling: filters against transformers' logits processors, seeded sampling, stop strings."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import oracle

from zigtensor.llm.sampling import (
    SamplingParams,
    StopChecker,
    apply_logit_bias,
    apply_min_p,
    apply_presence_frequency,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    is_stop_token,
    log_softmax,
    make_generator,
    sample,
)

torch = oracle("torch")
transformers = oracle("transformers")
lp = transformers.generation.logits_process

VOCAB = 1000


def _logits(seed=0, batch=4, vocab=VOCAB, scale=3.0):
    return (np.random.default_rng(seed).standard_normal((batch, vocab)) * scale).astype(np.float32)


def _hf(processor, logits, input_ids=None):
    ids = torch.zeros((logits.shape[0], 1), dtype=torch.long) if input_ids is None else torch.tensor(input_ids)
    return processor(ids, torch.tensor(logits)).numpy()


def _same(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------- filters vs HF
@pytest.mark.parametrize("k", [1, 2, 5, 50, VOCAB - 1, VOCAB])
def test_top_k_matches_hf(k):
    logits = _logits(k)
    got = apply_top_k(logits, k)
    _same(got, _hf(lp.TopKLogitsWarper(top_k=k), logits))
    assert (np.isfinite(got).sum(axis=1) == min(k, VOCAB)).all()


def test_top_k_keeps_ties_and_off_values():
    logits = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    _same(apply_top_k(logits, 2), _hf(lp.TopKLogitsWarper(top_k=2), logits))
    np.testing.assert_array_equal(apply_top_k(logits, 0), logits)
    np.testing.assert_array_equal(apply_top_k(logits, -1), logits)


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_top_p_matches_hf(p, scale):
    logits = _logits(int(p * 100), scale=scale)
    _same(apply_top_p(logits, p), _hf(lp.TopPLogitsWarper(top_p=p), logits))


@pytest.mark.parametrize("min_p", [0.0, 0.01, 0.1, 0.5, 0.99])
def test_min_p_matches_hf(min_p):
    logits = _logits(7)
    want = logits if min_p == 0 else _hf(lp.MinPLogitsWarper(min_p=min_p), logits)
    _same(apply_min_p(logits, min_p), want)


@pytest.mark.parametrize("t", [0.3, 1.0, 1.7])
def test_temperature_matches_hf(t):
    logits = _logits(3)
    _same(apply_temperature(logits, t), _hf(lp.TemperatureLogitsWarper(temperature=t), logits))


@pytest.mark.parametrize("penalty", [0.7, 1.0, 1.3, 2.0])
def test_repetition_penalty_matches_hf(penalty):
    logits = _logits(5)
    rng = np.random.default_rng(9)
    ids = rng.integers(0, VOCAB, size=(4, 30))
    ids[0, :10] = 7  # repeats count once
    got = apply_repetition_penalty(logits, ids.tolist(), penalty)
    _same(got, _hf(lp.RepetitionPenaltyLogitsProcessor(penalty=penalty), logits, ids))


def test_chain_matches_hf():
    logits = _logits(11)
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(4, 20))
    chain = lp.LogitsProcessorList([lp.RepetitionPenaltyLogitsProcessor(1.2), lp.TemperatureLogitsWarper(0.7),
                                    lp.TopKLogitsWarper(40), lp.TopPLogitsWarper(0.9), lp.MinPLogitsWarper(0.05)])
    ours = apply_repetition_penalty(logits, ids.tolist(), 1.2)
    ours = apply_min_p(apply_top_p(apply_top_k(apply_temperature(ours, 0.7), 40), 0.9), 0.05)
    _same(ours, _hf(chain, logits, ids))


def test_logit_bias_matches_hf_sequence_bias():
    logits = _logits(4)
    bias = {3: 5.0, 999: -100.0, 0: 0.5}
    got = apply_logit_bias(logits, bias)
    _same(got, _hf(lp.SequenceBiasLogitsProcessor({(t,): b for t, b in bias.items()}), logits))
    with pytest.raises(ValueError, match=r"logit_bias names token id 1000, outside the vocabulary \[0, 1000\)"):
        apply_logit_bias(logits, {1000: 1.0})


def test_logit_bias_steers_greedy_and_sampled_rows():
    logits = _logits(6, batch=2)
    top = int(np.argmax(logits[0]))
    forced = SamplingParams(temperature=0, logit_bias={7: 100})
    banned = SamplingParams(temperature=0.8, logit_bias={t: -100 for t in range(VOCAB) if t != 42})
    out = sample(logits, [forced, banned], [None, make_generator(0)])
    assert out.token_ids.tolist() == [7, 42]
    # logprobs stay those of the model's raw distribution, as for every other filter
    np.testing.assert_allclose(out.logprobs[0], log_softmax(logits[:1])[0, 7], rtol=1e-6)
    assert int(sample(logits[:1], [SamplingParams(temperature=0)], [None]).token_ids[0]) == top != 7


def test_presence_frequency_penalties():
    # OpenAI's definition, written out per token: logit -= count * frequency + (count > 0) * presence
    logits = _logits(2, batch=2, vocab=20)
    outputs = [[3, 3, 3, 5, 19], []]
    got = apply_presence_frequency(logits, outputs, presence=0.5, frequency=0.25)
    want = logits.copy()
    for row, ids in enumerate(outputs):
        for token in set(ids):
            want[row, token] -= ids.count(token) * 0.25 + 0.5
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(apply_presence_frequency(logits, outputs, 0.0, 0.0), logits)


# ------------------------------------------------------------------------------------ SamplingParams
def test_params_defaults_are_vllms():
    p = SamplingParams()
    assert (p.n, p.max_tokens, p.temperature, p.top_p, p.top_k, p.min_p) == (1, 16, 1.0, 1.0, 0, 0.0)
    assert (p.repetition_penalty, p.presence_penalty, p.frequency_penalty) == (1.0, 0.0, 0.0)
    assert (p.seed, p.stop, p.stop_token_ids, p.ignore_eos, p.logprobs) == (None, [], [], False, None)
    assert p.logit_bias == {}
    assert SamplingParams(stop="\n").stop == ["\n"]
    assert SamplingParams(temperature=0).greedy and not SamplingParams(temperature=0.1).greedy


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": -0.5}, r"temperature must be >= 0 \(0 is greedy\), got -0.5"),
    ({"temperature": float("nan")}, "temperature must be a finite number, got nan"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
    ({"top_k": -2}, r"top_k must be 0 or -1 \(off\) or at least 1, got -2"),
    ({"top_k": 2.5}, "top_k must be an integer, got 2.5"),
    ({"min_p": 1.2}, r"min_p must be in \[0, 1\], got 1.2"),
    ({"repetition_penalty": 0}, "repetition_penalty must be > 0"),
    ({"presence_penalty": 2.5}, r"presence_penalty must be in \[-2, 2\], got 2.5"),
    ({"frequency_penalty": -3}, r"frequency_penalty must be in \[-2, 2\], got -3"),
    ({"n": 0}, "n must be at least 1, got 0"),
    ({"max_tokens": 0}, "max_tokens must be at least 1"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"seed": "7"}, "seed must be an integer or None, got '7'"),
    ({"stop": ["ok", ""]}, "stop strings must not be empty"),
    ({"stop": 5}, "stop must be a string or a list of strings, got 5"),
    ({"stop_token_ids": [1, -2]}, "stop_token_ids must be a list of non-negative integers"),
    ({"logprobs": -1}, r"logprobs must be >= 0 \(or None\), got -1"),
    ({"min_tokens": 20}, r"min_tokens must be <= max_tokens \(16\), got 20"),
    ({"logit_bias": {5: 101}}, r"logit_bias values must be numbers in \[-100, 100\]"),
    ({"logit_bias": {-1: 1}}, "logit_bias must map non-negative integer token ids to numbers"),
    ({"logit_bias": {"5": 1}}, "logit_bias must map non-negative integer token ids to numbers"),
    ({"logit_bias": [5]}, "logit_bias must map non-negative integer token ids to numbers"),
])
def test_params_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs)


# ----------------------------------------------------------------------------------------- sampling
def _run(logits_steps, params, seeds):
    """Sample several steps for a batch; returns the tokens [steps, batch]."""
    gens = [make_generator(s) for s in seeds]
    outputs: list[list[int]] = [[] for _ in params]
    for logits in logits_steps:
        out = sample(logits, params, gens, prompt_ids=[[1, 2, 3]] * len(params), output_ids=outputs)
        for row, t in enumerate(out.token_ids):
            outputs[row].append(int(t))
    return np.array(outputs).T


def test_greedy_is_argmax_of_penalized_logits():
    logits = _logits(0, batch=3)
    params = [SamplingParams(temperature=0)] * 3
    out = sample(logits, params, [None] * 3)
    np.testing.assert_array_equal(out.token_ids, logits.argmax(axis=1))
    # a repetition penalty on the argmax moves greedy to the runner-up
    top, second = np.argsort(-logits[0])[:2]
    logits[0, top] = 40.0  # 20 after the penalty
    logits[0, second] = 30.0
    out = sample(logits[:1], [SamplingParams(temperature=0, repetition_penalty=2.0)], [None], prompt_ids=[[top]])
    assert out.token_ids[0] == second


def test_seeded_reproducible_and_batch_independent():
    steps = [_logits(s, batch=4) for s in range(12)]
    params = [SamplingParams(temperature=0.9, top_p=0.95, seed=1), SamplingParams(temperature=0),
              SamplingParams(temperature=1.3, top_k=20, seed=2, presence_penalty=0.5),
              SamplingParams(temperature=0.7, min_p=0.05, repetition_penalty=1.2, seed=3)]
    seeds = [p.seed for p in params]
    batched = _run(steps, params, seeds)
    np.testing.assert_array_equal(batched, _run(steps, params, seeds))  # same seeds, same tokens
    for row, p in enumerate(params):  # each request alone, on its own row of logits
        alone = _run([s[row:row + 1] for s in steps], [p], [p.seed])
        np.testing.assert_array_equal(alone[:, 0], batched[:, row], err_msg=f"row {row}")
    reordered = _run([s[::-1] for s in steps], params[::-1], seeds[::-1])
    np.testing.assert_array_equal(reordered[:, ::-1], batched)
    other = _run(steps, params, [10, None, 20, 30])
    assert not np.array_equal(other[:, 0], batched[:, 0])


def test_generators_for_n_completions():
    a = make_generator(5).random(4)
    np.testing.assert_array_equal(a, make_generator(5, 0).random(4))
    assert not np.array_equal(a, make_generator(5, 1).random(4))
    np.testing.assert_array_equal(make_generator(5, 1).random(4), make_generator(5, 1).random(4))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_sampling_distribution(temperature):
    scipy_stats = oracle("scipy.stats")
    logits = np.array([[2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -4.0]], dtype=np.float32)
    expected = np.exp(logits[0].astype(np.float64) / temperature)
    expected /= expected.sum()
    gen = make_generator(1234)
    params = [SamplingParams(temperature=temperature)]
    draws = 10000
    counts = np.bincount([sample(logits, params, [gen]).token_ids[0] for _ in range(draws)], minlength=8)
    keep = expected * draws >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    want = np.append(expected[keep], expected[~keep].sum()) * draws
    if observed[-1] == 0 and want[-1] == 0:
        observed, want = observed[:-1], want[:-1]
    p_value = scipy_stats.chisquare(observed, want).pvalue
    assert p_value > 1e-3, (counts, expected * draws)


def test_filtered_tokens_are_never_sampled():
    logits = _logits(4, batch=1, vocab=50, scale=1.0)
    gen = make_generator(0)
    top_k = set(np.argsort(-logits[0])[:3].tolist())
    params = SamplingParams(temperature=1.5, top_k=3)
    assert {int(sample(logits, [params], [gen]).token_ids[0]) for _ in range(300)} == top_k
    nucleus_logits = apply_top_p(logits, 0.5)
    allowed = set(np.flatnonzero(np.isfinite(nucleus_logits[0])).tolist())
    seen = {int(sample(logits, [SamplingParams(top_p=0.5)], [gen]).token_ids[0]) for _ in range(300)}
    assert seen <= allowed and len(seen) > 1


def test_top_k_candidates_path_equals_full_vocabulary_path():
    # sample() filters top-p/min-p over the top-k survivors only; drawing from the fully filtered row with the
    # same random stream must pick the same tokens
    logits = _logits(12, batch=1, vocab=5000, scale=2.0)
    for k, top_p, min_p in [(50, 0.9, 0.0), (7, 1.0, 0.2), (300, 0.5, 0.01), (1, 0.9, 0.0)]:
        params = SamplingParams(temperature=0.8, top_k=k, top_p=top_p, min_p=min_p)
        full = apply_min_p(apply_top_p(apply_top_k(apply_temperature(logits, 0.8), k), top_p), min_p)[0]
        probs = np.exp(full.astype(np.float64) - full.max())
        gen_a, gen_b = make_generator(k), make_generator(k)
        for _ in range(50):
            got = int(sample(logits, [params], [gen_a]).token_ids[0])
            cdf = np.cumsum(probs / probs.sum())
            want = int(np.searchsorted(cdf, gen_b.random() * cdf[-1], side="right"))
            assert got == want and np.isfinite(full[got])


def test_logprobs_are_raw_model_logprobs():
    logits = _logits(8, batch=2)
    params = [SamplingParams(temperature=0.8, top_k=5, logprobs=3, seed=0), SamplingParams(temperature=0)]
    out = sample(logits, params, [make_generator(0), None])
    raw = torch.log_softmax(torch.tensor(logits), dim=-1).numpy()
    np.testing.assert_allclose(out.logprobs, raw[[0, 1], out.token_ids], rtol=1e-5, atol=1e-5)
    top = out.top_logprobs[0]
    assert [t for t, _ in top] == np.argsort(-raw[0])[:3].tolist()
    np.testing.assert_allclose([v for _, v in top], np.sort(raw[0])[::-1][:3], rtol=1e-5, atol=1e-5)
    assert out.top_logprobs[1] is None
    np.testing.assert_allclose(log_softmax(logits), raw, rtol=1e-5, atol=1e-5)


def test_min_tokens_masks_eos_and_stop_tokens():
    logits = np.zeros((1, 10), dtype=np.float32)
    logits[0, 2] = 50.0  # eos dominates
    logits[0, 4] = 40.0  # then a stop token
    p = SamplingParams(temperature=0, min_tokens=2, stop_token_ids=[4])
    assert sample(logits, [p], [None], output_ids=[[7]], eos_token_ids=[2]).token_ids[0] not in (2, 4)
    assert sample(logits, [p], [None], output_ids=[[7, 7]], eos_token_ids=[2]).token_ids[0] == 2
    assert is_stop_token(4, p, {2}) and is_stop_token(2, p, {2}) and not is_stop_token(3, p, {2})
    assert not is_stop_token(2, SamplingParams(ignore_eos=True), {2})


def test_sample_argument_errors():
    with pytest.raises(ValueError, match=r"logits must be \[batch, vocab\], got shape \(5,\)"):
        sample(np.zeros(5), [SamplingParams()], [None])
    with pytest.raises(ValueError, match="2 rows of logits but 1 params"):
        sample(np.zeros((2, 5)), [SamplingParams()], [None])
    with pytest.raises(ValueError, match="has no generator"):
        sample(np.zeros((1, 5)), [SamplingParams()], [None])


# --------------------------------------------------------------------------------------- stop strings
def _stream(pieces, stops):
    checker = StopChecker(stops)
    out = []
    for piece in pieces:
        out.append(checker.feed(piece))
        if checker.stopped:
            break
    out.append(checker.flush())
    return out, checker


def test_stop_string_across_token_boundaries():
    out, checker = _stream(["Hel", "lo\nU", "ser", ": next"], ["\nUser:"])
    assert "".join(out) == "Hello" and checker.stopped and checker.matched == "\nUser:"
    assert out[1] == "lo"  # '\nU' held back: it may start the stop string
    out, checker = _stream(["a\nU", "nrelated"], ["\nUser:"])
    assert out == ["a", "\nUnrelated", ""] and not checker.stopped


def test_stop_string_edge_cases():
    out, checker = _stream(["stop here"], ["stop"])
    assert "".join(out) == "" and checker.stopped
    out, checker = _stream(["abcdef"], ["cd", "bcde"])  # the earliest match wins
    assert "".join(out) == "a" and checker.matched == "bcde"
    out, checker = _stream(["x", "y", "z"], ["yz"])
    assert out[:2] == ["x", ""] and "".join(out) == "x"
    out, checker = _stream(["tail <"], ["<|end|>"])
    assert out == ["tail ", "<"]  # the held-back prefix is released at the end
    with pytest.raises(ValueError, match="non-empty strings"):
        StopChecker(["ok", ""])


def test_stop_strings_random_chunkings():
    rng = np.random.default_rng(0)
    alphabet = list("ab\n:é😀")
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 30))))
        stops = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 4)))) for _ in range(int(rng.integers(1, 3)))]
        cuts = sorted(rng.choice(len(text) + 1, size=min(len(text) + 1, int(rng.integers(0, 6))), replace=False))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        hits = [text.find(s) for s in stops if s in text]
        want = text[:min(hits)] if hits else text
        out, checker = _stream(pieces, stops)
        assert "".join(out) == want, (text, stops, pieces)
        assert checker.stopped == bool(hits)
