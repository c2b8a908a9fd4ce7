"""4-bit quantization, in the form of the GPTQ and AWQ papers' tables (`zt bench quant`): perplexity on held-out
Shakespeare of a model in full precision and quantized by RTN, GPTQ and AWQ with our quantizers; the resident
weight memory of the 4-bit model against the same model in float16; and CPU decode tokens/s of the int4 model
against the float32 one.

>>> bench = bench_quant("smollm2", samples=16, seqlen=256, eval_tokens=4096)
>>> [(r.name, r.perplexity) for r in bench.rows]

The full-precision reference is the model as load_model gives it (a GGUF file's weights dequantized to float32:
they are what the quantizers start from). Calibration windows come from the first 90% of the Shakespeare corpus,
perplexity from its last 10% (calibration.held_out_text): the first eval_tokens tokens, in windows of eval_seqlen,
every token after a window's first one scored. Each quantized folder is loaded back with load_model, so the figures
are those of the int4 model as it runs (weights packed, dequantized per tile), not of a simulation.

Resident weights are every array the loaded model holds (parameters and buffers: codes, scales, zero points,
column maps, norms; the LM head, and with tied embeddings the embedding too, quantized unless quantize_lm_head is
False), measured as loaded, before a forward adds its rotary-table cache; the ratio is against the same model's
parameters at 2 bytes each (float16).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROMPT = "The history of the printing press begins"


@dataclass
class QuantRow:
    name: str  # "fp32" or the method
    perplexity: float
    quantize_seconds: float | None  # None for the reference
    weight_bytes: int  # resident parameters and buffers of the loaded model
    fp16_ratio: float = 0.0  # weight_bytes / the float16 model's bytes


@dataclass
class QuantBench:
    model: str
    bits: int
    group_size: int
    layout: str
    calibration_tokens: int
    eval_tokens: int
    rows: list[QuantRow] = field(default_factory=list)
    fp16_weight_bytes: int = 0  # the float model's parameters at 2 bytes each
    percdamp: float = 0.1
    decode_tokens_per_s: dict = field(default_factory=dict)  # "fp32" / "int4 (<method>)" -> tokens/s at batch 1
    quantize_lm_head: bool = True  # the LM head (and a tied embedding) quantized too


def weight_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (each array counted once: a tied head is the embedding)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        arr = t.numpy() if hasattr(t, "numpy") else np.asarray(t)
        base = arr.base if arr.base is not None else arr
        if id(base) not in seen:
            seen.add(id(base))
            total += arr.nbytes
    return total


def perplexity(model, ids: np.ndarray, window: int) -> float:
    """exp(mean negative log-likelihood) of ids (1-D) in consecutive windows of `window` tokens."""
    from ..llm.transformer import token_tensor

    nll, count = 0.0, 0
    device = model.transformer.wte.weight.device
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window]
        if len(chunk) < 2:
            break
        logits = model.logits(token_tensor(chunk[None, :], device)).numpy()[0].astype(np.float64)  # (T, vocab)
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nll -= logp[np.arange(len(chunk) - 1), chunk[1:]].sum()
        count += len(chunk) - 1
    return float(np.exp(nll / count))


def decode_speed(llm, tokens: int, repeats: int) -> float:
    """Greedy batch-1 decode tokens/s (the decode steps only, as GenerationMetrics times them; median of repeats
    after one warm-up), eos ignored."""
    from ..llm import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    llm.generate(PROMPT, params)
    rates = [llm.generate(PROMPT, params)[0].metrics.decode_tokens_per_second for _ in range(repeats)]
    return float(statistics.median(rates))


def bench_quant(model: str = "smollm2", methods=("rtn", "gptq", "awq"), bits: int = 4, group_size: int = 128,
                samples: int = 16, seqlen: int = 256, eval_tokens: int = 4096, eval_seqlen: int = 512,
                decode_tokens: int = 32, repeats: int = 3, layout: str = "gptq", percdamp: float = 0.1,
                workdir=None, progress=None, quantize_lm_head: bool = True) -> QuantBench:
    """Run the benchmark (see the module docstring); quantized folders go to workdir (default: a temporary one).

    NOTE: every method is written in the GPTQ layout by default: AWQ's layout needs group_size to divide every
    layer's input width, and SmolLM2-135M's 576 is not a multiple of 128 (the GPTQ layout's last group is shorter).
    NOTE: GPTQ's damping defaults to 0.1 here, not AutoGPTQ's 0.01: with a few thousand calibration tokens for
    Hessians up to 1536 wide, 0.01 lets GPTQ fit the sample's noise (measured on SmolLM2's down_proj: held-out
    output error above RTN's at 0.01, 15% below it at 0.1, with 4096 tokens).
    """
    from ..llm import LLM
    from ..quant.calibration import held_out_text
    from ..quant.quantize import quantize_model

    say = progress or (lambda s: None)
    say(f"loading {model}")
    ref = LLM(model)
    ids = np.asarray(ref.tokenizer.encode(held_out_text()[:eval_tokens * 8], add_special_tokens=False))[:eval_tokens]
    if len(ids) < eval_tokens:
        raise ValueError(f"the held-out text has only {len(ids)} tokens, fewer than eval_tokens={eval_tokens}")
    n_params = sum(int(np.prod(p.shape)) for p in ref.model.parameters())
    bench = QuantBench(model=model, bits=bits, group_size=group_size, layout=layout,
                       calibration_tokens=samples * seqlen, eval_tokens=len(ids), fp16_weight_bytes=2 * n_params,
                       percdamp=percdamp, quantize_lm_head=quantize_lm_head)
    resident = weight_bytes(ref.model)  # as loaded (see the module docstring)
    say("perplexity of the full-precision model")
    bench.rows.append(QuantRow("fp32", perplexity(ref.model, ids, eval_seqlen), None, resident,
                               resident / bench.fp16_weight_bytes))
    say("decode speed of the full-precision model")
    bench.decode_tokens_per_s["fp32"] = decode_speed(ref, decode_tokens, repeats)
    del ref

    with tempfile.TemporaryDirectory(prefix="zt-bench-quant-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        for method in methods:
            out = root / f"{Path(str(model)).stem}-{method}-{bits}bit-g{group_size}"
            say(f"quantizing with {method}")
            report = quantize_model(model, method=method, bits=bits, group_size=group_size, samples=samples,
                                    seqlen=seqlen, out=out, layout=layout, percdamp=percdamp, progress=False,
                                    quantize_lm_head=quantize_lm_head)
            say(f"perplexity of the {method} model")
            llm = LLM(out)
            resident = weight_bytes(llm.model)
            bench.rows.append(QuantRow(method, perplexity(llm.model, ids, eval_seqlen), report.seconds, resident,
                                       resident / bench.fp16_weight_bytes))
            if not any(k.startswith("int") for k in bench.decode_tokens_per_s):  # one int model: the kernels
                say(f"decode speed of the {method} model")                     # are the same for every method
                bench.decode_tokens_per_s[f"int{bits} ({method})"] = decode_speed(llm, decode_tokens, repeats)
            del llm
    return bench
