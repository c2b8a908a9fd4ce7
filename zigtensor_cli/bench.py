"""`zt bench`: benchmark suites, each side by side with its reference, printed as a table."""

from __future__ import annotations

from typing import Annotated

import typer

from .generate import _KEEP

app = typer.Typer(help="Benchmark zigtensor against its references (NumPy, PyTorch) in one process.",
                  no_args_is_help=True)


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    return f"{s * 1e3:.3f} ms"


@app.command("core")
def core(quick: bool = typer.Option(False, "--quick", help="Fewer repeats (noisier, faster).")) -> None:
    """Autograd overhead, 1024x1024 matmul, and an MLP training step with Adam."""
    from zigtensor.bench import core as suite

    typer.echo(f"machine: {suite.machine()}")
    header = f"{'benchmark':44} {'zigtensor':>12} {'reference':>12}  {'ref/zt':>7}  reference"
    typer.echo(header)
    typer.echo("-" * len(header))
    for r in suite.run(quick=quick):
        ref = _fmt_time(r.ref_s) if r.ref_s is not None else "n/a"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "n/a"
        typer.echo(f"{r.name:44} {_fmt_time(r.zt_s):>12} {ref:>12}  {ratio:>7}  {r.reference}")


@app.command("train")
def train(
    recipe: str = typer.Argument(..., help="A recipe TOML file, or a shipped recipe's name (recipes/)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1,
                                   help="Examples per step (default: the recipe's)."),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed steps of each (after 3 warm-up steps)."),
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY.PATH=VALUE", help="Override a recipe value, as in zt train (repeatable).")] = None,
    device: str = typer.Option(None, "--device", help="cpu or cuda[:i] (default: the recipe's train.device)."),
) -> None:
    """One training step of a recipe's model: zigtensor against its PyTorch twin (same weights and batch)."""
    from zigtensor.bench import core
    from zigtensor.bench import train as suite

    results = suite.bench_recipe(suite.find_recipe(recipe, overrides or []), batch_size=batch_size, steps=steps,
                                 device=device)
    typer.echo(f"machine: {core.machine()}")
    header = f"{'benchmark':64} {'zigtensor':>14} {'torch':>14}  {'torch/zt':>8}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for r in results:
        if r.unit == "B":  # memory: zigtensor only (see bench_recipe)
            zt_v, ref_v = f"{r.zt_s / 2**20:.1f} MiB", "n/a"
        elif r.unit.startswith("s/"):  # seconds per example or token, shown as a throughput
            zt_v, ref_v = f"{1 / r.zt_s:,.0f}", (f"{1 / r.ref_s:,.0f}" if r.ref_s else "n/a")
        else:
            zt_v, ref_v = _fmt_time(r.zt_s), (_fmt_time(r.ref_s) if r.ref_s else "n/a")
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None and r.unit != "B" else ""
        typer.echo(f"{r.name:64} {zt_v:>14} {ref_v:>14}  {ratio:>8}")
    typer.echo("torch/zt > 1: zigtensor is faster. Memory: NumPy allocations traced by tracemalloc during "
               "one step, above what was held before it.")


