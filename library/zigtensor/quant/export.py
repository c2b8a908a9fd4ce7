"""Writing a quantized decoder as a Hugging Face folder in the GPTQ layout (AutoGPTQ's) or AutoAWQ's GEMM layout:

    config.json              the source model's config, torch_dtype float16, and quantization_config
    model.safetensors        each quantized linear as <hf name>.qweight / .qzeros / .scales (/ .g_idx for GPTQ),
                             the LM head too when it is quantized (lm_head.qweight, ...: GPTQModel's names), every
                             other weight (embeddings, norms, biases, an unquantized lm_head) in float16
    tokenizer.json, tokenizer_config.json (with the chat template), generation_config.json

Our Transformer fuses q/k/v (attn.c_attn) and gate/up (mlp.c_fc); they are split back into HF's q_proj, k_proj,
v_proj, gate_proj and up_proj here (a quantized fused weight splits by output rows: every part keeps the groups
and g_idx of the whole, as AutoGPTQ gives q, k and v the same Hessian).

A quantized LM head tied to the token embedding is written as lm_head.qweight / ... AND as
model.embed_tokens.weight in float16 holding the quantized matrix dequantized: transformers, GPTQModel and vLLM
build the embedding from that tensor (they do not quantize embeddings), and with it they compute the function our
loader computes, which drops it and looks embeddings up in the packed head (quant/qembedding.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..creation import tensor
from ..io.safetensors import save_file
from ..llm.weights import weight_table
from .config import QuantConfig
from .layouts import QuantizedWeight, pack_awq, pack_gptq

# tokenizer and generation files copied from a source HF folder as they are
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "chat_template.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model")
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")


def part_rows(config, ours: str, n_parts: int) -> list[int]:
    """Output rows of each HF tensor fused into our parameter `ours` (c_attn: q, k, v; c_fc: gate, up)."""
    c = config
    if n_parts == 1:
        return []
    if ".c_attn." in ours:
        return [c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.num_kv_heads * c.head_dim]
    return [c.intermediate_size] * n_parts


def split_rows(qw: QuantizedWeight, start: int, stop: int, name: str) -> QuantizedWeight:
    """Output rows start:stop of a quantized weight, as a quantized weight of its own."""
    return QuantizedWeight(codes=qw.codes[start:stop], scales=qw.scales[:, start:stop], zeros=qw.zeros[:, start:stop],
                           g_idx=qw.g_idx, bits=qw.bits, group_size=qw.group_size, name=name)


def _f16(name: str, arr: np.ndarray) -> np.ndarray:
    out = np.asarray(arr, dtype=np.float32)
    if np.abs(out).max(initial=0.0) > float(np.finfo(np.float16).max):
        raise ValueError(f"{name}: values up to {np.abs(out).max():g} overflow float16 (max 65504)")
    return np.ascontiguousarray(out.astype(np.float16))


def hf_tensors(model, quantized: dict[str, QuantizedWeight], quant: QuantConfig) -> dict[str, np.ndarray]:
    """HF name -> array for the whole model: quantized[ours linear name] packed in quant's layout, the rest float16."""
    config = model.model_config
    if config.architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"cannot write a quantized {config.architecture!r} model; supported architectures: "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    params = dict(model.named_parameters())
    out: dict[str, np.ndarray] = {}
    for ours, sources, transposed in weight_table(config):
        if transposed:
            raise ValueError(f"{ours}: transposed (Conv1D) checkpoint weights cannot be written quantized")
        rows = part_rows(config, ours, len(sources)) or [None]
        base = ours[:-len(".weight")] if ours.endswith(".weight") else None
        start = 0
        for source, n in zip(sources, rows):
            stop = None if n is None else start + n
            if base is not None and base in quantized:
                hf_base = source[:-len(".weight")]
                qw = quantized[base]
                part = qw if n is None else split_rows(qw, start, stop, hf_base)
                packed = pack_gptq(part, quant.checkpoint_format) if quant.method == "gptq" else pack_awq(part)
                out.update({f"{hf_base}.{k}": np.ascontiguousarray(v) for k, v in packed.items()})
            else:
                value = params[ours].numpy()
                out[source] = _f16(source, value if n is None else value[start:stop])
            start = 0 if stop is None else stop
    if config.tie_word_embeddings and "lm_head" in quantized:  # no row of its own in the table: the embedding's
        packed = pack_gptq(quantized["lm_head"], quant.checkpoint_format) if quant.method == "gptq" \
            else pack_awq(quantized["lm_head"])
        out.update({f"lm_head.{k}": np.ascontiguousarray(v) for k, v in packed.items()})
        embedding = next(sources[0] for ours, sources, _ in weight_table(config) if ours == "transformer.wte.weight")
        out[embedding] = _f16(embedding, quantized["lm_head"].dequantize())  # what the packed head looks up
    return out


def write_tokenizer(out: Path, loaded, source_folder: Path | None) -> None:
    """The tokenizer and generation files: copied from an HF source folder, or written from a GGUF's tokenizer."""
    if source_folder is not None:
        for name in _TOKENIZER_FILES:
            if (source_folder / name).is_file():
                shutil.copyfile(source_folder / name, out / name)
        return
    tok = loaded.tokenizer
    if tok is None:
        return
    (out / "tokenizer.json").write_text(tok.backend.to_str(), encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "model_max_length": loaded.config.max_position_embeddings}
    config.update({k: v for k, v in tok.special_tokens.items() if v is not None})
    if tok.chat_template:
        config["chat_template"] = tok.chat_template
    _write_json(out / "tokenizer_config.json", config)
    generation = dict(loaded.generation_config or {})
    if tok.bos_token_id is not None:
        generation.setdefault("bos_token_id", tok.bos_token_id)
    eos = sorted(tok.eos_token_ids)
    if eos:
        generation.setdefault("eos_token_id", eos[0] if len(eos) == 1 else eos)
    if generation:
        _write_json(out / "generation_config.json", generation)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_folder(out: Path, model, quantized: dict[str, QuantizedWeight], quant: QuantConfig, hf_config: dict,
                 loaded, source_folder: Path | None, quant_fields: dict | None = None) -> None:
    """Write the quantized model's HF folder (see the module docstring) into out (created if needed);
    quant_fields override entries of quantization_config (the damping GPTQ used, say)."""
    tensors = hf_tensors(model, quantized, quant)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in hf_config.items() if k != "quantization_config"}
    config["torch_dtype"] = "float16"
    config["quantization_config"] = {**quant.to_hf_dict(), **(quant_fields or {})}
    _write_json(out / "config.json", config)
    save_file({name: tensor(arr) for name, arr in tensors.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    write_tokenizer(out, loaded, source_folder)
