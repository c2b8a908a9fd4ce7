"""`zt quantize` end to end: a random-weight Llama (GQA) saved by transformers, with a BPE tokenizer trained on
Shakespeare, quantized by each method through the CLI (calibrated on a Shakespeare text file); the folder is in the
layout it claims (tensor names, dtypes, shapes, quantization_config, tokenizer files), loads with
zigtensor.llm.LLM, and its logits on held-out text stay close to the float model's. Bad arguments exit 1 with one
line. SmolLM2, when installed, quantized with RTN still answers a question as the float model does."""

import json
import subprocess
import sys

import numpy as np
import pytest
from llm_fixtures import missing, smollm2_gguf
from oracle import oracle, torch
from typer.testing import CliRunner

from zigtensor.data.errors import DatasetNotFoundError
from zigtensor.io.safetensors import safe_open
from zigtensor.llm import LLM, SamplingParams
from zigtensor_cli.app import app

transformers = oracle("transformers")
tokenizers = oracle("tokenizers")

HIDDEN, INTER, HEADS, KV_HEADS, LAYERS = 128, 256, 4, 2, 2
GROUP = 32
# measured relative logit error ||L_q - L_f|| / ||L_f - mean L_f|| on 200 held-out tokens (4-bit, group 32, the LM head
# quantized too): rtn 0.100, gptq (act-order) 0.075, awq 0.098 (0.057, 0.040, 0.056 with a float16 head); a layer
# quantized wrongly (codes, zeros or scales misplaced) gives > 0.3
LOGIT_TOLERANCE = 0.13


def _shakespeare() -> str:
    from zigtensor.data.text import load_corpus

    try:
        return load_corpus("shakespeare")
    except DatasetNotFoundError as e:
        missing("the shakespeare corpus", str(e))


@pytest.fixture(scope="module")
def texts():
    text = _shakespeare()
    return text[:60_000], text[-20_000:]  # (calibration and tokenizer training, held out)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, texts):
    """A Llama (GQA) with random weights and a byte-level BPE tokenizer trained on Shakespeare."""
    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=512, special_tokens=["<s>", "</s>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([texts[0]], trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, intermediate_size=INTER,
                                      num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                      num_key_value_heads=KV_HEADS, max_position_embeddings=256, bos_token_id=0,
                                      eos_token_id=1)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    (folder / "calibration.txt").write_text(texts[0])
    return folder


CASES = {"rtn": ["--method", "rtn"], "gptq": ["--method", "gptq", "--act-order"], "awq": ["--method", "awq"]}


@pytest.fixture(scope="module")
def quantized(model_dir, tmp_path_factory):
    """method -> (output folder, CLI result)."""
    out = {}
    for name, args in CASES.items():
        folder = tmp_path_factory.mktemp(name) / "model"
        r = CliRunner().invoke(app, ["quantize", "--model", str(model_dir), "--out", str(folder), "--bits", "4",
                                     "--group-size", str(GROUP), "--calibration", str(model_dir / "calibration.txt"),
                                     "--samples", "8", "--seqlen", "64", *args])
        out[name] = (folder, r)
    return out


def _tensors(folder) -> dict:
    with safe_open(folder / "model.safetensors") as f:
        return {name: f.get_tensor(name).numpy() for name in f.offset_keys()}


