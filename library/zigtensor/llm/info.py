"""What `zt info` says about a language model, read from its config, headers and tokenizer (no weights are
decoded): architecture and sizes, positions, parameters, tensor dtypes or quantization types, tokenizer, chat
template, and a memory plan for serving it.

>>> info = describe("smollm2", max_model_len=2048, memory_budget="4GiB")
>>> info.architecture, info.parameters, info.tensor_types
('llama', 134515008, {'Q4_1': 210, 'F32': 61, 'Q6_K': 1})
>>> info.memory.kv_bytes_per_token, info.memory.max_sequences
(46080, 37)
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..dtypes import as_dtype, float32
from .config import ModelConfig
from .hf_loader import HFFolder, is_hf_folder
from .loader import ModelNotFoundError, resolve_model
from .train_run import is_train_run, read_train_run

_SAFETENSORS_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8,
                     "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8}
_NOT_WEIGHTS = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq", "position_ids", "rope_freqs.weight")
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "tb": 1000**4}


def parse_bytes(value) -> int:
    """A byte count from an int or a string such as '8GiB', '512 MB', '1.5e9'."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(value))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"memory size {value!r}: expected a number of bytes with an optional unit "
                             "(B, KB, MB, GB, KiB, MiB, GiB), e.g. '8GiB'")
        try:
            n = int(float(m.group(1)) * _UNITS[unit])
        except ValueError:
            raise ValueError(f"memory size {value!r}: {m.group(1)!r} is not a number") from None
    if n <= 0:
        raise ValueError(f"memory size must be positive, got {value!r}")
    return n


