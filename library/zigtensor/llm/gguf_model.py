"""A GGUF language-model checkpoint in Hugging Face form: config.json fields, HF tensor names, float32 weights.

    ckpt = load_gguf_checkpoint("SmolLM2-135M-Instruct.Q4_1.gguf")
    ckpt.config["num_key_value_heads"]                        # 3
    ckpt.tensors["model.layers.0.self_attn.q_proj.weight"]    # float32 (576, 576), equal to the HF weight
    ckpt.tensor_types["model.layers.0.self_attn.q_proj.weight"]   # 'Q4_1'
    ckpt.tokenizer.encode("Hello")

llama.cpp's converter (convert_hf_to_gguf.py) changes three things on the way from HF to GGUF, undone here:
  - names: `model.layers.N.self_attn.q_proj` -> `blk.N.attn_q` and so on (tables below);
  - for the `llama` architecture only, the rows of q_proj and k_proj (weights and biases) are permuted so that
    rotary embeddings can rotate adjacent pairs (GPT-J style) instead of the two halves of each head (HF, NeoX
    style): within each head, row (2i + j) of GGUF is row (j * head_dim/2 + i) of HF. Qwen2 and GPT-2 files
    are not permuted (llama.cpp runs them with NeoX-style rotation);
  - for GPT-2, HF's Conv1D weights [in, out] are stored transposed as [out, in]; we transpose them back.
Llama 3 style rope scaling is stored as a `rope_freqs.weight` tensor of per-frequency divisors rather than
config fields; it comes back as `rope_freq_factors` (the model divides its inverse frequencies by them).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.errors import GGUFError
from ..io.gguf import GGUFFile, open_gguf
from .tokenizer import Tokenizer, TokenizerError

# GGUF architecture -> (HF model_type, HF architectures entry)
GGUF_ARCHITECTURES = {
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "gpt2": ("gpt2", "GPT2LMHeadModel"),
}

# GGUF tensor name -> HF name; {n} is the layer index. Suffixes .weight/.bias are carried over.
_LLAMA_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{n}.attn_norm": "model.layers.{n}.input_layernorm",
    "blk.{n}.attn_q": "model.layers.{n}.self_attn.q_proj",
    "blk.{n}.attn_k": "model.layers.{n}.self_attn.k_proj",
    "blk.{n}.attn_v": "model.layers.{n}.self_attn.v_proj",
    "blk.{n}.attn_output": "model.layers.{n}.self_attn.o_proj",
    "blk.{n}.ffn_norm": "model.layers.{n}.post_attention_layernorm",
    "blk.{n}.ffn_gate": "model.layers.{n}.mlp.gate_proj",
    "blk.{n}.ffn_up": "model.layers.{n}.mlp.up_proj",
    "blk.{n}.ffn_down": "model.layers.{n}.mlp.down_proj",
}
_GPT2_NAMES = {
    "token_embd": "transformer.wte",
    "position_embd": "transformer.wpe",
    "output_norm": "transformer.ln_f",
    "output": "lm_head",
    "blk.{n}.attn_norm": "transformer.h.{n}.ln_1",
    "blk.{n}.attn_qkv": "transformer.h.{n}.attn.c_attn",
    "blk.{n}.attn_output": "transformer.h.{n}.attn.c_proj",
    "blk.{n}.ffn_norm": "transformer.h.{n}.ln_2",
    "blk.{n}.ffn_up": "transformer.h.{n}.mlp.c_fc",
    "blk.{n}.ffn_down": "transformer.h.{n}.mlp.c_proj",
}
_NAME_TABLES = {"llama": _LLAMA_NAMES, "qwen2": _LLAMA_NAMES, "gpt2": _GPT2_NAMES}
_GPT2_CONV1D = ("attn_qkv", "attn_output", "ffn_up", "ffn_down")  # GGUF stores these [out, in]; HF Conv1D [in, out]
_EXTRA_TENSORS = ("rope_freqs.weight",)  # not model weights in HF form; returned separately


@dataclass
class GGUFCheckpoint:
    path: str
    config: dict[str, Any]  # HF config.json fields
    tensors: dict[str, np.ndarray]  # HF name -> float32 weight
    tensor_types: dict[str, str]  # HF name -> ggml type in the file ('Q4_1', 'F32', ...)
    tokenizer: Tokenizer | None
    chat_template: str | None
    metadata: dict[str, Any]  # all GGUF metadata, plain Python values
    gguf_names: dict[str, str] = field(default_factory=dict)  # HF name -> GGUF tensor name
    rope_freq_factors: np.ndarray | None = None  # Llama 3 rope scaling: inverse frequencies are divided by these

    def __repr__(self) -> str:
        return (f"GGUFCheckpoint({os.path.basename(self.path)!r}, {self.config.get('model_type')}, "
                f"{len(self.tensors)} tensors, tokenizer={'yes' if self.tokenizer else 'no'})")


def unpermute_rotary_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary permutation of q_proj/k_proj rows (weights [out, in] or biases [out]).

    llama.cpp's converter views the rows of each head as (2, head_dim/2) and transposes them to
    (head_dim/2, 2); this views them as (head_dim/2, 2) and transposes back.
    """
    rows = weight.shape[0]
    if rows % (2 * n_heads):
        raise GGUFError(f"cannot undo the rotary permutation: {rows} rows is not a multiple of 2 * {n_heads} heads")
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _hf_name(gguf_name: str, table: dict[str, str]) -> str | None:
    base, dot, suffix = gguf_name.rpartition(".")
    if not dot or suffix not in ("weight", "bias"):
        return None
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", base)
    if m:
        pattern = table.get("blk.{n}." + m.group(2))
        return None if pattern is None else pattern.format(n=m.group(1)) + "." + suffix
    pattern = table.get(base)
    return None if pattern is None else pattern + "." + suffix


