"""A quantized LM head, and with tied word embeddings the token embedding looked up in that same packed matrix.

- QuantEmbedding lookups equal a reference dequantizer written here from the GPTQ layout's definition (qweight
  words packed along the input dim, qzeros along the output dim, zero points stored minus one), then indexed by
  token id; a lookup dequantizes only the rows of its ids.
- Folders in GPTQModel's convention (`"lm_head": true`, lm_head.qweight / .qzeros / .scales / .g_idx): a tied
  Llama (its float embed_tokens dropped for the head's rows) and an untied one give transformers' logits and
  greedy tokens for the dequantized weights; inconsistent folders are errors; a folder without a quantized head
  still loads.
- quantize_model on a random tied Llama: the head is written once, packed, the folder loads with its logits close
  to the float model's, and every array the loaded model holds is < 0.3x the float16 model's bytes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from oracle import oracle, torch
from test_quant_load import PROJ, hf_logits, rtn

import zigtensor as zt
from zigtensor import nn
from zigtensor.io.safetensors import load_file, save_file
from zigtensor.llm import LLM, SamplingParams
from zigtensor.llm.loader import load_model
from zigtensor.quant import QuantConfig, QuantFormatError, QuantizedWeight, pack_gptq
from zigtensor.quant.install import quantized_layers
from zigtensor.quant.qembedding import QuantEmbedding
from zigtensor.quant.qlinear import QuantLinear

transformers = oracle("transformers")

VOCAB, HIDDEN, INTER = 200, 128, 256


# ------------------------------------------------------------------------------------ reference dequantizer
def reference_rows(qweight, qzeros, scales, g_idx, bits, ids, zero_minus_one=True):
    """Rows `ids` of W (out, in) read straight from GPTQ tensors: code[o, i] is bits [b*(i%k), b*(i%k+1)) of
    qweight[i // k, o], zero[g, o] those of qzeros[g, o // k] (plus one in the original format), k = 32 / b,
    W[o, i] = (code[o, i] - zero[g_idx[i], o]) * scales[g_idx[i], o]."""
    k, mask = 32 // bits, (1 << bits) - 1
    words = qweight.view(np.uint32)
    zwords = qzeros.view(np.uint32)
    in_f = words.shape[0] * k
    out = np.zeros((len(ids), in_f), np.float64)
    for r, o in enumerate(ids):
        for i in range(in_f):
            g = g_idx[i]
            code = (int(words[i // k, o]) >> (bits * (i % k))) & mask
            zero = ((int(zwords[g, o // k]) >> (bits * (o % k))) & mask) + zero_minus_one
            out[r, i] = (code - zero) * float(scales[g, o])
    return out


def _random_weight(rng, out_f, in_f, bits, group_size, act_order, name):
    n_groups = -(-in_f // group_size)
    g_idx = np.arange(in_f, dtype=np.int32) // group_size
    if act_order:
        g_idx = g_idx[rng.permutation(in_f)]
    maxq = (1 << bits) - 1
    scales = rng.uniform(0.01, 0.1, (n_groups, out_f)).astype(np.float16).astype(np.float32)
    zeros = rng.integers(1, maxq + 1, (n_groups, out_f))   # >= 1: the original GPTQ format stores zero - 1
    return QuantizedWeight(rng.integers(0, maxq + 1, (out_f, in_f)), scales, zeros, g_idx, bits, group_size, name=name)


@pytest.mark.parametrize("bits,group_size,act_order", [(4, 32, False), (4, 64, True), (4, 48, False), (8, 32, True)])
def test_lookup_equals_dequantize_then_index(bits, group_size, act_order):
    rng = np.random.default_rng(bits + group_size + act_order)
    qw = _random_weight(rng, 96, 80, bits, group_size, act_order, "lm_head")   # 80 inputs: a ragged last group
    packed = pack_gptq(qw, "gptq")
    table = QuantLinear.from_weights([qw])
    wte = QuantEmbedding(table)
    ids = rng.integers(0, 96, (3, 5))
    got = wte(zt.tensor(ids)).numpy()
    assert got.shape == (3, 5, 80) and got.dtype == np.float32
    want = reference_rows(packed["qweight"], packed["qzeros"], packed["scales"].astype(np.float32), packed["g_idx"],
                          bits, ids.reshape(-1)).reshape(3, 5, 80)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_lookup_over_parts_of_different_layouts():
    rng = np.random.default_rng(5)
    parts = [_random_weight(rng, 40, 64, 4, 32, True, "a"), _random_weight(rng, 24, 64, 8, 16, False, "b")]
    table = QuantLinear.from_weights(parts)
    assert len(table.parts) == 2
    ids = np.array([[63, 0, 40, 39, 17, 63]])
    want = np.concatenate([w.dequantize() for w in parts])[ids]
    np.testing.assert_array_equal(QuantEmbedding(table)(zt.tensor(ids)).numpy(), want)


def test_a_lookup_dequantizes_only_the_rows_of_its_ids(monkeypatch):
    rng = np.random.default_rng(6)
    table = QuantLinear.from_weights([_random_weight(rng, 4096, 64, 4, 32, False, "lm_head")])
    seen = []
    gathered = QuantLinear._gathered_rows

    def spy(self, i, part, local, xp):
        seen.append(int(local.shape[0]))
        return gathered(self, i, part, local, xp)

    def whole_table(*args, **kwargs):
        raise AssertionError("the whole table was dequantized for a lookup")

    monkeypatch.setattr(QuantLinear, "_gathered_rows", spy)
    monkeypatch.setattr(QuantLinear, "_tile", whole_table)
    monkeypatch.setattr(QuantLinear, "dequantize", whole_table)
    QuantEmbedding(table)(zt.tensor(np.array([[1, 2, 3], [4000, 5, 6]])))
    assert seen == [6]


def test_bad_ids_and_tables_are_errors():
    rng = np.random.default_rng(7)
    wte = QuantEmbedding(QuantLinear.from_weights([_random_weight(rng, 16, 32, 4, 32, False, "t")]))
    with pytest.raises(IndexError, match=r"token id 16 is out of range; expected ids in \[0, 15\]"):
        wte(zt.tensor(np.array([[3, 16]])))
    with pytest.raises(IndexError, match=r"token id -1"):
        wte(zt.tensor(np.array([[-1]])))
    with pytest.raises(TypeError, match="expected integer token ids"):
        wte(zt.tensor(np.zeros((1, 2), np.float32)))
    with pytest.raises(TypeError, match="expected the QuantLinear"):
        QuantEmbedding(nn.Linear(4, 4))


# ------------------------------------------------------------------------------------------ GPTQModel folders
def make_folder(tmp_path, tied: bool, quantize_head: bool = True, group_size: int = 32, act_order: bool = False,
                seed: int = 0, head_group_size: int | None = None):
    """A Llama whose linears (and head, when quantize_head) are RTN-quantized in the GPTQ layout, written as
    GPTQModel writes a quantized lm_head (head_group_size: the head's own group size, a "dynamic" override), and
    the transformers model holding the dequantized weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, tie_word_embeddings=tied)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
    folder = tmp_path / f"tied{tied}-head{quantize_head}-g{group_size}-act{act_order}-h{head_group_size}"
    hf.save_pretrained(folder)
    tensors = {k: v.numpy() for k, v in load_file(folder / "model.safetensors").items()}
    state = dict(hf.named_parameters())
    bases = [f"model.layers.{i}.{proj}" for i in range(2) for proj in PROJ] + (["lm_head"] if quantize_head else [])
    for base in bases:
        source = "model.embed_tokens.weight" if base == "lm_head" and tied else base + ".weight"
        gs = head_group_size if base == "lm_head" and head_group_size else group_size
        qw = rtn(tensors[source], 4, gs, act_order, 1, rng, base)
        tensors.pop(base + ".weight", None)
        tensors.update({f"{base}.{k}": v for k, v in pack_gptq(qw, "gptq").items()})
        with torch.no_grad():   # tied: the embedding is the head's weight, so both become the dequantized matrix
            (hf.lm_head.weight if base == "lm_head" else state[base + ".weight"]).copy_(
                torch.from_numpy(qw.dequantize()))
        if base == "lm_head" and tied:   # the float copy other readers need, as quant/export.py writes it
            tensors["model.embed_tokens.weight"] = qw.dequantize().astype(np.float16)
    (folder / "model.safetensors").unlink()
    save_file({k: zt.tensor(v) for k, v in tensors.items()}, folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    dynamic = {"+:^lm_head$": {"group_size": head_group_size}} if head_group_size else {}
    cfg["quantization_config"] = QuantConfig(method="gptq", bits=4, group_size=group_size, desc_act=act_order,
                                             lm_head=quantize_head, dynamic=dynamic).to_hf_dict()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder, hf


@pytest.mark.parametrize("tied,act_order,head_group_size", [(True, False, None), (True, True, None),
                                                            (False, False, None), (True, False, 16)],
                         ids=["tied", "tied-act-order", "untied", "tied-own-group-size"])
def test_quantized_head_folder_gives_transformers_logits(tmp_path, tied, act_order, head_group_size):
    folder, hf = make_folder(tmp_path, tied, act_order=act_order, head_group_size=head_group_size)
    model = load_model(folder).model
    assert isinstance(model.lm_head, QuantLinear) and "lm_head" in quantized_layers(model)
    if tied:   # one packed matrix, two uses; no float table anywhere
        assert isinstance(model.transformer.wte, QuantEmbedding) and model.transformer.wte.table is model.lm_head
        assert not any(p.shape == (VOCAB, HIDDEN) for p in model.parameters())
    else:
        assert type(model.transformer.wte) is nn.Embedding
    assert model.lm_head.parts[0].group_size == (head_group_size or 32)
    x = np.random.default_rng(1).integers(0, VOCAB, (2, 9))
    want = hf_logits(hf, x)
    assert np.abs(model.logits(zt.tensor(x)).numpy() - want).max() < 1e-4
    assert np.abs(model.logits(zt.tensor(x[:1])).numpy() - want[:1]).max() < 1e-4


def test_generation_with_a_tied_quantized_head_matches_transformers(tmp_path):
    """Prefill and decode steps (the cached paths on arrays: LLM's and the engine's) through the packed embedding
    and head."""
    folder, hf = make_folder(tmp_path, tied=True, act_order=True)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    prompts = [[5, 17, 3, 44], [9, 2]]
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    wants = []
    for prompt in prompts:
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False)
        wants.append(out[0, len(prompt):].tolist())
    assert [out.token_ids for out in LLM(folder).generate(prompts, params)] == wants
    # the serving engine's runner (the paged cache, every sequence's tokens in one row)
    from zigtensor.engine import EngineConfig, LLMEngine
    from zigtensor.engine.llm_runner import TransformerRunner

    engine = LLMEngine(TransformerRunner(load_model(folder).model), None,
                       EngineConfig(block_size=4, max_model_len=64, max_num_seqs=4, max_num_batched_tokens=16,
                                    kv_blocks=32))
    assert [out.outputs[0].token_ids for out in engine.generate(prompts, params)] == wants


def test_a_tied_quantized_head_needs_no_float_embedding(tmp_path):
    """A writer that leaves model.embed_tokens.weight out (it is the head's matrix) loads the same."""
    folder, hf = make_folder(tmp_path, tied=True)
    tensors = {k: v.numpy() for k, v in load_file(folder / "model.safetensors").items()}
    del tensors["model.embed_tokens.weight"]
    save_file({k: zt.tensor(v) for k, v in tensors.items()}, folder / "model.safetensors")
    x = np.arange(11)[None]
    assert np.abs(load_model(folder).model.logits(zt.tensor(x)).numpy() - hf_logits(hf, x)).max() < 1e-4


def test_folders_without_a_quantized_head_still_load(tmp_path):
    folder, hf = make_folder(tmp_path, tied=True, quantize_head=False)
    model = load_model(folder).model
    assert type(model.transformer.wte) is nn.Embedding and type(model.lm_head) is nn.Linear
    assert model.lm_head.weight is model.transformer.wte.weight
    x = np.arange(7)[None]
    assert np.abs(model.logits(zt.tensor(x)).numpy() - hf_logits(hf, x)).max() < 1e-4


def test_head_flag_and_tensors_must_agree(tmp_path):
    folder, _ = make_folder(tmp_path, tied=True)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"]["lm_head"] = False
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(QuantFormatError, match=r'has lm_head\.qweight but .* does not say the LM head is quantized; '
                                               r'expected "lm_head": true'):
        load_model(folder)
    plain, _ = make_folder(tmp_path, tied=True, quantize_head=False)
    cfg = json.loads((plain / "config.json").read_text())
    cfg["quantization_config"]["lm_head"] = True
    (plain / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(QuantFormatError, match=r"says the LM head is quantized \(lm_head: true\), but the checkpoint "
                                               r"has no lm_head\.qweight"):
        load_model(plain)


def test_zt_info_lists_the_head_and_counts_the_tied_matrix_once(tmp_path):
    import re

    from typer.testing import CliRunner

    from zigtensor.llm.info import describe
    from zigtensor_cli.app import app

    folder, hf = make_folder(tmp_path, tied=True)
    info = describe(folder)
    head = {q.layer: q for q in info.quantization}["lm_head"]
    assert (head.method, head.bits, head.group_size, head.in_features, head.out_features, head.tied_embedding) == (
        "gptq", 4, 32, HIDDEN, VOCAB, True)
    assert info.parameters == sum(p.numel() for p in hf.parameters())   # the tied matrix once
    unpacked = info.parameters - sum(q.in_features * q.out_features for q in info.quantization)
    assert info.memory.weight_bytes == unpacked * 4 + sum(q.nbytes for q in info.quantization)   # no float table
    r = CliRunner().invoke(app, ["info", "--model", str(folder)])
    assert r.exit_code == 0, r.output
    assert "quantization: 15 linear layers" in r.output
    assert re.search(r"lm_head +gptq 4-bit, group size 32, also the token embedding \(tied\)", r.output), r.output
    untied, _ = make_folder(tmp_path, tied=False)
    head = {q.layer: q for q in describe(untied).quantization}["lm_head"]
    assert not head.tied_embedding and head.description == "gptq 4-bit, group size 32"


# ------------------------------------------------------------------------------------------------ quantize_model
def model_bytes(model) -> int:
    """Every array the model holds (parameters and buffers, each counted once)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t.data) not in seen:
            seen.add(id(t.data))
            total += t.data.nbytes
    return total


def test_quantize_model_writes_the_tied_head_once_and_it_loads_small(tmp_path):
    from zigtensor.quant.quantize import quantize_model

    torch.manual_seed(0)
    source = tmp_path / "float"
    config = transformers.LlamaConfig(vocab_size=1024, hidden_size=HIDDEN, intermediate_size=INTER,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, tie_word_embeddings=True)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
    hf.save_pretrained(source)
    out = tmp_path / "rtn"
    report = quantize_model(source, method="rtn", bits=4, group_size=128, out=out, progress=False)
    assert report.lm_head and report.quantized_linears == 2 * 7 + 1 and report.lm_head_group_size == 32
    written = load_file(out / "model.safetensors")
    assert "lm_head.weight" not in written and written["lm_head.qweight"].shape == (HIDDEN // 8, 1024)
    assert written["lm_head.scales"].shape == (HIDDEN // 32, 1024)   # the head's own groups of 32
    assert written["model.layers.0.mlp.up_proj.scales"].shape == (HIDDEN // 128, INTER)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["lm_head"] is True and qc["dynamic"] == {"+:^lm_head$": {"group_size": 32}}
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True

    fp = load_model(source).model
    q = load_model(out).model
    assert q.transformer.wte.table is q.lm_head
    # measured as loaded: a forward adds the rotary tables, a cache of positions, not weights
    fp16 = 2 * sum(p.numel() for p in fp.parameters())
    assert model_bytes(q) < 0.3 * fp16, (model_bytes(q), fp16)
    ids = np.random.default_rng(0).integers(0, 1024, (1, 40))
    want, got = fp.logits(zt.tensor(ids)).numpy(), q.logits(zt.tensor(ids)).numpy()
    # measured 0.15 (4-bit, groups of 128 and the head's of 32, every matrix of this random model quantized by RTN;
    # 0.10 with a float head); the head's rows shifted by one give 1.6
    err = np.linalg.norm(got - want) / np.linalg.norm(want - want.mean())
    assert err < 0.3, err
    # the embedding written for other readers is the packed head dequantized (what our lookups give)
    np.testing.assert_allclose(written["model.embed_tokens.weight"].numpy().astype(np.float32),
                               q.lm_head.dequantize(), rtol=1e-3, atol=1e-4)

    # the head in AutoAWQ's GEMM layout (packed along the output dim; one group size, AutoAWQ's config has no
    # per-module one) gives what the GPTQ layout gives with the head at group size 128
    same = tmp_path / "rtn-head-g128"
    quantize_model(source, method="rtn", bits=4, group_size=128, out=same, progress=False, lm_head_group_size=128)
    awq = tmp_path / "rtn-awq-layout"
    quantize_model(source, method="rtn", bits=4, group_size=128, out=awq, layout="awq", progress=False)
    assert load_file(awq / "model.safetensors")["lm_head.qweight"].shape == (HIDDEN, 1024 // 8)
    a = load_model(awq).model
    assert isinstance(a.transformer.wte, QuantEmbedding)
    # (the same RTN grids: no group of this model is all positive, where the original GPTQ format's zero points
    # >= 1 would differ)
    np.testing.assert_allclose(a.logits(zt.tensor(ids)).numpy(), load_model(same).model.logits(zt.tensor(ids)).numpy(),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"lm_head_group_size=32 differs from group_size=128, which the AWQ layout "
                                         "cannot say"):
        quantize_model(source, method="rtn", group_size=128, out=tmp_path / "x", layout="awq", lm_head_group_size=32)

    from zigtensor.llm.info import describe

    head = {q.layer: q for q in describe(out).quantization}["lm_head"]
    assert (head.group_size, head.tied_embedding) == (32, True)

    kept = tmp_path / "rtn-float-head"
    quantize_model(source, method="rtn", bits=4, group_size=128, out=kept, progress=False, quantize_lm_head=False)
    assert "lm_head.qweight" not in load_file(kept / "model.safetensors")
    assert type(load_model(kept).model.transformer.wte) is nn.Embedding


def test_dynamic_overrides_pick_a_layers_settings():
    cfg = QuantConfig.from_dict({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False,
                                 "dynamic": {"-:.*down_proj": {}, "+:^lm_head$": {"group_size": 32},
                                             r"model\.layers\.0\..*": {"bits": 8, "desc_act": True},
                                             "lm_.*": {"group_size": 64}}}, source="config.json")
    head = cfg.for_layer("lm_head")   # the first matching pattern wins
    assert (head.bits, head.group_size, head.desc_act) == (4, 32, False) and "dynamic['+:^lm_head$']" in head.source
    first = cfg.for_layer("model.layers.0.self_attn.q_proj")
    assert (first.bits, first.group_size, first.desc_act) == (8, 128, True)
    assert cfg.for_layer("model.layers.0.mlp.down_proj") is cfg and cfg.for_layer("model.layers.1.mlp.up_proj") is cfg
    assert QuantConfig.from_dict(cfg.to_hf_dict()).dynamic == cfg.dynamic
    with pytest.raises(QuantFormatError, match=r"dynamic pattern '\+:\(' is not a valid regular expression"):
        QuantConfig.from_dict({"quant_method": "gptq", "dynamic": {"+:(": {}}})
    bad = QuantConfig.from_dict({"quant_method": "gptq", "dynamic": {"lm_head": {"bits": 3}}}, source="q.json")
    with pytest.raises(QuantFormatError, match=r"q\.json dynamic\['lm_head'\]: bits=3 is not supported"):
        bad.for_layer("lm_head")
