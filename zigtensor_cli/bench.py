"""`zt bench`: benchmark suites, each side by side with its reference, printed as a table."""

from __future__ import annotations

import typer

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
) -> None:
    """One training step of a recipe's model: zigtensor against its PyTorch twin (same weights and batch)."""
    from zigtensor.bench import core
    from zigtensor.bench import train as suite

    results = suite.bench_recipe(suite.find_recipe(recipe), batch_size=batch_size, steps=steps)
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