def _require(metadata: dict, key: str, path: str):
    if key not in metadata:
        raise GGUFError(f"{path}: metadata key {key!r} is missing (needed for the model config)")
    return metadata[key]


def gguf_config(f: GGUFFile) -> dict[str, Any]:
    """The HF config.json fields that a GGUF file's metadata (and tensor list) describe."""
    md, path = f.metadata, f.path
    arch = _require(md, "general.architecture", path)
    if arch not in GGUF_ARCHITECTURES:
        raise GGUFError(f"{path}: architecture {arch!r} is not supported; supported: "
                        f"{', '.join(GGUF_ARCHITECTURES)}")
    model_type, hf_class = GGUF_ARCHITECTURES[arch]

    def get(key, default=None):
        return md.get(f"{arch}.{key}", default)

    hidden = int(_require(md, f"{arch}.embedding_length", path))
    layers = int(_require(md, f"{arch}.block_count", path))
    heads = int(_require(md, f"{arch}.attention.head_count", path))
    ffn = int(_require(md, f"{arch}.feed_forward_length", path))
    tokens = md.get("tokenizer.ggml.tokens")
    vocab = get("vocab_size")
    if vocab is None:
        embd = f.tensors.get("token_embd.weight")
        vocab = embd.shape[0] if embd is not None else (len(tokens) if tokens else None)
    if vocab is None:
        raise GGUFError(f"{path}: cannot tell the vocabulary size (no {arch}.vocab_size, token_embd or tokens)")
    context = int(_require(md, f"{arch}.context_length", path))
    config: dict[str, Any] = {"model_type": model_type, "architectures": [hf_class], "vocab_size": int(vocab),
                              "tie_word_embeddings": "output.weight" not in f.tensors, "torch_dtype": "float32"}
    for key, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("padding_token_id", "pad_token_id")):
        if f"tokenizer.ggml.{key}" in md:
            config[name] = int(md[f"tokenizer.ggml.{key}"])

    if arch == "gpt2":
        config.update(n_embd=hidden, n_layer=layers, n_head=heads, n_inner=ffn, n_positions=context,
                      n_ctx=context, layer_norm_epsilon=float(get("attention.layer_norm_epsilon", 1e-5)),
                      activation_function="gelu_new")
        return config

    kv_heads = get("attention.head_count_kv", heads)
    if isinstance(kv_heads, list):  # per-layer counts; our transformer needs one
        if len(set(kv_heads)) != 1:
            raise GGUFError(f"{path}: per-layer KV head counts {sorted(set(kv_heads))} are not supported")
        kv_heads = kv_heads[0]
    head_dim = int(get("attention.key_length", get("rope.dimension_count", hidden // heads)))
    config.update(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=int(kv_heads), head_dim=head_dim, hidden_act="silu",
                  max_position_embeddings=context, rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
                  rope_theta=float(get("rope.freq_base", 10000.0)))
    rope_type = get("rope.scaling.type")
    factor = get("rope.scaling.factor", get("rope.scale_linear"))
    if rope_type not in (None, "none") or (rope_type is None and factor not in (None, 1.0)):
        scaling: dict[str, Any] = {"rope_type": rope_type or "linear", "factor": float(factor or 1.0)}
        original = get("rope.scaling.original_context_length")
        if original is not None:
            scaling["original_max_position_embeddings"] = int(original)
        for key, name in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow"),
                          ("yarn_ext_factor", "extrapolation_factor"), ("yarn_attn_factor", "attention_factor")):
            if get(f"rope.scaling.{key}") is not None:
                scaling[name] = float(get(f"rope.scaling.{key}"))
        config["rope_scaling"] = scaling
    if arch == "llama":
        config["attention_bias"] = "blk.0.attn_q.bias" in f.tensors
        config["mlp_bias"] = "blk.0.ffn_up.bias" in f.tensors
    return config


def _keeps_blocks(gguf_name: str, info) -> bool:
    """A linear weight of a block-quantized type, or the token embedding (kept packed when it is also the tied
    LM head: quant/install.py looks its rows up in the blocks, and dequantizes it otherwise)."""
    from ..quant.gguf_weight import KEEP_TYPES

    return (info.ggml_type in KEEP_TYPES and len(info.shape) == 2 and gguf_name.endswith(".weight")
            and not gguf_name.startswith("position_embd."))


def _blocks(f: GGUFFile, gguf_name: str, info, arch: str, heads, kv_heads):
    """The weight's raw blocks, rows in HF order: blocks run along the input dim, so rows move as bytes."""
    from ..quant.gguf_weight import GGUFBlocks

    raw = f.raw(gguf_name).reshape(info.shape[0], -1)
    if arch == "llama" and ".attn_q." in gguf_name:
        raw = unpermute_rotary_rows(raw, heads)
    elif arch == "llama" and ".attn_k." in gguf_name:
        raw = unpermute_rotary_rows(raw, kv_heads)
    conv1d = arch == "gpt2" and any(f".{k}." in gguf_name for k in _GPT2_CONV1D)
    return GGUFBlocks(raw, info.ggml_type, info.shape[0], info.shape[1], transposed=conv1d, name=gguf_name)


def load_gguf_checkpoint(path: str | os.PathLike, *, with_tokenizer: bool = True,
                         keep_quantized: bool = False) -> GGUFCheckpoint:
    """Read a GGUF file into an HF-form checkpoint: config, dequantized float32 tensors with HF names, tokenizer.

    keep_quantized: linear weights of a quantized type stay as their blocks (quant.gguf_weight.GGUFBlocks).
    """
    f = open_gguf(path)
    config = gguf_config(f)
    arch = f.metadata["general.architecture"]
    table = _NAME_TABLES[arch]
    heads = config.get("num_attention_heads")
    kv_heads = config.get("num_key_value_heads")

    tensors: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    names: dict[str, str] = {}
    rope_freq_factors = None
    for gguf_name, info in f.tensors.items():
        if gguf_name in _EXTRA_TENSORS:
            rope_freq_factors = f.load(gguf_name)
            continue
        hf = _hf_name(gguf_name, table)
        if hf is None:
            raise GGUFError(f"{f.path}: tensor {gguf_name!r} has no place in a {arch} model "
                            f"(expected names like {', '.join(list(table)[:4])}, ...)")
        if keep_quantized and _keeps_blocks(gguf_name, info):
            tensors[hf], types[hf], names[hf] = _blocks(f, gguf_name, info, arch, heads, kv_heads), \
                info.ggml_type, gguf_name
            continue
        w = f.load(gguf_name)
        if arch == "llama" and ".attn_q." in gguf_name:
            w = unpermute_rotary_rows(w, heads)
        elif arch == "llama" and ".attn_k." in gguf_name:
            w = unpermute_rotary_rows(w, kv_heads)
        elif arch == "gpt2" and gguf_name.endswith(".weight") and any(f".{k}." in gguf_name for k in _GPT2_CONV1D):
            w = np.ascontiguousarray(w.T)
        tensors[hf], types[hf], names[hf] = w, info.ggml_type, gguf_name

    tokenizer = None
    if with_tokenizer and "tokenizer.ggml.model" in f.metadata:
        try:
            tokenizer = Tokenizer.from_gguf(f.metadata)
        except TokenizerError as e:
            raise GGUFError(f"{f.path}: {e}") from None
    return GGUFCheckpoint(path=f.path, config=config, tensors=tensors, tensor_types=types, tokenizer=tokenizer,
                          chat_template=f.metadata.get("tokenizer.chat_template"), metadata=f.metadata,
                          gguf_names=names, rope_freq_factors=rope_freq_factors)
