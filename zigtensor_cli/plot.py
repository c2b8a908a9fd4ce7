"""`zt plot`: a run's loss and accuracy curves as OUT/curves.png."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plot(out: Annotated[Path, typer.Argument(help="The run folder (it holds metrics.jsonl).")]) -> None:
    """Write OUT/curves.png from OUT/metrics.jsonl (needs matplotlib, the plot extra of zigtensor)."""
    from zigtensor.train.plot import plot_curves

    folder = out.parent if out.is_file() else out
    typer.echo(f"wrote {plot_curves(folder / 'metrics.jsonl', folder / 'curves.png')}")
