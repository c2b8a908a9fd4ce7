"""The no-grad decode path: the Transformer's layers on arrays (llm/array_forward.py) against the same layers as
Tensor ops, for LLM's contiguous cache and the engine's paged one, over the model variants; and DecodeThreads,
the timed choice of BLAS threads per decode step, fed given step times (nothing here is timed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import zigtensor as zt
from zigtensor.autograd.grad_mode import no_grad
from zigtensor.engine import EngineConfig, LLMEngine
from zigtensor.engine.llm_runner import TransformerRunner
from zigtensor.llm import LLM, ModelConfig, SamplingParams, array_forward, threads
from zigtensor.llm.kv_cache import KVCache
from zigtensor.llm.threads import DecodeThreads
from zigtensor.llm.transformer import Transformer

VOCAB = 50


def _model(gpt2: bool = False, **kw) -> Transformer:
    if gpt2:
        config = ModelConfig.gpt(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=32)
    else:
        config = ModelConfig(**{**dict(architecture="llama", vocab_size=VOCAB, hidden_size=32, num_layers=2,
                                       num_heads=4, num_kv_heads=2, head_dim=8, intermediate_size=48,
                                       max_position_embeddings=64), **kw})
    zt.manual_seed(0)
    model = Transformer(config)
    for p in model.parameters():  # weights large enough that every layer moves the logits
        p.data[...] = np.random.default_rng(p.numel()).normal(0, 0.3, p.shape).astype(np.float32)
    return model.prepare_for_inference()


VARIANTS = {
    "llama_gqa": {},
    "mha_bias": dict(num_kv_heads=4, qkv_bias=True, mlp_bias=True),
    "window": dict(sliding_window=5),
    "gpt2": dict(gpt2=True),
}


@pytest.fixture
def tensor_path(monkeypatch):
    """Switch the array path off: every op runs as a Tensor op, as before it existed."""
    def off():
        monkeypatch.setattr(array_forward.ArrayOps, "for_model", classmethod(lambda cls, model: None))
    return off


def _cached_logits(model, x, lengths):
    """Prefill rows of different lengths, then decode steps of both rows: the logits of every step."""
    cache = KVCache.for_model(model, batch=2, max_len=x.shape[1])
    out = []
    with no_grad():
        for row, n in enumerate(lengths):
            out.append(model(zt.tensor(x[row:row + 1, :n]), cache=cache, rows=slice(row, row + 1)).numpy())
        for step in range(5):
            tokens = np.array([[x[r, n + step]] for r, n in enumerate(lengths)])
            out.append(model(zt.tensor(tokens), cache=cache).numpy())
    return out


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_array_path_gives_the_tensor_paths_logits(kind, tensor_path):
    model = _model(**VARIANTS[kind])
    x = np.random.default_rng(1).integers(0, VOCAB, (2, 14))
    assert array_forward.ArrayOps.for_model(model) is None  # grad mode is on outside no_grad
    with no_grad():
        assert array_forward.ArrayOps.for_model(model) is not None
    got = _cached_logits(model, x, (8, 3))
    tensor_path()
    want = _cached_logits(model, x, (8, 3))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def _llm(model) -> LLM:
    """An LLM over a model built here (no files): what LLM.__init__ would set for a decoder."""
    llm = LLM.__new__(LLM)
    llm.loaded = SimpleNamespace(kind="decoder", name="random", model=model, tokenizer=None, config=model.config)
    llm.tokenizer, llm.config, llm.max_model_len = None, model.config, model.config.max_position_embeddings
    return llm


def test_prompts_of_one_length_prefill_together_as_each_alone():
    llm = _llm(_model())
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (6, 6, 6, 4, 6, 6)]
    params = SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)
    together = llm.generate(prompts, params)
    for prompt, got in zip(prompts, together):
        alone = llm.generate([prompt], params)[0].outputs[0]
        assert got.outputs[0].token_ids == alone.token_ids
        assert abs(got.outputs[0].cumulative_logprob - alone.cumulative_logprob) < 1e-4


def test_array_path_is_skipped_while_training():
    model = _model()
    model.train()
    with no_grad():
        assert array_forward.ArrayOps.for_model(model) is None


def test_silu_mul_matches_silu_without_overflow_warnings():
    ops = array_forward.ArrayOps(zt.device("cpu"))
    gate = np.linspace(-300, 300, 2001, dtype=np.float32)
    up = np.linspace(-2, 2, 2001, dtype=np.float32)
    def silu_times(g, u):
        g = g.astype(np.float64)
        return g / (1 + np.exp(-g)) * u

    h = np.stack([np.concatenate([gate, up]), np.concatenate([gate[::-1], up])])[:, None]   # (2, 1, 2 * 2001)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # NumPy warns of these by default
        got = ops.silu_mul(h, 2001)
    assert got.shape == (2, 1, 2001)
    np.testing.assert_allclose(got[0, 0], silu_times(gate, up), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(got[1, 0], silu_times(gate[::-1], up), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("kind", ["llama_gqa", "gpt2"])
def test_engine_runner_array_path_matches_its_tensor_path(kind, tensor_path):
    prompts = [[1, 5, 9, 33, 2], [7], list(range(3, 20))]

    def run():
        engine = LLMEngine(TransformerRunner(_model(**VARIANTS[kind])), None,
                           EngineConfig(block_size=4, max_model_len=64, max_num_seqs=4, max_num_batched_tokens=12))
        params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True, logprobs=2)
        outs = engine.generate(prompts, params)
        return [(o.outputs[0].token_ids, o.outputs[0].cumulative_logprob) for o in outs]

    got = run()
    tensor_path()
    want = run()
    for (g_ids, g_lp), (w_ids, w_lp) in zip(got, want):
        assert g_ids == w_ids
        assert abs(g_lp - w_lp) < 1e-4


# ------------------------------------------------------------------------------------------ DecodeThreads
def _feed(tuner, tokens, seconds_of, steps):
    """Run `steps` decode steps whose time is seconds_of[threads]; the thread counts chosen, in order."""
    chosen = []
    for _ in range(steps):
        n = tuner.choose(tokens)
        chosen.append(n)
        tuner.record(tokens, n, seconds_of[n])
    return chosen


@pytest.fixture
def unforced(monkeypatch):
    monkeypatch.delenv("ZT_DECODE_THREADS", raising=False)
    monkeypatch.setattr(threads, "machine_busy", lambda: False)


def test_decode_threads_times_each_candidate_then_keeps_the_fastest(unforced):
    tuner = DecodeThreads((1, 2))
    chosen = _feed(tuner, 8, {1: 0.08, 2: 0.05}, 6 + 50)
    assert chosen[:6] == [1, 1, 1, 2, 2, 2]
    assert chosen[6:].count(1) <= 4 and tuner.summary() == {8: 2}  # a few probes of 1 thread, all losing


def test_decode_threads_backs_off_from_a_candidate_that_keeps_losing(unforced):
    tuner = DecodeThreads((1, 2))
    chosen = _feed(tuner, 1, {1: 0.03, 2: 0.75}, 4 + 2000)  # two threads on a busy machine: 25 times slower
    assert chosen[:4] == [1, 1, 1, 2]  # one slow timing is enough to rule two threads out
    probes = [i for i, n in enumerate(chosen) if i >= 4 and n == 2]
    gaps = np.diff(probes)
    assert tuner.summary() == {1: 1}
    assert len(probes) <= 9 and (gaps[1:] >= gaps[:-1]).all() and gaps[-1] >= 512


def test_decode_threads_follows_a_change_of_load(unforced):
    tuner = DecodeThreads((1, 2))
    _feed(tuner, 4, {1: 0.06, 2: 0.03}, 20)
    assert tuner.summary() == {4: 2}
    _feed(tuner, 4, {1: 0.06, 2: 0.5}, 4)  # the machine got busy: two threads turned slow
    assert tuner.summary() == {4: 1}
    _feed(tuner, 4, {1: 0.06, 2: 0.03}, 300)  # and quiet again: a probe finds out
    assert tuner.summary() == {4: 2}


def test_decode_threads_leaves_large_steps_to_blas_and_honours_the_environment(unforced, monkeypatch):
    tuner = DecodeThreads((1, 2))
    assert tuner.choose(threads.SMALL_STEP_TOKENS + 1) is None
    monkeypatch.setattr(threads, "machine_busy", lambda: True)
    assert tuner.choose(threads.SMALL_STEP_TOKENS + 1) == 1
    monkeypatch.setenv("ZT_DECODE_THREADS", "2")
    assert [tuner.choose(1) for _ in range(5)] == [2] * 5
    monkeypatch.setenv("ZT_DECODE_THREADS", "0")
    assert tuner.choose(1) is None
    monkeypatch.setenv("ZT_DECODE_THREADS", "two")
    with pytest.raises(ValueError, match="ZT_DECODE_THREADS must be an int"):
        tuner.choose(1)


def test_decode_threads_step_limits_blas_while_it_runs(unforced):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    tuner = DecodeThreads((1, 2))
    for want in (1, 1, 1, 2):
        with tuner.step(3) as n:
            assert n == want
            blas = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
            assert blas and all(t == want for t in blas)


@pytest.mark.parametrize("bad", [(), (0, 2), (1, "2")])
def test_decode_threads_rejects_bad_candidates(bad):
    with pytest.raises(ValueError, match="candidates must be positive thread counts"):
        DecodeThreads(bad)