def machine_memory() -> int:
    """Physical memory of this machine in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass
class MemoryPlan:
    weight_dtype: str  # the dtype the weights are run in
    weight_bytes: int  # the loaded weights
    file_bytes: int  # the weights as stored (quantized or 16-bit files are smaller)
    kv_dtype: str
    kv_bytes_per_token: int  # K and V of every layer
    max_model_len: int
    kv_bytes_per_sequence: int  # at max_model_len
    memory_budget: int
    budget_source: str  # "given" or "this machine's RAM"
    max_sequences: int  # sequences of max_model_len whose KV cache fits beside the weights


@dataclass
class QuantLayer:
    """How one checkpoint linear layer is quantized (GPTQ / AWQ tensors or a GGUF block type)."""

    layer: str  # the checkpoint's layer name (model.layers.0.self_attn.q_proj, blk.0.attn_q)
    method: str  # "gptq", "awq" or "gguf"
    bits: int
    group_size: int  # -1: one group; gguf: elements per block
    act_order: bool
    in_features: int
    out_features: int
    ggml_type: str = ""
    tensors: tuple = ()  # the checkpoint tensors that hold it
    nbytes: int = 0  # as stored
    tied_embedding: bool = False  # the LM head whose rows are also the token embedding (tied, looked up packed)

    @property
    def description(self) -> str:
        if self.method == "gguf":
            return f"gguf {self.ggml_type}"
        group = "per-channel" if self.group_size == -1 else f"group size {self.group_size}"
        return (f"{self.method} {self.bits}-bit, {group}" + (", act-order" if self.act_order else "")
                + (", also the token embedding (tied)" if self.tied_embedding else ""))

    def kernel(self, batch_rows: int, device_type: str = "cpu") -> str:
        from ..quant.qlinear import GGUF_INT_TYPES, kernel_name

        kind = "gguf" if self.method == "gguf" and self.ggml_type not in GGUF_INT_TYPES else "int"
        group = self.in_features if self.group_size == -1 else self.group_size
        return kernel_name(kind, self.bits, batch_rows, device_type, zero_point=self.ggml_type != "Q4_1",
                           group_len=-(-group // 8) * 8)  # stored groups are whole 8-column runs


@dataclass
class ModelInfo:
    name: str
    path: Path
    format: str  # "gguf", "hf" or "zt"
    kind: str  # "decoder" or "encoder"
    architecture: str
    num_layers: int
    num_heads: int
    num_kv_heads: int | None
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    context_length: int
    positions: str  # "rope theta=..., scaling ..." or "learned (N positions)"
    norm: str
    activation: str
    tied_embeddings: bool
    parameters: int  # a tied matrix counted once
    tensor_types: dict  # dtype or quantization type -> number of tensors
    tensor_count: int
    tokenizer_kind: str | None
    special_tokens: dict = field(default_factory=dict)  # name -> token text (and id)
    eos_token_ids: list = field(default_factory=list)
    chat_template: bool = False
    memory: MemoryPlan | None = None
    quantization: list = field(default_factory=list)  # QuantLayer of every quantized linear layer
    quantization_note: str = ""  # how load_model runs them


def is_language_model(name_or_path) -> bool:
    """Whether describe() applies: a short name, a .gguf file, an HF folder, or a zt train run of a GPT."""
    try:
        path = resolve_model(name_or_path)
    except ModelNotFoundError:
        return str(name_or_path) in ("smollm2", "minilm")
    if path.is_file() and path.suffix == ".gguf" or is_hf_folder(path):
        return True
    if is_train_run(path):
        try:
            read_train_run(path)
        except (ValueError, KeyError):
            return False
        return True
    return False


def _positions(c: ModelConfig) -> str:
    if c.position == "learned":
        return f"learned ({c.max_position_embeddings} positions)"
    s = f"rope theta={c.rope_theta:g}"
    if c.rope_scaling is not None:
        r = c.rope_scaling
        s += f", scaling {r.rope_type} factor={r.factor:g}"
        if r.original_max_position_embeddings:
            s += f" (original context {r.original_max_position_embeddings})"
    if c.rope_freq_factors is not None:
        s += ", per-frequency factors (GGUF rope_freqs)"
    if c.sliding_window:
        s += f", sliding window {c.sliding_window}"
    return s


def describe(name_or_path, max_model_len: int | None = None, memory_budget=None, dtype=None) -> ModelInfo:
    """The ModelInfo of a model name or path, with a memory plan for sequences of max_model_len tokens (default
    the context length) within memory_budget bytes (default this machine's RAM), weights in dtype (default
    float32, as load_model runs them)."""
    path = resolve_model(name_or_path)
    if path.is_file() and path.suffix == ".gguf":
        parts = _gguf(path)
    elif is_hf_folder(path):
        parts = _hf(path)
    elif is_train_run(path):
        parts = _train_run(path)
    else:
        raise ModelNotFoundError(f"{path}: not a language model (a .gguf file, a Hugging Face folder or a zt train "
                                 "run of a GPT)")
    fmt, config, shapes, types, file_bytes, tokenizer = parts
    tied = getattr(config, "tie_word_embeddings", False)
    quant, note = _quantization(fmt, path, shapes, types)
    dropped = {"lm_head.weight"} if tied else set()
    for q in quant:
        if fmt == "hf" and tied and q.layer == "lm_head":
            # NOTE: the float embedding beside a quantized tied head is for other readers; load_model looks the
            # embeddings up in the packed head (quant/qembedding.py), so it is neither a parameter nor resident
            q.tied_embedding = True
            dropped |= {"model.embed_tokens.weight", "transformer.wte.weight", "wte.weight"}
    weights = {n: s for n, s in shapes.items() if not n.endswith(_NOT_WEIGHTS) and n not in dropped}
    packed = {t for q in quant for t in q.tensors} if fmt == "hf" else set()  # GPTQ / AWQ: counted per layer
    packed_params = sum(q.in_features * q.out_features for q in quant) if fmt == "hf" else 0
    parameters = sum(math.prod(s) for n, s in weights.items() if n not in packed) + packed_params
    counts = Counter(types[n] for n in weights)
    common = dict(name=str(name_or_path), path=path, format=fmt, parameters=parameters,
                  tensor_types=dict(counts.most_common()), tensor_count=len(weights), quantization=quant,
                  quantization_note=note)
    common.update(_tokenizer_fields(tokenizer))
    weight_dtype = float32 if dtype is None else as_dtype(dtype)
    if isinstance(config, ModelConfig):
        c = config
        info = ModelInfo(kind="decoder", architecture=c.architecture, num_layers=c.num_layers, num_heads=c.num_heads,
                         num_kv_heads=c.num_kv_heads, head_dim=c.head_dim, hidden_size=c.hidden_size,
                         intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
                         context_length=c.max_position_embeddings, positions=_positions(c), norm=c.norm,
                         activation=c.activation + (" (gated)" if c.gated_mlp else ""), tied_embeddings=tied,
                         **common)
        info.memory = _memory_plan(c, parameters, file_bytes, weight_dtype, max_model_len, memory_budget,
                                   packed_params, sum(q.nbytes for q in quant) if fmt == "hf" else 0)
        return info
    c = config  # BertConfig
    return ModelInfo(kind="encoder", architecture="bert", num_layers=c.num_layers, num_heads=c.num_heads,
                     num_kv_heads=None, head_dim=c.hidden_size // c.num_heads, hidden_size=c.hidden_size,
                     intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
                     context_length=c.max_position_embeddings,
                     positions=f"learned ({c.max_position_embeddings} positions)", norm="layernorm (post-norm)",
                     activation=c.activation, tied_embeddings=False, **common)


def _memory_plan(c: ModelConfig, parameters: int, file_bytes: int, dtype, max_model_len, memory_budget,
                 packed_params: int = 0, packed_bytes: int = 0) -> MemoryPlan:
    length = c.max_position_embeddings if max_model_len is None else int(max_model_len)
    if length < 1:
        raise ValueError(f"max_model_len must be a positive int, got {max_model_len!r}")
    per_token = c.kv_bytes_per_token(dtype.itemsize)
    budget = machine_memory() if memory_budget is None else parse_bytes(memory_budget)
    weight_bytes = (parameters - packed_params) * dtype.itemsize + packed_bytes  # GPTQ / AWQ layers stay packed
    per_sequence = per_token * length
    return MemoryPlan(weight_dtype=dtype.name, weight_bytes=weight_bytes, file_bytes=file_bytes, kv_dtype=dtype.name,
                      kv_bytes_per_token=per_token, max_model_len=length, kv_bytes_per_sequence=per_sequence,
                      memory_budget=budget, budget_source="given" if memory_budget is not None else
                      "this machine's RAM", max_sequences=max(budget - weight_bytes, 0) // per_sequence)


def _tokenizer_fields(tok) -> dict:
    if tok is None:
        return {"tokenizer_kind": None}
    special = {}
    for name, text in (getattr(tok, "special_tokens", None) or {}).items():
        if text is not None:
            special[name] = f"{text!r} ({tok.token_to_id(text)})" if hasattr(tok, "token_to_id") else repr(text)
    return {"tokenizer_kind": getattr(tok, "kind", type(tok).__name__), "special_tokens": special,
            "eos_token_ids": sorted(tok.eos_token_ids), "chat_template": bool(getattr(tok, "chat_template", None))}


def _quantization(fmt: str, path: Path, shapes: dict, types: dict) -> tuple[list[QuantLayer], str]:
    """The quantized linear layers of a checkpoint, from its config and tensor headers, and how they run."""
    layers = []
    if fmt == "gguf":
        from ..io.gguf import GGML_BLOCK_LAYOUTS
        from ..quant.gguf_weight import GGUF_BITS, KEEP_TYPES

        for name, shape in shapes.items():
            t = types[name]
            if t in KEEP_TYPES and len(shape) == 2 and not name.startswith(("token_embd.", "position_embd.")):
                block, block_bytes = GGML_BLOCK_LAYOUTS[t]
                layers.append(QuantLayer(name.removesuffix(".weight"), "gguf", GGUF_BITS[t], block,
                                         False, shape[1], shape[0], ggml_type=t, tensors=(name,),
                                         nbytes=shape[0] * shape[1] // block * block_bytes))
        return layers, ("dequantized to float32 at load; LLM(..., keep_quantized=True) keeps these blocks"
                        if layers else "")
    if fmt != "hf":
        return [], ""
    from ..quant.config import find_quant_config

    cfg = find_quant_config(path)
    bases = [n.removesuffix(".qweight") for n in shapes if n.endswith(".qweight")]
    if cfg is None or not bases:
        return [], ""
    for base in bases:
        c = cfg.for_layer(base)  # GPTQModel's per-module overrides ("dynamic")
        rows, cols = shapes[base + ".qweight"]
        in_f, out_f = (rows, cols * 8) if c.method == "awq" else (rows * 32 // c.bits, cols)
        held = tuple(f"{base}.{s}" for s in ("qweight", "qzeros", "scales", "g_idx") if f"{base}.{s}" in shapes)
        nbytes = sum(math.prod(shapes[t]) * _SAFETENSORS_BITS.get(types[t], 32) // 8 for t in held)
        layers.append(QuantLayer(base, c.method, c.bits, c.group_size, c.method == "gptq" and c.desc_act,
                                 in_f, out_f, tensors=held, nbytes=nbytes))
    return layers, "weights stay packed at run time, in QuantLinear layers"


# ---------------------------------------------------------------------------------------------- sources
def _gguf(path: Path):
    from ..io.gguf import open_gguf
    from .gguf_model import gguf_config
    from .tokenizer import Tokenizer

    f = open_gguf(path)
    config = ModelConfig.from_hf(gguf_config(f))
    if "rope_freqs.weight" in f.tensors:
        config = config.replace(rope_freq_factors=tuple(float(v) for v in f.load("rope_freqs.weight")))
    shapes = {n: t.shape for n, t in f.tensors.items()}
    types = {n: t.ggml_type for n, t in f.tensors.items()}
    tokenizer = Tokenizer.from_gguf(f.metadata) if "tokenizer.ggml.model" in f.metadata else None
    return "gguf", config, shapes, types, sum(t.nbytes for t in f.tensors.values()), tokenizer


def _hf(path: Path):
    from .tokenizer import Tokenizer

    folder = HFFolder(path)
    if folder.config.get("model_type") == "bert":
        from .bert import BertConfig

        config = BertConfig.from_hf(folder.config)
    else:
        config = ModelConfig.from_hf(folder.config)
    shapes, types = folder.tensor_shapes(), folder.tensor_types()
    file_bytes = sum(math.ceil(math.prod(s) * _SAFETENSORS_BITS.get(types[n], 32) / 8) for n, s in shapes.items())
    tokenizer = Tokenizer.from_hf_folder(path) if folder.has_tokenizer() else None
    return "hf", config, shapes, types, file_bytes, tokenizer


def _train_run(path: Path):
    run = read_train_run(path)
    shapes = {n: tuple(t.shape) for n, t in run.tensors.items()}
    types = run.tensor_types
    file_bytes = sum(t.numel() * t.dtype.itemsize for n, t in run.tensors.items() if n != "lm_head.weight")
    return "zt", run.config, shapes, types, file_bytes, run.tokenizer
