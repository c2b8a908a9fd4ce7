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
) -> None:
    """Quantize a model and write it as an HF folder in the GPTQ or the AutoAWQ GEMM layout."""
    from zigtensor.quant.quantize import quantize_model

    r = quantize_model(model, method=method, bits=bits, group_size=group_size, act_order=act_order,
                       calibration=calibration, samples=samples, out=out, seqlen=seqlen, sym=sym, layout=layout,
                       percdamp=damp)
    calib = f", {r.calibration_tokens} calibration tokens" if r.calibration_tokens else ""
    typer.echo(f"wrote {r.out}: {r.method} {r.bits}-bit, group size {r.group_size}, {r.layout} layout"
               f"{', act-order' if r.act_order else ''}; {r.quantized_linears} linears in {r.layers} layers"
               f"{calib}; {r.seconds:.1f} s")