@pytest.mark.parametrize("method", list(CASES))
def test_the_folder_is_in_the_layout_it_claims(quantized, method):
    folder, r = quantized[method]
    assert r.exit_code == 0, r.output
    assert f"wrote {folder}: {method} 4-bit, group size {GROUP}" in r.stdout
    assert "14 linears in 2 layers and the LM head" in r.stdout
    config = json.loads((folder / "config.json").read_text())
    qc = config["quantization_config"]
    assert qc["quant_method"] == ("awq" if method == "awq" else "gptq") and qc["bits"] == 4
    assert qc["group_size"] == GROUP and config["torch_dtype"] == "float16"
    if method != "awq":
        assert qc["checkpoint_format"] == "gptq" and qc["desc_act"] == (method == "gptq")
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    t = _tensors(folder)
    kv = KV_HEADS * HIDDEN // HEADS
    for layer in range(LAYERS):
        for proj, (out_f, in_f) in {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (kv, HIDDEN),
                                    "self_attn.v_proj": (kv, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
                                    "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN),
                                    "mlp.down_proj": (HIDDEN, INTER)}.items():
            base = f"model.layers.{layer}.{proj}"
            assert f"{base}.weight" not in t
            groups = in_f // GROUP
            assert t[f"{base}.scales"].dtype == np.float16 and t[f"{base}.scales"].shape == (groups, out_f)
            assert t[f"{base}.qweight"].dtype == np.int32 and t[f"{base}.qzeros"].dtype == np.int32
            if method == "awq":  # packed along the output dim, no g_idx
                assert t[f"{base}.qweight"].shape == (in_f, out_f // 8) and f"{base}.g_idx" not in t
            else:  # packed along the input dim
                assert t[f"{base}.qweight"].shape == (in_f // 8, out_f)
                assert t[f"{base}.qzeros"].shape == (groups, out_f // 8)
                g_idx = t[f"{base}.g_idx"]
                assert np.array_equal(np.bincount(g_idx), [GROUP] * groups)  # every group whole
                assert (method == "gptq") == (not np.array_equal(g_idx, np.arange(in_f) // GROUP))  # act-order
    # the LM head is quantized by default (GPTQModel's "lm_head": true); this model's is untied, so the embedding
    # stays float16
    assert qc["lm_head"] is True and "lm_head.weight" not in t
    vocab = t["model.embed_tokens.weight"].shape[0]
    assert t["model.embed_tokens.weight"].dtype == np.float16 and t["lm_head.scales"].shape == (HIDDEN // GROUP, vocab)
    assert t["lm_head.qweight"].shape == ((HIDDEN, vocab // 8) if method == "awq" else (HIDDEN // 8, vocab))


def test_no_quantize_lm_head_keeps_the_head_in_float16(model_dir, tmp_path):
    folder = tmp_path / "model"
    r = CliRunner().invoke(app, ["quantize", "--model", str(model_dir), "--out", str(folder), "--method", "rtn",
                                 "--group-size", str(GROUP), "--no-quantize-lm-head"])
    assert r.exit_code == 0, r.output
    assert "14 linears in 2 layers;" in r.stdout and "LM head" not in r.stdout
    t = _tensors(folder)
    assert t["lm_head.weight"].dtype == np.float16 and "lm_head.qweight" not in t
    assert json.loads((folder / "config.json").read_text())["quantization_config"]["lm_head"] is False
    llm = LLM(folder)
    assert type(llm.model.lm_head).__name__ == "Linear"


def _relative_logit_error(model_dir, folder, ids) -> float:
    want = LLM(model_dir).score(ids)
    got = LLM(folder).score(ids)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want - want.mean()))


@pytest.mark.parametrize("method", list(CASES))
def test_the_quantized_model_loads_and_its_logits_stay_close(model_dir, quantized, texts, method):
    folder, r = quantized[method]
    assert r.exit_code == 0, r.output
    llm = LLM(folder)
    assert llm.config.num_layers == LAYERS
    ids = llm.tokenizer.encode(texts[1][:2000])[:200]
    err = _relative_logit_error(model_dir, folder, ids)
    assert err < LOGIT_TOLERANCE, (method, err)


def test_gptq_and_awq_stay_closer_to_the_float_model_than_rtn(model_dir, quantized, texts):
    ids = LLM(model_dir).tokenizer.encode(texts[1][:2000])[:200]
    errors = {m: _relative_logit_error(model_dir, quantized[m][0], ids) for m in CASES}
    # NOTE: AWQ's gain here is small (measured 0.98x RTN): random weights give activations without the outlier
    # channels it protects; tests/test_quant_methods.py measures it on a layer and a block (0.63-0.79x)
    assert errors["gptq"] < 0.85 * errors["rtn"] and errors["awq"] < errors["rtn"], errors


def _zt(*args):
    return subprocess.run([sys.executable, "-m", "zigtensor_cli", *map(str, args)], capture_output=True, text=True)


def test_bad_arguments_exit_1_with_one_line(model_dir, tmp_path):
    r = _zt("quantize", "--model", model_dir, "--out", tmp_path / "a", "--bits", "3")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "bits=3 is not supported in the gptq layout; expected one of [4, 8]" in r.stderr
    r = _zt("quantize", "--model", model_dir, "--out", tmp_path / "b", "--method", "awq", "--group-size", "48")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "group_size=48 does not divide in_features=128; the AWQ layout needs whole groups" in r.stderr
    r = _zt("quantize", "--model", tmp_path / "missing", "--out", tmp_path / "c", "--method", "rtn")
    assert r.returncode == 1 and "no such file or folder" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_smollm2_quantized_with_rtn_answers_like_the_float_model(tmp_path):
    path = smollm2_gguf()
    out = tmp_path / "smollm2-rtn"
    r = CliRunner().invoke(app, ["quantize", "--model", path, "--out", str(out), "--method", "rtn", "--group-size",
                                 "64"])
    assert r.exit_code == 0, r.output
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    params = SamplingParams(max_tokens=12, temperature=0)
    want = LLM(path).chat(messages, params)[0].text
    got = LLM(out).chat(messages, params)[0].text
    assert "Paris" in want and "Paris" in got, (want, got)


def test_bench_perplexity_matches_transformers_cross_entropy(model_dir, texts):
    """The perplexity `zt bench quant` reports is exp(mean cross-entropy of each next token), window by window."""
    from zigtensor.bench.quant import perplexity

    llm = LLM(model_dir)
    ids = np.asarray(llm.tokenizer.encode(texts[1][:3000])[:150])
    hf = transformers.LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    losses, counts = [], []
    for start in range(0, len(ids), 64):  # windows of 64 tokens, as perplexity(window=64) cuts them
        chunk = torch.tensor(ids[start:start + 64])[None]
        if chunk.shape[1] < 2:
            continue
        with torch.no_grad():
            losses.append(float(hf(chunk, labels=chunk).loss) * (chunk.shape[1] - 1))
        counts.append(chunk.shape[1] - 1)
    want = float(np.exp(sum(losses) / sum(counts)))
    np.testing.assert_allclose(perplexity(llm.model, ids, 64), want, rtol=1e-4)
