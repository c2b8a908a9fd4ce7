"""quantize_model: a language model -> a 4- or 8-bit HF folder, by round-to-nearest, GPTQ or AWQ (`zt quantize`).

>>> report = quantize_model("smollm2", method="gptq", bits=4, group_size=128, out="smollm2-gptq")
>>> LLM("smollm2-gptq").generate(["Once upon a time"])

The model is loaded in float32 (GGUF weights dequantized: they are the full-precision reference), then quantized one
decoder block at a time, with a progress bar per layer:
  rtn   each linear rounded onto its group grids; no calibration data;
  gptq  calibration tokens run through the blocks; within a block, each linear is quantized with GPTQ when the
        forward reaches it, from its inputs there (so o_proj sees the quantized q/k/v's output, as AutoGPTQ's
        true_sequential does), and the quantized block's outputs feed the next block;
  awq   the float block's linear inputs give AWQ's scale and clip searches; the scales are folded into the norms
        and the v / up rows, the block is quantized, and its outputs feed the next block.
rtn and gptq write AutoGPTQ's layout (checkpoint_format "gptq", zero points stored minus one), awq AutoAWQ's GEMM
layout (4-bit only, whole groups); any method can be written in either layout where it fits (see export.py).

The LM head is quantized too (quantize_lm_head, GPTQModel's "lm_head": true), in the same layout:
  tied to the token embedding (one matrix, two uses)  round-to-nearest, before the blocks, so that calibration
        runs on the embeddings the quantized model will look up; GPTQ or AWQ would tune the matrix for the logits
        alone (GPTQ moves each row by its error feedback, AWQ scales its columns), at the expense of the lookups;
  untied  GPTQ on the final hidden states (after the final norm) for gptq, round-to-nearest otherwise (AWQ's
        scales would have to be folded into the final norm, which the untied head does not own alone either).
In the GPTQ layout the head gets groups of LM_HEAD_GROUP_SIZE inputs when group_size is larger (GPTQModel's
per-module "dynamic" override, which vLLM reads too): the head's error is the largest a 4-bit model carries, and
small groups cost little there (measured on SmolLM2-135M, blocks RTN g128: perplexity 105.0 with the head at g128,
101.4 at g64, 95.4 at g32, 87.2 in float; the head's packed bytes 16.5, 15.5 and 16.8 MB: 576 inputs are 4.5
groups of 128, padded to 5).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .awq import N_GRID, Activations, awq_block
from .calibration import BlockRunner, calibration_tokens, intercept, param_array, set_param
from .config import QuantConfig
from .export import SUPPORTED_ARCHITECTURES, write_folder
from .gptq import Hessian, gptq_quantize
from .layouts import QuantizedWeight
from .rtn import check_settings, rtn_quantize

METHODS = ("rtn", "gptq", "awq")
LAYOUTS = ("gptq", "awq")  # AutoGPTQ's (checkpoint_format "gptq") and AutoAWQ's GEMM
LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # in the order a block's forward reaches them
LM_HEAD_GROUP_SIZE = 32  # the head's group size in the GPTQ layout when group_size is larger (module docstring)


@dataclass
class QuantizeReport:
    """What quantize_model did."""

    out: Path
    method: str
    layout: str  # "gptq" or "awq"
    bits: int
    group_size: int
    act_order: bool
    layers: int  # decoder blocks
    quantized_linears: int  # HF linears written quantized (q, k, v, o, gate, up, down per block; the LM head)
    calibration_tokens: int  # 0 for rtn
    seconds: float
    lm_head: bool = False  # the LM head (and a tied embedding with it) written quantized
    lm_head_group_size: int | None = None  # its group size (None: not quantized)


def _check_arguments(method, layout, bits, group_size, act_order, samples, seqlen, out) -> None:
    if method not in METHODS:
        raise ValueError(f"quantize: method {method!r} is not supported; expected one of {', '.join(METHODS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"quantize: layout {layout!r} is not supported; expected one of {', '.join(LAYOUTS)}")
    allowed = (4,) if layout == "awq" else (4, 8)
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise ValueError(f"quantize: bits={bits!r} is not supported in the {layout} layout; expected one of "
                         f"{list(allowed)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or (group_size != -1 and group_size < 1):
        raise ValueError(f"quantize: group_size={group_size!r} is not valid; expected -1 (one group over all inputs) "
                         "or a positive integer")
    if act_order and method != "gptq":
        raise ValueError(f"quantize: act-order is a GPTQ option; method {method!r} quantizes columns in order")
    if act_order and layout == "awq":
        raise ValueError("quantize: the AWQ layout has no g_idx, so act-order weights cannot be written in it; "
                         "expected the gptq layout")
    for name, value in (("samples", samples), ("seqlen", seqlen)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"quantize: {name} must be a positive int, got {value!r}")
    if out is None or not str(out):
        raise ValueError("quantize: give the output folder (out)")
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"quantize: {path} already exists and is not an empty folder; expected a new or empty "
                              "output folder")


def _head_group_size(group_size: int, layout: str, requested) -> int:
    """The LM head's group size (see quantize_model)."""
    if requested is None:   # -1 (one group per row) is left as chosen
        return LM_HEAD_GROUP_SIZE if layout == "gptq" and group_size > LM_HEAD_GROUP_SIZE else group_size
    if isinstance(requested, bool) or not isinstance(requested, int) or (requested != -1 and requested < 1):
        raise ValueError(f"quantize: lm_head_group_size={requested!r} is not valid; expected -1 or a positive integer")
    if layout == "awq" and requested != group_size:
        raise ValueError(f"quantize: lm_head_group_size={requested} differs from group_size={group_size}, which the "
                         "AWQ layout cannot say (AutoAWQ's config has one group size); expected them equal")
    return requested


