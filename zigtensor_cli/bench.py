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
