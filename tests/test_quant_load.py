"""Quantized checkpoints through zigtensor.llm.load_model / LLM: random-weight Llamas (transformers, offline) whose
linears this test quantizes with its own round-to-nearest and packs as GPTQ and AWQ folders; our logits against
transformers running the dequantized weights. GGUF files loaded with keep_quantized against the dequantized load.
Malformed folders raise QuantFormatError naming the layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from llm_fixtures import write_gguf
from oracle import oracle, torch

import zigtensor as zt
from zigtensor.io.safetensors import load_file, save_file
from zigtensor.llm import LLM, SamplingParams
from zigtensor.llm.loader import load_model
from zigtensor.quant import QuantConfig, QuantFormatError, QuantizedWeight, pack_awq, pack_gptq
from zigtensor.quant.install import quantized_layers
from zigtensor.quant.qlinear import KERNEL_MAX_ROWS, QuantLinear

transformers = oracle("transformers")

VOCAB = 101
PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj")


def rtn(w: np.ndarray, bits: int, group_size: int, act_order: bool, min_zero: int, rng, name: str):
    """Round-to-nearest, asymmetric, per (row, group); act-order: groups over a random column permutation."""
    out_f, in_f = w.shape
    maxq = (1 << bits) - 1
    gs = in_f if group_size == -1 else group_size
    order = rng.permutation(in_f) if act_order else np.arange(in_f)
    g_idx = np.empty(in_f, np.int32)
    g_idx[order] = np.arange(in_f) // gs
    n_groups = -(-in_f // gs)
    codes = np.zeros((out_f, in_f), np.uint8)
    scales = np.zeros((n_groups, out_f), np.float32)
    zeros = np.zeros((n_groups, out_f), np.int32)
    for g in range(n_groups):
        cols = np.nonzero(g_idx == g)[0]
        lo = np.minimum(w[:, cols].min(axis=1), 0)
        hi = np.maximum(w[:, cols].max(axis=1), 0)
        s = np.maximum(hi - lo, 1e-6) / maxq
        s = s.astype(np.float16).astype(np.float32)   # the checkpoint stores float16 scales
        z = np.clip(np.round(-lo / s), min_zero, maxq)
        codes[:, cols] = np.clip(np.round(w[:, cols] / s[:, None]) + z[:, None], 0, maxq)
        scales[g], zeros[g] = s, z
    return QuantizedWeight(codes, scales, zeros, g_idx, bits, group_size, name=name)


def make_folder(tmp_path, method: str, bits: int = 4, group_size: int = 32, act_order: bool = False,
                fmt: str = "gptq", where: str = "config", arch: str = "llama", seed: int = 0):
    """A quantized HF folder and the transformers model holding its dequantized weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    kw = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)
    if arch == "qwen2":
        hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**kw)).eval()
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
    folder = tmp_path / f"{method}-{bits}-{group_size}-{act_order}-{fmt}-{where}-{arch}"
    hf.save_pretrained(folder)
    tensors = {k: v.numpy() for k, v in load_file(folder / "model.safetensors").items()}
    qcfg = QuantConfig(method=method, bits=bits, group_size=group_size, desc_act=act_order,
                       checkpoint_format="gemm" if method == "awq" else fmt)
    state = dict(hf.named_parameters())
    for i in range(2):
        for proj in PROJ:
            base = f"model.layers.{i}.{proj}"
            qw = rtn(tensors.pop(base + ".weight"), bits, group_size, act_order, 1 if fmt == "gptq" else 0, rng,
                     base)
            packed = pack_awq(qw) if method == "awq" else pack_gptq(qw, fmt)
            tensors.update({f"{base}.{k}": v for k, v in packed.items()})
            with torch.no_grad():
                state[base + ".weight"].copy_(torch.from_numpy(qw.dequantize()))
    (folder / "model.safetensors").unlink()
    save_file({k: zt.tensor(v) for k, v in tensors.items()}, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    if where == "config":
        config["quantization_config"] = qcfg.to_hf_dict()
    else:
        name, sidecar = qcfg.sidecar()
        (folder / name).write_text(json.dumps(sidecar))
    (folder / "config.json").write_text(json.dumps(config))
    return folder, hf


def hf_logits(hf, x):
    with torch.no_grad():
        return hf(torch.from_numpy(x)).logits.numpy()


CASES = [
    dict(method="gptq", bits=4, group_size=32),
    dict(method="gptq", bits=4, group_size=64, act_order=True),
    dict(method="gptq", bits=4, group_size=128, fmt="gptq_v2", where="sidecar"),
    dict(method="gptq", bits=8, group_size=-1, act_order=True),
    dict(method="gptq", bits=8, group_size=32, fmt="gptq_v2", arch="qwen2"),
    dict(method="awq", bits=4, group_size=32),
    dict(method="awq", bits=4, group_size=128, where="sidecar", arch="qwen2"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_quantized_folder_logits_equal_the_dequantized_model(tmp_path, case):
    folder, hf = make_folder(tmp_path, **case)
    loaded = load_model(folder)
    layers = quantized_layers(loaded.model)
    assert len(layers) == 2 * 4   # c_attn (q, k, v fused), c_proj, c_fc (gate, up fused), mlp.c_proj per block
    for layer in layers.values():
        assert all(p.bits == case["bits"] and p.method == case["method"] for p in layer.parts)
    x = np.random.default_rng(1).integers(0, VOCAB, (2, 9))
    want = hf_logits(hf, x)
    got = loaded.model.logits(zt.tensor(x)).numpy()
    assert np.abs(got - want).max() < 1e-4
    # batch 1 (the matrix-vector path) and a cached decode step agree too
    one = loaded.model.logits(zt.tensor(x[:1])).numpy()
    assert np.abs(one - want[:1]).max() < 1e-4


def test_llm_generates_from_a_gptq_folder_as_transformers_does(tmp_path):
    folder, hf = make_folder(tmp_path, "gptq", 4, 32, act_order=True)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    prompts = [[5, 17, 3, 44], [9, 2]]   # batched: prefill and decode steps of two rows through the QuantLinears
    outs = LLM(folder).generate(prompts, SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
    for prompt, out in zip(prompts, outs):
        with torch.no_grad():
            want = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)[0, len(prompt):]
        assert out.token_ids == want.tolist()


def test_resident_weight_bytes_at_most_0_3x_fp16(tmp_path):
    folder, _ = make_folder(tmp_path, "gptq", 4, 128)
    layers = quantized_layers(load_model(folder).model)
    packed = sum(m.weight_nbytes() for m in layers.values())
    fp16 = sum(2 * m.in_features * m.out_features for m in layers.values())
    assert packed <= 0.3 * fp16, (packed, fp16)


# ------------------------------------------------------------------------------------------------ malformed
def _rewrite(folder, change_tensors=None, change_config=None):
    if change_tensors is not None:
        tensors = {k: v.numpy() for k, v in load_file(folder / "model.safetensors").items()}
        change_tensors(tensors)
        save_file({k: zt.tensor(v) for k, v in tensors.items()}, folder / "model.safetensors")
    if change_config is not None:
        config = json.loads((folder / "config.json").read_text())
        change_config(config)
        (folder / "config.json").write_text(json.dumps(config))


def test_malformed_folders_name_the_layer(tmp_path):
    folder, _ = make_folder(tmp_path, "gptq", 4, 32)
    q = "model.layers.1.self_attn.k_proj"
    _rewrite(folder, change_config=lambda c: c["quantization_config"].update(bits=8))
    with pytest.raises(QuantFormatError, match=r"'model\.layers\.0\.self_attn\.q_proj'.*qweight has shape "
                                               r"\(16, 128\); expected \(32, 128\)"):
        load_model(folder)
    _rewrite(folder, change_config=lambda c: c["quantization_config"].update(bits=4, group_size=64))
    with pytest.raises(QuantFormatError, match=r"q_proj'.*scales has shape \(4, 128\); expected \(2, 128\)"):
        load_model(folder)
    _rewrite(folder, change_config=lambda c: c["quantization_config"].update(group_size=32, bits=3))
    with pytest.raises(QuantFormatError, match=r"bits=3 is not supported for gptq"):
        load_model(folder)
    _rewrite(folder, change_config=lambda c: c["quantization_config"].update(bits=4),
             change_tensors=lambda t: t.pop(q + ".qzeros"))
    with pytest.raises(QuantFormatError, match=rf"'{q}': the checkpoint has no 'qzeros' tensor; expected one of "
                                               r"shape \(4, 8\)"):
        load_model(folder)
    _rewrite(folder, change_config=lambda c: c.pop("quantization_config"))
    with pytest.raises(QuantFormatError, match=r"has a model\.layers\.0\.self_attn\.q_proj\.qweight tensor but the "
                                               "checkpoint has no quantization config"):
        load_model(folder)


def test_config_without_quantized_tensors_is_an_error(tmp_path):
    folder, _ = make_folder(tmp_path, "awq", 4, 32)
    plain = tmp_path / "plain"
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
        max_position_embeddings=32)).save_pretrained(plain)
    (plain / "quant_config.json").write_text((folder / "config.json").read_text())
    _rewrite(plain, change_config=lambda c: c.update(
        quantization_config={"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm"}))
    (plain / "quant_config.json").unlink()
    with pytest.raises(QuantFormatError, match=r"awq 4-bit, but no layer has quantized tensors"):
        load_model(plain)


def test_fused_layer_with_one_part_unquantized_is_an_error(tmp_path):
    folder, _ = make_folder(tmp_path, "gptq", 4, 32)
    v = "model.layers.0.self_attn.v_proj"

    def dequantized_v(t):
        for k in ("qweight", "qzeros", "scales", "g_idx"):
            t.pop(f"{v}.{k}")
        t[v + ".weight"] = np.zeros((64, 128), np.float32)
    _rewrite(folder, change_tensors=dequantized_v)
    with pytest.raises(QuantFormatError, match=rf"transformer\.h\.0\.attn\.c_attn fuses .* \['{v}'\] are not"):
        load_model(folder)


# ------------------------------------------------------------------------------------------------------ GGUF
def _llama_gguf(tmp_path, types, tied: bool = False, embedding_type: str = "Q8_0"):
    layers, hidden, heads, kv_heads, ffn, vocab = 2, 256, 8, 2, 512, 300
    hd = hidden // heads
    t = {"token_embd.weight": ((vocab, hidden), embedding_type), "output_norm.weight": ((hidden,), "F32")}
    if not tied:  # a GGUF file ties the head to the embedding by leaving output.weight out
        t["output.weight"] = ((vocab, hidden), types[0])
    for i in range(layers):
        shapes = {"attn_q": (hidden, hidden), "attn_k": (kv_heads * hd, hidden), "attn_v": (kv_heads * hd, hidden),
                  "attn_output": (hidden, hidden), "ffn_gate": (ffn, hidden), "ffn_up": (ffn, hidden),
                  "ffn_down": (hidden, ffn)}
        for j, (name, shape) in enumerate(shapes.items()):
            t[f"blk.{i}.{name}.weight"] = (shape, types[(i * 7 + j) % len(types)])
        t[f"blk.{i}.attn_norm.weight"] = ((hidden,), "F32")
        t[f"blk.{i}.ffn_norm.weight"] = ((hidden,), "F32")
    md = {"llama.block_count": layers, "llama.context_length": 256, "llama.embedding_length": hidden,
          "llama.feed_forward_length": ffn, "llama.attention.head_count": heads,
          "llama.attention.head_count_kv": kv_heads, "llama.attention.layer_norm_rms_epsilon": 1e-5,
          "llama.rope.freq_base": 50000.0, "llama.vocab_size": vocab, "llama.rope.dimension_count": hd}
    return write_gguf(str(tmp_path / "llama.gguf"), "llama", md, t)


@pytest.mark.parametrize("types", [["Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"], ["Q4_K", "F16", "Q6_K"]],
                         ids=["five-types", "mixed-with-f16"])
def test_gguf_kept_quantized_equals_the_dequantized_load(tmp_path, types):
    oracle("gguf")
    path = _llama_gguf(tmp_path, types)
    plain, kept = load_model(path), load_model(path, keep_quantized=True)
    layers = quantized_layers(kept.model)
    seen = {p.ggml_type for m in layers.values() for p in m.parts}
    assert seen == set(types) - {"F16"}
    assert "lm_head" in layers and len(layers) >= 3   # a fused layer with an F16 part stays a float nn.Linear
    for name, layer in layers.items():
        assert layer.weight_nbytes() < 0.6 * 4 * layer.in_features * layer.out_features   # blocks, not float32
        np.testing.assert_array_equal(layer.dequantize(), plain.model.get_submodule(name).weight.numpy(), name)
    x = np.random.default_rng(0).integers(0, 300, (2, 7))
    want = plain.model.logits(zt.tensor(x)).numpy()
    assert np.abs(kept.model.logits(zt.tensor(x)).numpy() - want).max() < 1e-4 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("embedding_type", ["Q8_0", "Q4_K"])
def test_a_tied_gguf_embedding_stays_in_its_blocks_as_the_head(tmp_path, embedding_type):
    """The tied token embedding of a GGUF file kept quantized is one packed matrix: the LM head (QuantLinear) and
    the lookups (QuantEmbedding, only the ids' rows decoded), equal to the dequantized load."""
    from zigtensor.quant.qembedding import QuantEmbedding

    oracle("gguf")
    path = _llama_gguf(tmp_path, ["Q4_0", "Q8_0"], tied=True, embedding_type=embedding_type)
    plain, kept = load_model(path), load_model(path, keep_quantized=True)
    wte, head = kept.model.transformer.wte, kept.model.lm_head
    assert isinstance(wte, QuantEmbedding) and wte.table is head and isinstance(head, QuantLinear)
    assert [p.ggml_type for p in head.parts] == [embedding_type]
    np.testing.assert_array_equal(head.dequantize(), plain.model.transformer.wte.weight.numpy())
    x = np.random.default_rng(0).integers(0, 300, (2, 7))
    np.testing.assert_array_equal(wte(zt.tensor(x)).numpy(), plain.model.transformer.wte.weight.numpy()[x])
    want = plain.model.logits(zt.tensor(x)).numpy()
    assert np.abs(kept.model.logits(zt.tensor(x)).numpy() - want).max() < 1e-4 * max(1.0, np.abs(want).max())


def test_gguf_gpt2_conv1d_blocks_stay_quantized(tmp_path):
    oracle("gguf")
    layers, hidden, heads, vocab, ctx = 2, 64, 4, 200, 128
    t = {"token_embd.weight": ((vocab, hidden), "Q8_0"), "position_embd.weight": ((ctx, hidden), "F16"),
         "output_norm.weight": ((hidden,), "F32"), "output_norm.bias": ((hidden,), "F32"),
         "output.weight": ((vocab, hidden), "Q8_0")}
    for i in range(layers):
        t.update({
            f"blk.{i}.attn_norm.weight": ((hidden,), "F32"), f"blk.{i}.attn_norm.bias": ((hidden,), "F32"),
            f"blk.{i}.attn_qkv.weight": ((3 * hidden, hidden), "Q4_0"),
            f"blk.{i}.attn_qkv.bias": ((3 * hidden,), "F32"),
            f"blk.{i}.attn_output.weight": ((hidden, hidden), "Q4_1"), f"blk.{i}.attn_output.bias": ((hidden,), "F32"),
            f"blk.{i}.ffn_norm.weight": ((hidden,), "F32"), f"blk.{i}.ffn_norm.bias": ((hidden,), "F32"),
            f"blk.{i}.ffn_up.weight": ((4 * hidden, hidden), "Q8_0"), f"blk.{i}.ffn_up.bias": ((4 * hidden,), "F32"),
            f"blk.{i}.ffn_down.weight": ((hidden, 4 * hidden), "Q4_0"), f"blk.{i}.ffn_down.bias": ((hidden,), "F32"),
        })
    md = {"gpt2.block_count": layers, "gpt2.context_length": ctx, "gpt2.embedding_length": hidden,
          "gpt2.feed_forward_length": 4 * hidden, "gpt2.attention.head_count": heads,
          "gpt2.attention.layer_norm_epsilon": 1e-5, "tokenizer.ggml.tokens": [f"t{i}" for i in range(vocab)]}
    path = write_gguf(str(tmp_path / "gpt2.gguf"), "gpt2", md, t)
    plain, kept = load_model(path), load_model(path, keep_quantized=True)
    layers = quantized_layers(kept.model)
    assert len(layers) == 4 * layers_count(kept) + 1
    x = np.random.default_rng(0).integers(0, vocab, (1, 11))
    want = plain.model.logits(zt.tensor(x)).numpy()
    assert np.abs(kept.model.logits(zt.tensor(x)).numpy() - want).max() < 1e-4 * max(1.0, np.abs(want).max())


def layers_count(loaded) -> int:
    return loaded.config.num_layers


def test_quantlinear_is_what_the_transformer_runs(tmp_path):
    folder, _ = make_folder(tmp_path, "awq", 4, 32)
    model = load_model(folder).model
    assert isinstance(model.transformer.h[0].attn.c_attn, QuantLinear)
    assert model.transformer.h[0].attn.c_attn.out_features == (4 + 2 * 2) * 32
    assert not any(n.endswith("c_attn.weight") for n, _ in model.named_parameters())


# ------------------------------------------------------------------------------------------------------ zt info
def test_zt_info_lists_per_layer_quantization_and_kernels(tmp_path):
    from typer.testing import CliRunner

    from zigtensor.llm.info import describe
    from zigtensor_cli.app import app

    folder, hf = make_folder(tmp_path, "gptq", 4, 64, act_order=True)
    info = describe(folder)
    assert len(info.quantization) == 14 and info.parameters == sum(p.numel() for p in hf.parameters())
    q = {layer.layer: layer for layer in info.quantization}["model.layers.1.mlp.down_proj"]
    assert (q.method, q.bits, q.group_size, q.act_order, q.in_features, q.out_features) == ("gptq", 4, 64, True,
                                                                                            256, 128)
    assert q.kernel(1) == "cpu int4 dequantize-multiply kernel (cpu_kernels.py)"
    assert q.kernel(KERNEL_MAX_ROWS + 1) == "cpu int4 tiles dequantized by cpu_kernels.py + blas gemm"
    assert q.kernel(32, "cuda").startswith("cuda w4a16_gemm")
    packed = sum(layer.nbytes for layer in info.quantization)
    unpacked = info.parameters - sum(x.in_features * x.out_features for x in info.quantization)
    assert info.memory.weight_bytes == unpacked * 4 + packed   # the packed layers at their stored size
    r = CliRunner().invoke(app, ["info", "--model", str(folder)])
    assert r.exit_code == 0, r.output
    assert "quantization: 14 linear layers" in r.output
    assert "model.layers.0-1.mlp.down_proj" in r.output and "gptq 4-bit, group size 64, act-order" in r.output
    for line in ("1      cpu int4 dequantize-multiply kernel (cpu_kernels.py)", "cuda w4a16_gemv (quant.cu)",
                 "cpu int4 tiles dequantized by cpu_kernels.py + blas gemm", "cuda w4a16_gemm mma.sync (quant.cu)"):
        assert line in r.output, r.output
    awq, _ = make_folder(tmp_path, "awq", 4, 32, where="sidecar")
    layers = describe(awq).quantization
    assert {(x.method, x.group_size, x.act_order) for x in layers} == {("awq", 32, False)}
    assert {(x.in_features, x.out_features) for x in layers} >= {(128, 128), (128, 64), (128, 256), (256, 128)}


def test_zero_biases_of_unbiased_layers_are_dropped(tmp_path):
    """Some GPTQ exporters write a zero .bias beside every quantized layer; a non-zero one has no place."""
    from zigtensor.llm.weights import WeightsError

    folder, hf = make_folder(tmp_path, "gptq", 4, 32)
    q = "model.layers.0.self_attn.q_proj"
    _rewrite(folder, change_tensors=lambda t: t.update({f"{q}.bias": np.zeros(128, np.float16)}))
    x = np.arange(6)[None]
    assert np.abs(load_model(folder).model.logits(zt.tensor(x)).numpy() - hf_logits(hf, x)).max() < 1e-4
    _rewrite(folder, change_tensors=lambda t: t.update({f"{q}.bias": np.ones(128, np.float16)}))
    with pytest.raises(WeightsError, match=rf"unexpected tensors '{q}\.bias'"):
        load_model(folder)


def test_the_engine_serves_a_kept_quantized_gguf_like_its_dequantized_load(tmp_path):
    """Packed weights in the engine: the products on quant/cpu_kernels.py and the decode attention on numba's
    threads (the runner puts it there only for a model with packed weights); the greedy tokens of the float32
    load."""
    from zigtensor.engine import EngineConfig, LLMEngine
    from zigtensor.engine.llm_runner import TransformerRunner
    from zigtensor.llm import SamplingParams
    from zigtensor.quant import cpu_kernels

    oracle("gguf")
    path = _llama_gguf(tmp_path, ["Q4_0", "Q4_1", "Q8_0"])
    prompts = [[1, 5, 9, 33], list(range(2, 40)), [7], [3, 1, 4, 1, 5, 9, 2, 6]]
    tokens = {}
    for keep in (False, True):
        loaded = load_model(path, keep_quantized=keep)
        runner = TransformerRunner(loaded.model)
        assert runner.attention_threads == (cpu_kernels.threads() if keep else 1)
        config = EngineConfig(block_size=4, max_model_len=128, max_num_seqs=4, max_num_batched_tokens=16,
                              kv_blocks=64)
        outs = LLMEngine(runner, None, config).generate(prompts, SamplingParams(temperature=0, max_tokens=8,
                                                                                 ignore_eos=True))
        tokens[keep] = [o.outputs[0].token_ids for o in outs]
    assert tokens[True] == tokens[False] and all(len(t) == 8 for t in tokens[True])