def _check_shapes(config, layout: str, bits: int, group_size: int, lm_head: bool = False,
                  head_group: int | None = None) -> None:
    """Every linear of the model must fit the layout before any work is done (the packers would refuse later)."""
    per_word = 32 // bits
    rows_multiple = 8 if layout == "awq" else per_word
    hidden, inter = config.hidden_size, config.intermediate_size
    attn_out = config.num_heads * config.head_dim
    shapes = {"q_proj": (attn_out, hidden), "k_proj": (config.num_kv_heads * config.head_dim, hidden),
              "o_proj": (hidden, attn_out), "gate_proj": (inter, hidden), "down_proj": (hidden, inter)}
    if lm_head:
        shapes["lm_head"] = (config.vocab_size, hidden)
    hint = "; or keep the LM head in full precision (--no-quantize-lm-head)"
    for name, (out_f, in_f) in shapes.items():
        try:
            check_settings(bits, head_group if name == "lm_head" else group_size, in_f, name,
                           whole_groups=layout == "awq")
        except ValueError as e:
            raise ValueError(f"{e}{hint if name == 'lm_head' else ''}") from None
        if in_f % per_word:
            raise ValueError(f"layer {name!r}: in_features={in_f} is not a multiple of {per_word}; the {bits}-bit "
                             f"layout packs {per_word} codes per int32 word")
        if out_f % rows_multiple:
            raise ValueError(f"layer {name!r}: out_features={out_f} is not a multiple of {rows_multiple}, which the "
                             f"{layout} layout packs per int32 word{hint if name == 'lm_head' else ''}")


def _source_config(loaded) -> tuple[dict, Path | None]:
    """(the source model's HF config.json dict, its HF folder or None for a GGUF file)."""
    if loaded.format == "hf":
        config = json.loads((loaded.path / "config.json").read_text(encoding="utf-8"))
        if "quantization_config" in config:
            raise ValueError(f"{loaded.path} is already quantized ({config['quantization_config'].get('quant_method')}"
                             "); expected a full-precision model")
        return config, loaded.path
    if loaded.format == "gguf":
        from ..io.gguf import open_gguf
        from ..llm.gguf_model import gguf_config

        if loaded.config.rope_freq_factors is not None:
            raise ValueError(f"{loaded.path}: its rope_freqs tensor (Llama 3 rope scaling) has no config.json field "
                             "to be written as; cannot export it as an HF folder")
        return gguf_config(open_gguf(loaded.path)), None
    raise ValueError(f"{loaded.path}: a {loaded.format!r} model cannot be quantized; expected a Hugging Face folder "
                     f"or a GGUF file of {', '.join(SUPPORTED_ARCHITECTURES)}")


