"""Checkpoint tensor names -> the transformer's parameters: one table per weight layout, and the loader that
checks every tensor's shape, fuses q/k/v and gate/up, transposes GPT-2's Conv1D weights and casts.

>>> load_weights(model, tensors, where="model.safetensors")   # tensors: name -> array (HF names)

Each row of a table is (our parameter, [checkpoint tensors concatenated along dim 0], transposed); a Conv1D
weight of GPT-2 is stored (in, out), so it is transposed to Linear's (out, in).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..dtypes import DType, as_dtype, float32
from ..tensor import Tensor
from .config import ModelConfig


class WeightsError(ValueError):
    """A checkpoint whose tensors do not fit the model: the message names the tensor and the expected shape."""


# tensors some checkpoints carry that are not weights (causal-mask and rotary buffers of older exports)
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


def _llama_table(c: ModelConfig) -> list[tuple[str, list[str], bool]]:
    rows = [("transformer.wte.weight", ["model.embed_tokens.weight"], False)]
    for i in range(c.num_layers):
        hf, ours = f"model.layers.{i}.", f"transformer.h.{i}."
        attn = [hf + f"self_attn.{p}_proj" for p in "qkv"]
        rows += [(ours + "ln_1.weight", [hf + "input_layernorm.weight"], False),
                 (ours + "attn.c_attn.weight", [a + ".weight" for a in attn], False),
                 (ours + "attn.c_proj.weight", [hf + "self_attn.o_proj.weight"], False),
                 (ours + "ln_2.weight", [hf + "post_attention_layernorm.weight"], False),
                 (ours + "mlp.c_fc.weight", [hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"], False),
                 (ours + "mlp.c_proj.weight", [hf + "mlp.down_proj.weight"], False)]
        if c.qkv_bias:
            rows.append((ours + "attn.c_attn.bias", [a + ".bias" for a in attn], False))
        if c.out_bias:
            rows.append((ours + "attn.c_proj.bias", [hf + "self_attn.o_proj.bias"], False))
        if c.mlp_bias:
            rows += [(ours + "mlp.c_fc.bias", [hf + "mlp.gate_proj.bias", hf + "mlp.up_proj.bias"], False),
                     (ours + "mlp.c_proj.bias", [hf + "mlp.down_proj.bias"], False)]
    rows.append(("transformer.ln_f.weight", ["model.norm.weight"], False))
    if not c.tie_word_embeddings:
        rows.append(("lm_head.weight", ["lm_head.weight"], False))
    return rows


def _gpt2_table(c: ModelConfig, prefix: str = "transformer.") -> list[tuple[str, list[str], bool]]:
    rows = [("transformer.wte.weight", [prefix + "wte.weight"], False),
            ("transformer.wpe.weight", [prefix + "wpe.weight"], False)]
    for i in range(c.num_layers):
        hf, ours = f"{prefix}h.{i}.", f"transformer.h.{i}."
        for part in ("ln_1", "ln_2"):
            rows += [(ours + f"{part}.weight", [hf + f"{part}.weight"], False),
                     (ours + f"{part}.bias", [hf + f"{part}.bias"], False)]
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            rows += [(ours + f"{part}.weight", [hf + f"{part}.weight"], True),  # Conv1D: (in, out)
                     (ours + f"{part}.bias", [hf + f"{part}.bias"], False)]
    rows += [("transformer.ln_f.weight", [prefix + "ln_f.weight"], False),
             ("transformer.ln_f.bias", [prefix + "ln_f.bias"], False)]
    if not c.tie_word_embeddings:
        rows.append(("lm_head.weight", ["lm_head.weight"], False))
    return rows


def weight_table(config: ModelConfig, names=()) -> list[tuple[str, list[str], bool]]:
    """(our name, checkpoint names, transposed) for every parameter of the model of config; names (the
    checkpoint's) pick between the spellings of a layout (GPT-2 exports with or without 'transformer.')."""
    arch = config.architecture
    if arch in ("llama", "mistral", "qwen2"):
        return _llama_table(config)
    if arch == "gpt2":
        bare = "wte.weight" in names and "transformer.wte.weight" not in names
        return _gpt2_table(config, prefix="" if bare else "transformer.")
    if arch == "gpt":  # zt train's own checkpoints: our names
        return None
    raise WeightsError(f"no weight layout for architecture {arch!r}")


def _array(value) -> np.ndarray:
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def load_weights(model, tensors: Mapping, where: str, dtype: DType | str | None = None,
                 inference_layout: bool = False, consume: bool = False) -> None:
    """Set every parameter of model (a Transformer) from tensors (checkpoint name -> array or Tensor).

    Shapes are checked against the model's; a missing tensor, a wrong shape or a tensor the layout does not
    know is a WeightsError naming it (where names the file). Values are cast to dtype (default float32).
    inference_layout: write each Linear weight column-major at once (the layout prepare_for_inference gives
    it), saving a copy. consume: delete each checkpoint tensor from `tensors` once copied (a dict the caller
    owns), so that the checkpoint and the model are not both whole in memory.
    """
    from .. import nn

    config: ModelConfig = model.model_config
    target = float32 if dtype is None else as_dtype(dtype)
    params = dict(model.named_parameters())
    fortran = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} if inference_layout else set()
    table = weight_table(config, tensors.keys())
    if table is None:
        table = [(name, [name], False) for name in params]
    used = set()
    problems = []
    for ours, sources, transposed in table:
        if ours not in params:  # a layer quant.install replaced with a QuantLinear: its weight is loaded there
            continue
        p = params[ours]
        missing = [s for s in sources if s not in tensors]
        if missing:
            problems.append(f"missing tensor {missing[0]!r} (for {ours} of shape {p.shape})")
            continue
        parts = [_array(tensors[s]) for s in sources]
        used.update(sources)
        expected = _part_shapes(config, ours, p.shape, len(sources))
        for name, arr, shape in zip(sources, parts, expected):
            want = shape[::-1] if transposed else shape
            if tuple(arr.shape) != want:
                problems.append(f"tensor {name!r} has shape {tuple(arr.shape)}, expected {want}")
        if problems:
            continue
        out = np.empty(p.shape, dtype=target.np, order="F" if id(p) in fortran else "C")
        row = 0
        for arr in parts:
            n = arr.shape[1] if transposed else arr.shape[0]
            out[row:row + n] = arr.T if transposed else arr
            row += n
        p.data = p.device.backend.from_numpy(out)
        p.dtype = target
        if consume:
            del parts
            for s in sources:
                del tensors[s]
    unexpected = [n for n in tensors if n not in used and not _ignored(n, config)]  # (consumed ones are gone)
    if unexpected:
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        problems.append(f"unexpected tensors {', '.join(map(repr, unexpected[:5]))}{more} (not part of a "
                        f"{config.architecture} model)")
    if problems:
        more = f"; and {len(problems) - 3} more problems" if len(problems) > 3 else ""
        raise WeightsError(f"{where}: " + "; ".join(problems[:3]) + more)


def _ignored(name: str, config: ModelConfig) -> bool:
    if name.endswith(_IGNORED_SUFFIXES):
        return True
    # a tied head saved anyway (zt train's state_dict, some HF exports) is the embedding again
    return config.tie_word_embeddings and name == "lm_head.weight"


def _part_shapes(config: ModelConfig, ours: str, shape: tuple, n: int) -> list[tuple]:
    """The shape each of the n checkpoint tensors fused into parameter `ours` (of shape) must have."""
    if n == 1:
        return [tuple(shape)]
    c = config
    rest = tuple(shape[1:])
    if ".c_attn." in ours:
        rows = [c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.num_kv_heads * c.head_dim]
    else:  # gate and up
        rows = [c.intermediate_size, c.intermediate_size]
    return [(r, *rest) for r in rows]