@app.command("ops")
def ops(
    family: str = typer.Option(None, "--family", help="Only these kernel families (comma-separated)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller sizes and fewer repeats (noisier, faster)."),
    json_path: str = typer.Option(None, "--json", help="Also write JSON lines (peaks, then one per case) here."),
) -> None:
    """Our CUDA kernels (CUDA events, median) beside CuPy/cuBLAS/PyTorch, as % of peaks measured first."""
    from zigtensor.bench import ops as suite

    families = [f.strip() for f in family.split(",") if f.strip()] if family else None
    peaks, rows = suite.run(families, quick=quick, progress=lambda s: typer.echo(f"  running {s}", err=True))
    gemm = lambda v: f"{v:.1f} TFLOP/s" if v else "n/a"  # noqa: E731
    typer.echo(f"device: {peaks.device}   peaks: copy {peaks.copy:.0f} GB/s, SGEMM {gemm(peaks.sgemm)}, "
               f"BF16 GEMM {gemm(peaks.bf16_gemm)}")
    for note in peaks.notes:
        typer.echo(f"  note: {note}")
    header = (f"{'family':12} {'case':44} {'time':>11} {'throughput':>15} {'% peak':>7} {'reference':>11} "
              f"{'ref/ours':>8}  reference")
    typer.echo(header)
    typer.echo("-" * len(header))
    for r in rows:
        unit = suite.PEAK_UNITS[r.peak]
        pct = r.percent_of_peak(peaks)
        typer.echo(f"{r.family:12} {r.case:44} {_fmt_time(r.time_s):>11} {r.throughput:>9.1f} {unit:<7}"
                   f"{(f'{pct:.0f}%' if pct is not None else 'n/a'):>6} "
                   f"{(_fmt_time(r.ref_time_s) if r.ref_time_s else 'n/a'):>11} "
                   f"{(f'{r.ratio:.2f}x' if r.ratio else 'n/a'):>8}  {r.reference}")
    if json_path:
        with open(json_path, "w") as f:
            f.write("\n".join(suite.json_lines(peaks, rows)) + "\n")
        typer.echo(f"wrote {json_path}")


@app.command("generate")
def generate(
    model: str = typer.Option("smollm2", "--model", help="A language model: path or short name (smollm2)."),
    batch_size: str = typer.Option("1,8", "--batch-size", help="Batch sizes to time (comma-separated)."),
    tokens: int = typer.Option(64, "--tokens", min=1, help="New tokens per sequence."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs of each library per batch size."),
    no_reference: bool = typer.Option(False, "--no-reference", help="Skip transformers."),
    torch_threads: int = typer.Option(None, "--torch-threads", min=1,
                                      help="torch.set_num_threads for transformers (default: torch's)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:i], for both libraries."),
    dtype: str = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: float32)."),
    keep_quantized: bool = typer.Option(False, "--keep-quantized", help=_KEEP),
) -> None:
    """Greedy decode tokens/s against transformers' generate (same model, in turns), then load time and memory."""
    from zigtensor.bench import core
    from zigtensor.bench import generate as suite

    try:
        sizes = [int(b) for b in batch_size.split(",") if b.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated ints, got {batch_size!r}",
                                 param_hint="--batch-size") from None
    rows, facts = suite.bench_generate(model, sizes, tokens, repeats, reference=not no_reference,
                                       torch_threads=torch_threads, progress=lambda s: typer.echo(f"  {s}", err=True),
                                       device=device, dtype=dtype, keep_quantized=keep_quantized)
    threads = facts["torch_threads"]
    typer.echo(f"machine: {core.machine()}; zigtensor BLAS threads per decode step: "
               f"{suite.decode_threads()}; torch threads: {threads if threads else 'n/a'}")
    header = f"{'benchmark':44} {'zigtensor':>16} {'transformers':>16}  {'zt/hf':>6}  same tokens"
    typer.echo(header)
    typer.echo("-" * len(header))
    for r, batch in zip(rows, sizes):
        ref = f"{1 / r.ref_s:,.1f} tok/s" if r.ref_s else "n/a"
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        same = {True: "yes", False: "NO"}.get(facts["same_tokens"].get(batch), "")
        typer.echo(f"{r.name:44} {f'{1 / r.zt_s:,.1f} tok/s':>16} {ref:>16}  {ratio:>6}  {same}")
    for what, key in (("load time", "seconds"), ("resident memory after load", "rss_bytes"),
                      ("peak resident memory while loading", "peak_rss_bytes")):
        cells = []
        for lib in ("zigtensor", "transformers"):
            s = facts["load"].get(lib)
            v = None if s is None else getattr(s, key)
            cells.append("n/a" if v is None else f"{v:.1f} s" if key == "seconds" else f"{v / 2**20:,.0f} MiB")
        typer.echo(f"{what:44} {cells[0]:>16} {cells[1]:>16}")
    typer.echo("zt/hf > 1: zigtensor is faster. Memory: each library loaded alone in a fresh Python process.")
    roof = facts["roofline"]
    typer.echo(f"decode roofline: weights read per step over step time, against {roof['copy_how']} "
               f"({roof['copy_bytes_per_s'] / 1e9:,.1f} GB/s read + written)")
    for r in suite.roofline_rows(rows, sizes, roof):
        typer.echo(f"  batch {r['batch']:<3} {r['library']:13} {r['weight_bytes'] / 2**20:8,.1f} MiB a step  "
                   f"{r['bytes_per_s'] / 1e9:8,.1f} GB/s  {100 * r['of_copy']:5.1f}% of copy")


