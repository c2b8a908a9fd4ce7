"""Put QuantLinear layers into a Transformer in place of the nn.Linear layers a checkpoint stores quantized.

>>> model = Transformer(config, init=False)
>>> install_quantized_linears(model, tensors, where, quant_config)   # takes the quantized tensors out of `tensors`
>>> load_weights(model, tensors, where)                               # the rest: embeddings, norms, biases

A layer is quantized when every checkpoint tensor fused into it (q/k/v, gate/up) is: GPTQ / AWQ tensors
(`<layer>.qweight`, `.qzeros`, `.scales`, `.g_idx`) or GGUF blocks (GGUFBlocks). The weight table of
llm/weights.py says which checkpoint layers make each of ours, so every architecture it knows is covered.

A quantized LM head (`lm_head.qweight`, GPTQModel's `"lm_head": true`) becomes a QuantLinear like any layer. With
tied word embeddings it is also the token embedding: `transformer.wte` becomes a QuantEmbedding over the head's
rows and the checkpoint's float embedding (written for other readers, see quant/export.py) is dropped, so the
matrix is held once, packed.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np

from .. import nn
from ..tensor import Tensor
from .config import QuantConfig
from .gguf_weight import GGUFBlocks
from .layouts import QuantFormatError, QuantizedWeight, unpack_awq, unpack_gptq
from .qembedding import QuantEmbedding
from .qlinear import QuantLinear

GPTQ_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")


def _array(value) -> np.ndarray:
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _unpack(tensors: MutableMapping, base: str, cfg: QuantConfig | None, where: str) -> QuantizedWeight:
    if cfg is None:
        raise QuantFormatError(f"{where}: layer {base!r} has a {base}.qweight tensor but the checkpoint has no "
                               "quantization config; expected config.json's quantization_config, "
                               "quantize_config.json or quant_config.json")
    parts = {s: _array(tensors[f"{base}.{s}"]) for s in GPTQ_SUFFIXES if f"{base}.{s}" in tensors}
    cfg = cfg.for_layer(base)   # GPTQModel's per-module overrides ("dynamic")
    if cfg.method == "awq":
        return unpack_awq(parts, cfg.group_size, name=base, bits=cfg.bits)
    return unpack_gptq(parts, cfg.bits, cfg.group_size, cfg.checkpoint_format, name=base, desc_act=cfg.desc_act)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def install_quantized_linears(model: nn.Module, tensors: MutableMapping, where: str,
                              quant_config: QuantConfig | None = None) -> dict[str, QuantLinear]:
    """Replace each nn.Linear of model whose checkpoint tensors are quantized by a QuantLinear holding them, and
    remove those tensors from `tensors` (the rest load as usual). Returns our layer name -> QuantLinear.

    A fused layer with some parts quantized and some not is an error for GPTQ / AWQ; for GGUF (whose files mix
    types) its blocks are dequantized and the layer stays an nn.Linear.
    """
    from ..llm.weights import weight_table

    table = weight_table(model.model_config, tensors.keys())
    if table is None:   # zt train's own checkpoints have no quantized form
        return {}
    installed: dict[str, QuantLinear] = {}
    for ours, sources, transposed in table:
        if not ours.endswith(".weight") or not all(s.endswith(".weight") for s in sources):
            continue
        layer_name = ours[:-len(".weight")]
        layer = model.get_submodule(layer_name)
        if not isinstance(layer, nn.Linear):
            continue
        bases = [s[:-len(".weight")] for s in sources]
        gptq = [f"{b}.qweight" in tensors for b in bases]
        gguf = [isinstance(tensors.get(s), GGUFBlocks) for s in sources]
        if not any(gptq) and not any(gguf):
            continue
        if any(gptq) and not all(gptq):
            have = [b for b, q in zip(bases, gptq) if q]
            lack = [b for b, q in zip(bases, gptq) if not q]
            raise QuantFormatError(f"{where}: {layer_name} fuses {bases}, of which {have} are quantized and {lack} "
                                   f"are not; expected {lack[0]}.qweight, .qzeros and .scales like the others")
        if any(gguf) and not all(gguf):
            for s, g in zip(sources, gguf):
                if g:
                    tensors[s] = tensors[s].dequantize()
            continue
        q = QuantLinear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        if all(gptq):
            if transposed:
                raise QuantFormatError(f"{where}: {bases[0]} is a Conv1D layer (GPT-2), which GPTQ/AWQ checkpoints "
                                       "do not quantize; expected nn.Linear layers")
            for b in bases:
                q.add_int_part(_unpack(tensors, b, quant_config, where), method=quant_config.method)
                for s in GPTQ_SUFFIXES + ("weight",):
                    tensors.pop(f"{b}.{s}", None)
                # NOTE: some GPTQ exporters write a zero bias for every quantized layer, biased or not
                if layer.bias is None and f"{b}.bias" in tensors and not np.any(_array(tensors[f"{b}.bias"])):
                    del tensors[f"{b}.bias"]
        else:
            for s in sources:
                blocks: GGUFBlocks = tensors.pop(s)
                if blocks.in_features != layer.in_features:
                    raise QuantFormatError(f"{where}: tensor {s!r} has {blocks.in_features} inputs; expected "
                                           f"{layer.in_features} for {layer_name}")
                q.add_gguf_part(blocks.raw, blocks.ggml_type, blocks.out_features, name=s)
        try:
            q.check_complete()
        except QuantFormatError as e:
            raise QuantFormatError(f"{where}: {e}; expected {layer.out_features} rows for {layer_name}") from None
        _set_module(model, layer_name, q)
        installed[layer_name] = q
    head = _install_tied_head(model, tensors, where, quant_config, table)
    if head is not None:
        installed["lm_head"] = head
    if quant_config is not None and quant_config.lm_head and not isinstance(getattr(model, "lm_head", None),
                                                                            QuantLinear):
        raise QuantFormatError(f"{where}: {quant_config.source or 'the quantization config'} says the LM head is "
                               "quantized (lm_head: true), but the checkpoint has no lm_head.qweight; expected "
                               "lm_head.qweight, .qzeros and .scales")
    if quant_config is not None and not quant_config.lm_head and "lm_head" in installed:
        # NOTE: GPTQModel and vLLM build a quantized head only when the config says so; a folder that has one
        # without saying so would not load there
        source = quant_config.source or "its quantization config"
        raise QuantFormatError(f"{where}: the checkpoint has lm_head.qweight but {source} does not say the LM head "
                               'is quantized; expected "lm_head": true in it')
    if quant_config is not None and not installed:
        raise QuantFormatError(f"{where}: {quant_config.source or 'the quantization config'} says the checkpoint is "
                               f"{quant_config.method} {quant_config.bits}-bit, but no layer has quantized tensors; "
                               "expected <layer>.qweight, .qzeros and .scales")
    return installed


def _install_tied_head(model: nn.Module, tensors: MutableMapping, where: str, cfg: QuantConfig | None,
                       table) -> QuantLinear | None:
    """With tied word embeddings and a quantized lm_head (GPTQ / AWQ), or a GGUF token embedding kept in its
    blocks: the head as a QuantLinear and the token embedding as a QuantEmbedding over its rows (one packed
    matrix); the checkpoint's float copy of the embedding is dropped. A GGUF embedding in blocks that is not
    tied is dequantized (it is looked up, never multiplied)."""
    config = model.model_config
    embedding = next((sources for ours, sources, _ in table if ours == "transformer.wte.weight"), ())
    gguf = [s for s in embedding if isinstance(tensors.get(s), GGUFBlocks)]
    if gguf and not (config.tie_word_embeddings and len(embedding) == 1):
        for s in gguf:
            tensors[s] = tensors[s].dequantize()
        gguf = []
    if not config.tie_word_embeddings or ("lm_head.qweight" not in tensors and not gguf):
        return None
    head = QuantLinear(config.hidden_size, config.vocab_size)
    if gguf:
        blocks: GGUFBlocks = tensors[gguf[0]]
        head.add_gguf_part(blocks.raw, blocks.ggml_type, blocks.out_features, name=gguf[0])
    else:
        head.add_int_part(_unpack(tensors, "lm_head", cfg, where), method=cfg.method)
    try:
        head.check_complete()
    except QuantFormatError as e:
        raise QuantFormatError(f"{where}: {e}; expected {config.vocab_size} rows (vocab_size) for lm_head") from None
    for s in GPTQ_SUFFIXES + ("weight",):
        tensors.pop(f"lm_head.{s}", None)
    for s in embedding:   # NOTE: the float embedding other readers need (or the GGUF blocks): the head's rows serve
        tensors.pop(s, None)
    model.lm_head = head
    model.transformer.wte = QuantEmbedding(head)
    return head


def quantized_layers(model: nn.Module) -> dict[str, QuantLinear]:
    """Our layer name -> QuantLinear for every quantized layer of model (what `zt info` lists)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear)}