def quantize_model(model_name_or_path, method: str = "gptq", bits: int = 4, group_size: int = 128,
                   act_order: bool = False, calibration: str = "shakespeare", samples: int = 32, out=None, *,
                   layout: str | None = None, seqlen: int = 512, sym: bool = False, percdamp: float = 0.01,
                   n_grid: int = N_GRID, seed: int = 0, progress: bool = True,
                   quantize_lm_head: bool = True, lm_head_group_size: int | None = None) -> QuantizeReport:
    """Quantize a model (HF folder, GGUF file or short name) and write the HF folder `out` (see the module
    docstring). calibration: "shakespeare" or a .txt file / folder; samples windows of seqlen tokens (gptq, awq).
    layout: "gptq" or "awq" (default: awq for method awq, else gptq); AWQ's needs whole groups, so a model whose
    widths group_size does not divide (SmolLM2-135M: 576 at 128) needs layout="gptq" (its last group is shorter).
    sym: symmetric grids (zero point 2**(bits-1)); percdamp: GPTQ's damping, a fraction of the Hessian's mean
    diagonal (AutoGPTQ's damp_percent; more than its 0.01 keeps GPTQ from fitting the noise of a small calibration
    set); n_grid: AWQ's grid size (scale and clip searches); quantize_lm_head: write the LM head (and with it a tied
    embedding) quantized too, as the module docstring says, rather than in float16; lm_head_group_size: its group
    size (default: LM_HEAD_GROUP_SIZE in the GPTQ layout when group_size is larger, else group_size)."""
    from tqdm.auto import tqdm

    from .. import __version__
    from ..llm.loader import load_model

    start = time.perf_counter()
    layout = layout or ("awq" if method == "awq" else "gptq")
    _check_arguments(method, layout, bits, group_size, act_order, samples, seqlen, out)
    if not isinstance(quantize_lm_head, bool):
        raise ValueError(f"quantize: quantize_lm_head must be True or False, got {quantize_lm_head!r}")
    head_group = _head_group_size(group_size, layout, lm_head_group_size)
    loaded = load_model(model_name_or_path, keep_quantized=False)  # GGUF blocks dequantized: the float reference
    if loaded.kind != "decoder" or loaded.config.architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{model_name_or_path}: a {loaded.config.__class__.__name__} of architecture "
                         f"{getattr(loaded.config, 'architecture', loaded.kind)!r} cannot be quantized; supported: "
                         f"{', '.join(SUPPORTED_ARCHITECTURES)} decoders")
    config = loaded.config
    _check_shapes(config, layout, bits, group_size, quantize_lm_head, head_group)
    hf_config, source_folder = _source_config(loaded)
    model = loaded.model
    quant = QuantConfig(method=layout, bits=bits, group_size=group_size, desc_act=act_order, sym=sym,
                        checkpoint_format="gemm" if layout == "awq" else "gptq",
                        extra={"meta": {"quantizer": [f"zigtensor:{__version__}"], "method": method,
                                        "calibration": None if method == "rtn" else str(calibration),
                                        "samples": None if method == "rtn" else samples,
                                        "seqlen": None if method == "rtn" else seqlen}},
                        lm_head=quantize_lm_head,
                        dynamic={"+:^lm_head$": {"group_size": head_group}} if quantize_lm_head
                        and head_group != group_size else {})
    # NOTE: AutoGPTQ's original format stores zero - 1 in `bits` bits, so its zero points must be >= 1
    min_zero = 1 if quant.method == "gptq" and quant.checkpoint_format == "gptq" else 0

    tied = config.tie_word_embeddings
    quantized: dict[str, QuantizedWeight] = {}
    if quantize_lm_head and tied:  # before calibration: the blocks then see the embeddings the model will run with
        quantized["lm_head"] = qw = rtn_quantize(param_array(model.lm_head.weight), bits, head_group, sym, min_zero,
                                                 name="lm_head")
        set_param(model.transformer.wte.weight, qw.dequantize())  # the head's weight too: one Parameter
    runner = None
    if method != "rtn":
        ids = calibration_tokens(loaded.tokenizer, calibration, samples, seqlen, seed)
        runner = BlockRunner(model, ids)
    blocks = model.transformer.h
    untied_head = quantize_lm_head and not tied
    bar = tqdm(total=len(blocks) + untied_head, desc=f"{method} {bits}-bit", unit="layer", disable=not progress)
    try:
        for i, block in enumerate(blocks):
            prefix = f"transformer.h.{i}."
            linears = {name: block.get_submodule(name) for name in LINEARS}
            if method == "rtn":
                for name, linear in linears.items():
                    quantized[prefix + name] = rtn_quantize(param_array(linear.weight), bits, group_size, sym,
                                                            min_zero, name=prefix + name)
            elif method == "gptq":
                _gptq_block(runner, block, linears, prefix, quantized, bits, group_size, sym, act_order, percdamp,
                            min_zero, bar)
            else:
                _awq_block(runner, block, linears, prefix, quantized, config, bits, group_size, sym, n_grid, min_zero,
                           bar)
            bar.update(1)
        if untied_head:
            bar.set_postfix_str("lm_head")
            quantized["lm_head"] = _quantize_untied_head(model, runner if method == "gptq" else None, bits,
                                                         head_group, sym, act_order, percdamp, min_zero)
            bar.update(1)
    finally:
        bar.close()
    fields = {"damp_percent": percdamp} if method == "gptq" and layout == "gptq" else {}
    write_folder(Path(out), model, quantized, quant, hf_config, loaded, source_folder, fields)
    return QuantizeReport(out=Path(out), method=method, layout=layout, bits=bits, group_size=group_size,
                          act_order=act_order, layers=len(blocks),
                          quantized_linears=7 * len(blocks) + quantize_lm_head,
                          calibration_tokens=0 if runner is None else runner.tokens,
                          seconds=time.perf_counter() - start, lm_head=quantize_lm_head,
                          lm_head_group_size=head_group if quantize_lm_head else None)