@app.command("serve")
def serve(
    model: str = typer.Option(None, "--model", help="The model to serve in-process (or the served name with --url)."),
    batch_size: str = typer.Option("8", "--batch-size", help="Engine batch size (max_num_seqs); '1,8,32' sweeps."),
    num_prompts: int = typer.Option(None, "--num-prompts", min=1, help="Requests per batch size (default 4x it)."),
    input_len: int = typer.Option(128, "--input-len", min=1, help="Prompt tokens per request."),
    output_len: int = typer.Option(64, "--output-len", min=1, help="Generated tokens per request (ignore_eos)."),
    concurrency: int = typer.Option(None, "--concurrency", min=1, help="Requests in flight (default: batch size)."),
    url: str = typer.Option(None, "--url", help="Drive a running `zt serve` at this URL instead of an engine."),
    api_key: str = typer.Option(None, "--api-key", envvar="ZT_API_KEY", help="The server's key (with --url)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:i] (in-process)."),
    json_path: str = typer.Option(None, "--json", help="Write the JSON lines here instead of printing them."),
    keep_quantized: bool = typer.Option(False, "--keep-quantized", help=_KEEP),
) -> None:
    """Serving latency (TTFT, TPOT, ITL, end-to-end: mean/p50/p90/p99) and throughput, as a table and JSON lines."""
    from zigtensor.bench import core
    from zigtensor.bench import serve as suite

    try:
        sizes = [int(b) for b in batch_size.split(",") if b.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"{batch_size!r}: expected positive integers separated by commas, e.g. 1,8,32",
                                 param_hint="--batch-size")
    if url is None and model is None:
        raise typer.BadParameter("give --model (in-process) or --url (a running server)", param_hint="--model")
    options = dict(num_prompts=num_prompts, input_len=input_len, output_len=output_len, concurrency=concurrency)
    if url is not None:
        results = suite.run_url(url, sizes, model=model, api_key=api_key, **options)
    else:
        results = suite.run_engine(suite.engine_factory(model, device=device, keep_quantized=keep_quantized), sizes,
                                   **options)
    typer.echo(f"machine: {core.machine()}   target: {url or f'{model} in-process on {device}'}")
    typer.echo(suite.table(results))
    typer.echo("latencies: mean/p50/p90/p99 ms; ovh %: engine step time outside the model (in-process only)")
    lines = suite.json_lines(results)
    if json_path:
        with open(json_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        typer.echo(f"wrote {json_path}")
    else:
        typer.echo("\n".join(lines))


@app.command("quant")
def quant(
    model: str = typer.Option("smollm2", "--model", help="A Llama / Mistral / Qwen2 model: path or short name."),
    bits: int = typer.Option(4, "--bits", help="4 (awq) or 8 (rtn and gptq only)."),
    group_size: int = typer.Option(128, "--group-size", help="Inputs per scale and zero point."),
    methods: str = typer.Option("rtn,gptq,awq", "--methods", help="Quantizers to compare (comma-separated)."),
    samples: int = typer.Option(16, "--samples", min=1, help="Calibration windows (first 90% of Shakespeare)."),
    seqlen: int = typer.Option(256, "--seqlen", min=2, help="Tokens per calibration window."),
    eval_tokens: int = typer.Option(4096, "--eval-tokens", min=2, help="Held-out tokens scored (last 10%)."),
    eval_seqlen: int = typer.Option(512, "--eval-seqlen", min=2, help="Tokens per perplexity window."),
    decode_tokens: int = typer.Option(32, "--decode-tokens", min=2, help="Tokens per decode-speed run."),
    damp: float = typer.Option(0.1, "--damp", help="GPTQ damping (0.1: the calibration set is small)."),
) -> None:
    """Perplexity on held-out Shakespeare: full precision vs RTN, GPTQ, AWQ; 4-bit weight memory; int4 decode."""
    from zigtensor.bench import core
    from zigtensor.bench import quant as suite

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    b = suite.bench_quant(model, chosen, bits, group_size, samples, seqlen, eval_tokens, eval_seqlen, decode_tokens,
                          percdamp=damp, progress=lambda s: typer.echo(f"  {s}", err=True))
    typer.echo(f"machine: {core.machine()}")
    typer.echo(f"model: {b.model}; {b.bits}-bit, group size {b.group_size}, {b.layout} layout; calibration "
               f"{b.calibration_tokens} tokens, GPTQ damping {b.percdamp}; perplexity over {b.eval_tokens} held-out "
               f"tokens (windows of {eval_seqlen})")
    header = f"{'weights':10} {'perplexity':>11} {'quantize time':>14} {'resident weights':>17} {'vs fp16':>8}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for r in b.rows:
        secs = f"{r.quantize_seconds:.0f} s" if r.quantize_seconds is not None else ""
        typer.echo(f"{r.name:10} {r.perplexity:>11.3f} {secs:>14} {r.weight_bytes / 2**20:>13.1f} MiB "
                   f"{r.weight_bytes / b.fp16_weight_bytes:>7.2f}x")
    typer.echo(f"{'fp16':10} {'':>11} {'':>14} {b.fp16_weight_bytes / 2**20:>13.1f} MiB {1:>7.2f}x  (parameters at "
               "2 bytes, for reference)")
    for name, rate in b.decode_tokens_per_s.items():
        typer.echo(f"decode, batch 1, {name}: {rate:.1f} tokens/s")


@app.command("quant-decode")
def quant_decode(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:i]."),
    layers: int = typer.Option(22, "--layers", min=1, help="Decoder blocks (22 at hidden 2048: 1.1B parameters)."),
    hidden: int = typer.Option(2048, "--hidden", min=64,
                               help="Model width (heads of 64, an eighth as kv heads, MLP 2.75x, vocab 32000)."),
    group_size: int = typer.Option(128, "--group-size", min=8, help="Inputs per scale and zero point."),
    context: int = typer.Option(128, "--context", min=1, help="Prompt tokens in the cache before each step."),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed decode steps of each path (median)."),
    dtype: str = typer.Option(None, "--dtype", help="The float path: bfloat16 (CUDA default) or float32 (CPU)."),
) -> None:
    """Batch-1 decode step of a random-weight 1B-class Llama: int4 (RTN, QuantLinear) against the float model."""
    from zigtensor.bench import quant_decode as suite

    b = suite.bench_quant_decode(device=device, layers=layers, hidden=hidden, dtype=dtype, group_size=group_size,
                                 context=context, steps=steps, progress=lambda s: typer.echo(f"  {s}", err=True))
    c = b.config
    typer.echo(f"device: {b.device} ({b.device_name})")
    typer.echo(f"model: random Llama, {c.num_layers} layers, hidden {c.hidden_size}, {c.num_heads} heads / "
               f"{c.num_kv_heads} kv heads, intermediate {c.intermediate_size}, vocab {c.vocab_size}: "
               f"{b.parameters / 1e9:.2f}B parameters; batch 1, context {b.context}, median of {b.steps} steps")
    header = f"{'weights':16} {'ms/step':>9} {'tokens/s':>9} {'resident':>12}  linears at batch 1"
    typer.echo(header)
    typer.echo("-" * len(header))
    for p in b.paths:
        typer.echo(f"{p.name:16} {p.step_s * 1e3:>9.2f} {p.tokens_per_s:>9.1f} {p.weight_bytes / 2**20:>8.0f} MiB  "
                   f"{p.kernel}")
    typer.echo(f"int4 / {b.paths[0].name}: {b.ratio:.2f}x tokens/s (issue 8's target on a GPU: at least 3x)")
    typer.echo("setup: " + ", ".join(f"{k} {v:.1f} s" for k, v in b.setup_s.items()))
