"""The engine running zigtensor.llm's Transformer on the paged cache (TransformerRunner), against HF transformers
and zigtensor's own LLM API on a small random-weight Llama with grouped-query attention, saved with
save_pretrained and loaded back by zigtensor's loader."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llm_fixtures import minilm_folder
from oracle import oracle

from zigtensor.engine import AsyncEmbeddingEngine, AsyncLLMEngine, EngineConfig, LLMEngine, RequestError
from zigtensor.engine.llm_runner import TransformerRunner, load_engine
from zigtensor.llm import LLM, SamplingParams, load_model

torch = oracle("torch")
transformers = oracle("transformers")

VOCAB = 96


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """(folder, HF model): 3 layers, 4 query heads over 2 kv heads, random weights large enough that the
    logits are spread (no near-ties for greedy decoding to flip on)."""
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      rope_theta=10000.0, initializer_range=0.25, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = None  # random weights: generate the full length, as ignore_eos does
    folder = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(folder)
    return folder, model


PROMPTS = [[1, 5, 9, 33], list(range(2, 40)), [7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7], list(range(60, 95)),
           [11, 12]]
MAX_TOKENS = 12


def hf_greedy(model, prompt: list[int]) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_TOKENS, do_sample=False,
                             pad_token_id=0)
    return out[0, len(prompt):].tolist()


def make_engine(folder, **config) -> LLMEngine:
    loaded = load_model(folder)
    config = {"block_size": 4, "max_model_len": 128, "max_num_seqs": 8, "max_num_batched_tokens": 24, **config}
    return LLMEngine(TransformerRunner(loaded.model), loaded.tokenizer, EngineConfig(**config))


def test_prefill_and_decode_logits_match_transformers(tiny_llama):
    folder, hf = tiny_llama
    engine = make_engine(folder, kv_blocks=64)
    runner = engine.runner
    captured = []
    execute = runner.execute
    runner.execute = lambda batch: captured.append((batch, execute(batch))) or captured[-1][1]
    engine.generate(PROMPTS[:3], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    histories: dict[int, list[int]] = {}  # each sequence's tokens so far, rebuilt from the batches
    checked = 0
    for batch, logits in captured:
        for row, seq_id in enumerate(batch.seq_ids):
            start, stop = batch.query_start_loc[row], batch.query_start_loc[row + 1]
            history = histories.setdefault(seq_id, [])
            history += batch.token_ids[start:stop].tolist()
            with torch.no_grad():
                want = hf(torch.tensor([history])).logits[0, -1].numpy()
            np.testing.assert_allclose(logits[row], want, atol=1e-4, rtol=0,
                                       err_msg=f"sequence {seq_id} after {len(history)} tokens")
            checked += 1
    assert checked >= 9


def test_engine_greedy_equals_transformers_and_llm_generate(tiny_llama):
    folder, hf = tiny_llama
    want = [hf_greedy(hf, p) for p in PROMPTS]
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
    llm = LLM(str(folder))
    assert [o.token_ids for o in llm.generate(PROMPTS, params)] == want
    # roomy pool, and a pool for two sequences (preemption and recompute) with small prefill chunks
    for kv_blocks in (128, 2 * 13):
        engine = make_engine(folder, kv_blocks=kv_blocks)
        outs = engine.generate(PROMPTS, params)
        assert [o.outputs[0].token_ids for o in outs] == want, f"kv_blocks={kv_blocks}"
        assert engine.stats()["kv_blocks_used"] == 0
    assert engine.stats()["num_preemptions"] > 0


def test_engine_n_completions_and_prefix_cache_keep_transformers_greedy(tiny_llama):
    folder, hf = tiny_llama
    engine = make_engine(folder, kv_blocks=128)
    prompt = PROMPTS[1]
    want = hf_greedy(hf, prompt)
    params = SamplingParams(n=3, temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
    first = engine.generate([prompt], params)[0]
    assert [c.token_ids for c in first.outputs] == [want] * 3
    again = engine.generate([prompt + [5]], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))[0]
    assert engine.stats()["prefix_cache_hit_blocks"] > 0
    assert again.outputs[0].token_ids == hf_greedy(hf, prompt + [5])[:4]


def test_prompt_logprobs_match_transformers(tiny_llama):
    # the runner returns a row of logits for every prompt token of a chunk that asked (max_num_batched_tokens 24:
    # the 38-token prompt is computed in two chunks, batched with a prompt that did not ask)
    folder, hf = tiny_llama
    engine = make_engine(folder, kv_blocks=64)
    asked = SamplingParams(temperature=0, max_tokens=2, prompt_logprobs=3)
    outs = engine.generate([PROMPTS[1], PROMPTS[0]], [asked, SamplingParams(temperature=0, max_tokens=2)])
    with torch.no_grad():
        want = torch.log_softmax(hf(torch.tensor([PROMPTS[1]])).logits[0].double(), -1).numpy()
    got = outs[0].prompt_logprobs
    assert got[0] is None and len(got) == len(PROMPTS[1]) and outs[1].prompt_logprobs is None
    for t in range(1, len(PROMPTS[1])):
        assert got[t].token_id == PROMPTS[1][t]
        assert got[t].logprob == pytest.approx(want[t - 1, PROMPTS[1][t]], abs=1e-4)
        assert [i for i, _ in got[t].top] == list(np.argsort(-want[t - 1])[:3])


def test_load_engine_serves_a_decoder_asynchronously(tiny_llama):
    folder, hf = tiny_llama

    async def main():
        engine = load_engine(folder, config=EngineConfig(max_model_len=128, kv_blocks=64, block_size=4,
                                                         model_name="tiny"))
        assert isinstance(engine, AsyncLLMEngine) and engine.model_name == "tiny" and engine.max_model_len == 128
        params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
        finals = await asyncio.gather(*(_final(engine.generate(p, params)) for p in PROMPTS[:3]))
        assert [f.outputs[0].token_ids for f in finals] == [hf_greedy(hf, p) for p in PROMPTS[:3]]
        with pytest.raises(RequestError, match="decoder-only"):
            await engine.embed(["text"])
        await engine.shutdown()

    asyncio.run(main())


async def _final(stream):
    last = None
    async for out in stream:
        last = out
    return last


def test_load_engine_gives_an_embedding_engine_for_an_encoder():
    folder = minilm_folder()

    async def main():
        engine = load_engine(folder)
        assert isinstance(engine, AsyncEmbeddingEngine) and engine.health()
        texts = ["a sentence to embed", "another one"]
        got = await engine.embed(texts)
        np.testing.assert_allclose(got, LLM(folder).embed(texts), atol=1e-6)
        assert engine.stats()["texts"] == 2 and engine.count_tokens(texts) == engine.stats()["prompt_tokens"]
        with pytest.raises(RequestError, match="is an encoder"):
            engine.generate("hello")
        with pytest.raises(RequestError, match=r"input\[1\] must be a non-empty string"):
            await engine.embed(["ok", ""])
        await engine.shutdown()
        assert not engine.health()

    asyncio.run(main())


def test_llm_generate_refuses_prompt_logprobs_with_where_to_get_them(tiny_llama):
    with pytest.raises(ValueError, match=r"prompt_logprobs is computed by the serving engine .* LLM.score"):
        LLM(str(tiny_llama[0])).generate([[1, 2, 3]], SamplingParams(max_tokens=2, prompt_logprobs=1))