def _quantize_untied_head(model, runner, bits, group_size, sym, act_order, percdamp, min_zero) -> QuantizedWeight:
    """The untied LM head: GPTQ on the final hidden states after the final norm (its inputs) when a runner holds
    them (the gptq method), round-to-nearest otherwise."""
    weight = param_array(model.lm_head.weight)
    if runner is None:
        return rtn_quantize(weight, bits, group_size, sym, min_zero, name="lm_head")
    from ..autograd.grad_mode import no_grad

    with no_grad():
        head_inputs = model.transformer.ln_f(runner.hidden).numpy()
    hessian = Hessian(weight.shape[1])
    hessian.add(head_inputs)
    return gptq_quantize(weight, hessian.matrix, bits, group_size, sym, act_order, percdamp, min_zero=min_zero,
                         name="lm_head")


def _gptq_block(runner, block, linears, prefix, quantized, bits, group_size, sym, act_order, percdamp, min_zero,
                bar) -> None:
    """GPTQ each linear of the block as the block's forward reaches it, then keep the block's outputs."""

    def quantize_at(name, linear):
        def fn(x, forward):
            bar.set_postfix_str(name)
            hessian = Hessian(linear.in_features)
            hessian.add(x.numpy())
            qw = gptq_quantize(param_array(linear.weight), hessian.matrix, bits, group_size, sym, act_order,
                               percdamp, min_zero=min_zero, name=prefix + name)
            quantized[prefix + name] = qw
            set_param(linear.weight, qw.dequantize())
            return forward(x)
        return fn

    with contextlib.ExitStack() as stack:
        for name, linear in linears.items():
            stack.enter_context(intercept(linear, quantize_at(name, linear)))
        runner.run(block)
    missing = [name for name in linears if prefix + name not in quantized]
    if missing:
        raise RuntimeError(f"GPTQ: the block's forward never reached {', '.join(prefix + m for m in missing)}")


def _awq_block(runner, block, linears, prefix, quantized, config, bits, group_size, sym, n_grid, min_zero,
               bar) -> None:
    """Record the float block's linear inputs, run AWQ on the block, quantize it, then keep its outputs."""
    acts = {name: Activations(linear.in_features) for name, linear in linears.items()}

    def record(name):
        def fn(x, forward):
            acts[name].add(x.numpy())
            return forward(x)
        return fn

    bar.set_postfix_str("inputs")
    with contextlib.ExitStack() as stack:
        for name, linear in linears.items():
            stack.enter_context(intercept(linear, record(name)))
        runner.forward(block)
    bar.set_postfix_str("search")
    result = awq_block(block, acts, config, bits, group_size, sym, n_grid, min_zero, prefix=prefix)
    for name, qw in result.items():
        quantized[prefix + name] = qw
        set_param(linears[name].weight, qw.dequantize())
    runner.run(block)
