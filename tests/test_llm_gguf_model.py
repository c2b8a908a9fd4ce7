"""zigtensor.llm.gguf_model against transformers loading the same GGUF file (`gguf_file=`): tensors and config."""

from __future__ import annotations

import os

import numpy as np
import pytest
from llm_fixtures import smollm2_gguf, write_gguf
from oracle import oracle

from zigtensor.io import GGUFError
from zigtensor.io.gguf import open_gguf
from zigtensor.llm.gguf_model import load_gguf_checkpoint, unpermute_rotary_rows

torch = oracle("torch")
transformers = oracle("transformers")
oracle("gguf")
oracle("accelerate")


def _hf_model(path: str):
    return transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                             dtype=torch.float32)


def _assert_same_weights(ckpt, model, tied: bool, extra: set[str] = frozenset()):
    state = model.state_dict()
    expected = set(state) - ({"lm_head.weight"} if tied else set())
    assert set(ckpt.tensors) == expected | extra
    for name, value in ckpt.tensors.items():
        if name in extra:
            continue
        want = state[name].numpy()
        assert value.dtype == np.float32 and value.shape == want.shape, name
        np.testing.assert_array_equal(value, want, err_msg=name)


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(config, "rope_theta", None))


def _assert_llama_config(ours: dict, theirs):
    for key in ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings",
                "head_dim", "bos_token_id", "eos_token_id"):
        if key in ours and hasattr(theirs, key):  # Qwen2Config has no head_dim
            assert ours[key] == getattr(theirs, key), key
    assert ours["rms_norm_eps"] == pytest.approx(theirs.rms_norm_eps)
    assert ours["rope_theta"] == pytest.approx(_rope_theta(theirs))


# ----------------------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_gguf()
    return load_gguf_checkpoint(path), _hf_model(path)


def test_smollm2_tensors_equal_transformers(smollm2):
    ckpt, model = smollm2
    _assert_same_weights(ckpt, model, tied=True)
    assert ckpt.tensor_types["model.embed_tokens.weight"] == "Q8_0"
    assert ckpt.tensor_types["model.layers.0.self_attn.q_proj.weight"] == "Q4_1"
    assert ckpt.tensor_types["model.norm.weight"] == "F32"
    assert ckpt.gguf_names["model.layers.3.mlp.down_proj.weight"] == "blk.3.ffn_down.weight"


def test_smollm2_config_matches_transformers(smollm2):
    ckpt, model = smollm2
    _assert_llama_config(ckpt.config, model.config)
    assert ckpt.config["model_type"] == "llama" and ckpt.config["tie_word_embeddings"] is True
    assert (ckpt.config["num_attention_heads"], ckpt.config["num_key_value_heads"]) == (9, 3)
    assert "rope_scaling" not in ckpt.config and ckpt.rope_freq_factors is None


def test_smollm2_tokenizer_and_template(smollm2):
    ckpt, _ = smollm2
    assert ckpt.tokenizer is not None and ckpt.tokenizer.vocab_size == ckpt.config["vocab_size"]
    assert ckpt.chat_template == ckpt.tokenizer.chat_template and "<|im_start|>" in ckpt.chat_template
    assert ckpt.metadata["general.architecture"] == "llama"


# ------------------------------------------------------------------------------- synthetic models
def _llama_tensors(layers, hidden, heads, kv_heads, ffn, vocab, types, biases=False, output=True):
    head_dim = hidden // heads
    t = {"token_embd.weight": ((vocab, hidden), types[0]), "output_norm.weight": ((hidden,), "F32")}
    if output:
        t["output.weight"] = ((vocab, hidden), types[1 % len(types)])
    for i in range(layers):
        pick = [types[(i * 7 + 2 + j) % len(types)] for j in range(7)]  # every type appears across the layers
        t.update({
            f"blk.{i}.attn_norm.weight": ((hidden,), "F32"),
            f"blk.{i}.attn_q.weight": ((hidden, hidden), pick[0]),
            f"blk.{i}.attn_k.weight": ((kv_heads * head_dim, hidden), pick[1]),
            f"blk.{i}.attn_v.weight": ((kv_heads * head_dim, hidden), pick[2]),
            f"blk.{i}.attn_output.weight": ((hidden, hidden), pick[3]),
            f"blk.{i}.ffn_norm.weight": ((hidden,), "F32"),
            f"blk.{i}.ffn_gate.weight": ((ffn, hidden), pick[4]),
            f"blk.{i}.ffn_up.weight": ((ffn, hidden), pick[5]),
            f"blk.{i}.ffn_down.weight": ((hidden, ffn), pick[6]),
        })
        if biases:
            t.update({f"blk.{i}.attn_q.bias": ((hidden,), "F32"),
                      f"blk.{i}.attn_k.bias": ((kv_heads * head_dim,), "F32"),
                      f"blk.{i}.attn_v.bias": ((kv_heads * head_dim,), "F32")})
    return t


