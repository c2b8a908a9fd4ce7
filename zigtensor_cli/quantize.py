"""`zt quantize`: make a 4- or 8-bit GPTQ / AWQ checkpoint of a language model with our own quantizers."""

from __future__ import annotations

from typing import Annotated

import typer

_MODEL = "A Hugging Face folder, a .gguf file or a short name (smollm2) of a Llama / Mistral / Qwen2 model."
_METHOD = "rtn (round to nearest, no calibration), gptq or awq."
_LAYOUT = ("gptq (AutoGPTQ) or awq (AutoAWQ GEMM: 4-bit, whole groups); default awq for --method awq, else gptq.")
_DAMP = ("GPTQ damping, a fraction of the Hessian's mean diagonal (AutoGPTQ's damp_percent); raise it (0.1) for "
         "small calibration sets.")
_CALIBRATION = "'shakespeare' (its first 90%) or a .txt file or folder of .txt files (gptq, awq)."
_LM_HEAD = ("Quantize the LM head too (GPTQModel's lm_head: true); with tied embeddings the one packed matrix serves "
            "the embedding as well. --no-quantize-lm-head keeps it in float16.")
_LM_HEAD_GROUP = ("The LM head's group size (GPTQModel's per-module 'dynamic' override); default 32 in the gptq "
                  "layout when --group-size is larger (small groups cost the head little and help it most), else "
                  "--group-size.")


def quantize(
    model: Annotated[str, typer.Option("--model", help=_MODEL)],
    out: Annotated[str, typer.Option("--out", help="The output folder (new or empty).")],
    method: Annotated[str, typer.Option("--method", help=_METHOD)] = "gptq",
    bits: Annotated[int, typer.Option("--bits", help="4 or 8 (the awq layout: 4 only).")] = 4,
    group_size: Annotated[int, typer.Option("--group-size", help="Inputs per scale and zero point; -1: one group "
                                                                  "per output row.")] = 128,
    act_order: Annotated[bool, typer.Option("--act-order", help="GPTQ: quantize columns by decreasing activation "
                                                                 "energy (desc_act, g_idx).")] = False,
    calibration: Annotated[str, typer.Option("--calibration", help=_CALIBRATION)] = "shakespeare",
    samples: Annotated[int, typer.Option("--samples", help="Calibration windows.")] = 32,
    seqlen: Annotated[int, typer.Option("--seqlen", help="Tokens per calibration window.")] = 512,
    sym: Annotated[bool, typer.Option("--sym", help="Symmetric grids (zero point 2**(bits-1)).")] = False,
    layout: Annotated[str | None, typer.Option("--layout", help=_LAYOUT)] = None,
    damp: Annotated[float, typer.Option("--damp", help=_DAMP)] = 0.01,
    quantize_lm_head: Annotated[bool, typer.Option("--quantize-lm-head/--no-quantize-lm-head", help=_LM_HEAD)] = True,
    lm_head_group_size: Annotated[int | None, typer.Option("--lm-head-group-size", help=_LM_HEAD_GROUP)] = None,
) -> None:
    """Quantize a model and write it as an HF folder in the GPTQ or the AutoAWQ GEMM layout."""
    from zigtensor.quant.quantize import quantize_model

    r = quantize_model(model, method=method, bits=bits, group_size=group_size, act_order=act_order,
                       calibration=calibration, samples=samples, out=out, seqlen=seqlen, sym=sym, layout=layout,
                       percdamp=damp, quantize_lm_head=quantize_lm_head, lm_head_group_size=lm_head_group_size)
    calib = f", {r.calibration_tokens} calibration tokens" if r.calibration_tokens else ""
    typer.echo(f"wrote {r.out}: {r.method} {r.bits}-bit, group size {r.group_size}, {r.layout} layout"
               f"{', act-order' if r.act_order else ''}; {r.quantized_linears - r.lm_head} linears in {r.layers} "
               f"layers{f' and the LM head (group size {r.lm_head_group_size})' if r.lm_head else ''}"
               f"{calib}; {r.seconds:.1f} s")