def _llama_metadata(arch, layers, hidden, heads, kv_heads, ffn, vocab, **extra):
    return {f"{arch}.block_count": layers, f"{arch}.context_length": 256, f"{arch}.embedding_length": hidden,
            f"{arch}.feed_forward_length": ffn, f"{arch}.attention.head_count": heads,
            f"{arch}.attention.head_count_kv": kv_heads, f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
            f"{arch}.rope.freq_base": 50000.0, f"{arch}.vocab_size": vocab, **extra}


ALL_TYPES = ["Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16", "F32"]


@pytest.mark.parametrize("arch,biases", [("llama", False), ("llama", True), ("qwen2", True)])
def test_synthetic_llama_family_equals_transformers(tmp_path, arch, biases):
    layers, hidden, heads, kv_heads, ffn, vocab = 2, 256, 8, 2, 512, 300
    path = write_gguf(str(tmp_path / f"{arch}.gguf"), arch,
                      _llama_metadata(arch, layers, hidden, heads, kv_heads, ffn, vocab,
                                      **{f"{arch}.rope.dimension_count": hidden // heads}),
                      _llama_tensors(layers, hidden, heads, kv_heads, ffn, vocab, ALL_TYPES, biases=biases))
    ckpt = load_gguf_checkpoint(path)
    model = _hf_model(path)
    # NOTE: transformers builds GGUF llamas without attention biases (it does not read them from the tensor
    # list), so a llama's biases are checked against the file directly: q and k unpermuted, v as stored.
    bias_names = {n for n in ckpt.tensors if n.endswith("_proj.bias")} if arch == "llama" else set()
    _assert_same_weights(ckpt, model, tied=False, extra=bias_names)
    _assert_llama_config(ckpt.config, model.config)
    assert ckpt.config["tie_word_embeddings"] is False and ckpt.config["model_type"] == arch
    assert set(ckpt.tensor_types.values()) == set(ALL_TYPES)
    assert ckpt.tokenizer is None
    if arch == "llama":
        assert ckpt.config["attention_bias"] is biases and len(bias_names) == (6 if biases else 0)
        f = open_gguf(path)
        for name in bias_names:
            raw = f.load(ckpt.gguf_names[name])
            n = heads if ".q_proj." in name else kv_heads
            want = raw if ".v_proj." in name else unpermute_rotary_rows(raw, n)
            np.testing.assert_array_equal(ckpt.tensors[name], want, err_msg=name)


def test_synthetic_gpt2_equals_transformers(tmp_path):
    # NOTE: transformers takes a GGUF GPT-2's vocabulary size from its tokens and keeps n_positions at 1024
    layers, hidden, heads, vocab, ctx = 2, 64, 4, 200, 1024
    t = {"token_embd.weight": ((vocab, hidden), "Q8_0"), "position_embd.weight": ((ctx, hidden), "F16"),
         "output_norm.weight": ((hidden,), "F32"), "output_norm.bias": ((hidden,), "F32"),
         "output.weight": ((vocab, hidden), "F16")}
    for i in range(layers):
        t.update({
            f"blk.{i}.attn_norm.weight": ((hidden,), "F32"), f"blk.{i}.attn_norm.bias": ((hidden,), "F32"),
            f"blk.{i}.attn_qkv.weight": ((3 * hidden, hidden), "Q4_0"),
            f"blk.{i}.attn_qkv.bias": ((3 * hidden,), "F32"),
            f"blk.{i}.attn_output.weight": ((hidden, hidden), "Q5_1"), f"blk.{i}.attn_output.bias": ((hidden,), "F32"),
            f"blk.{i}.ffn_norm.weight": ((hidden,), "F32"), f"blk.{i}.ffn_norm.bias": ((hidden,), "F32"),
            f"blk.{i}.ffn_up.weight": ((4 * hidden, hidden), "Q8_0"), f"blk.{i}.ffn_up.bias": ((4 * hidden,), "F32"),
            f"blk.{i}.ffn_down.weight": ((hidden, 4 * hidden), "F16"), f"blk.{i}.ffn_down.bias": ((hidden,), "F32"),
        })
    md = {"gpt2.block_count": layers, "gpt2.context_length": ctx, "gpt2.embedding_length": hidden,
          "gpt2.feed_forward_length": 4 * hidden, "gpt2.attention.head_count": heads,
          "gpt2.attention.layer_norm_epsilon": 1e-5, "tokenizer.ggml.tokens": [f"t{i}" for i in range(vocab)]}
    path = write_gguf(str(tmp_path / "gpt2.gguf"), "gpt2", md, t)
    ckpt = load_gguf_checkpoint(path)
    model = _hf_model(path)
    _assert_same_weights(ckpt, model, tied=False)
    assert ckpt.tensors["transformer.h.0.attn.c_attn.weight"].shape == (hidden, 3 * hidden)  # Conv1D: [in, out]
    c, theirs = ckpt.config, model.config
    assert (c["n_embd"], c["n_layer"], c["n_head"], c["n_positions"], c["vocab_size"]) == \
        (theirs.n_embd, theirs.n_layer, theirs.n_head, theirs.n_positions, theirs.vocab_size)
    assert c["n_inner"] == 4 * hidden and c["layer_norm_epsilon"] == pytest.approx(theirs.layer_norm_epsilon)


def test_rope_scaling_and_freq_factors(tmp_path):
    layers, hidden, heads, kv_heads, ffn, vocab = 1, 64, 4, 4, 128, 100
    tensors = _llama_tensors(layers, hidden, heads, kv_heads, ffn, vocab, ["F32"], output=False)
    tensors["rope_freqs.weight"] = ((hidden // heads // 2,), "F32")
    md = _llama_metadata("llama", layers, hidden, heads, kv_heads, ffn, vocab, **{
        "llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
        "llama.rope.scaling.original_context_length": 64})
    ckpt = load_gguf_checkpoint(write_gguf(str(tmp_path / "rope.gguf"), "llama", md, tensors))
    assert ckpt.config["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    assert ckpt.rope_freq_factors.shape == (hidden // heads // 2,)
    assert "rope_freqs.weight" not in ckpt.tensors and ckpt.config["tie_word_embeddings"] is True


# ------------------------------------------------------------------------------------- permutation
def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    # convert_hf_to_gguf.py's LlamaModel.permute: rows of each head as (2, head_dim/2), swapped to (head_dim/2, 2)
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("shape,heads", [((64, 32), 4), ((16, 8), 1), ((48,), 3)])
def test_unpermute_inverts_llama_cpp(shape, heads):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    permuted = _llama_cpp_permute(w, heads)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(unpermute_rotary_rows(permuted, heads), w)
    head_dim = shape[0] // heads
    # GGUF row 2i + j of a head is HF row j * head_dim/2 + i: pairs (x_i, x_{i + head_dim/2}) become adjacent
    np.testing.assert_array_equal(permuted[1], w[head_dim // 2])


# ------------------------------------------------------------------------------------------ errors
def test_unsupported_architecture_and_tensor(tmp_path):
    md = _llama_metadata("falcon", 1, 64, 4, 4, 128, 100)
    path = write_gguf(str(tmp_path / "falcon.gguf"), "falcon", md, {"token_embd.weight": ((100, 64), "F32")})
    with pytest.raises(GGUFError, match=r"architecture 'falcon' is not supported; supported: llama, qwen2, gpt2"):
        load_gguf_checkpoint(path)
    md = _llama_metadata("llama", 1, 64, 4, 4, 128, 100)
    tensors = _llama_tensors(1, 64, 4, 4, 128, 100, ["F32"])
    tensors["blk.0.mystery.weight"] = ((4,), "F32")
    path = write_gguf(str(tmp_path / "odd.gguf"), "llama", md, tensors)
    with pytest.raises(GGUFError, match=r"tensor 'blk.0.mystery.weight' has no place in a llama model"):
        load_gguf_checkpoint(path)
    del md["llama.embedding_length"]
    path = write_gguf(str(tmp_path / "nohidden.gguf"), "llama", md, {})
    with pytest.raises(GGUFError, match=r"metadata key 'llama.embedding_length' is missing"):
        load_gguf_checkpoint(path)
