"""`zt info`: what a safetensors file, a checkpoint or a training-run folder holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_MODEL = "A .safetensors file (model, checkpoint or any other) or a training-run folder."


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:  # the last column (bytes) right-aligned
        cells = [str(c).ljust(w) for c, w in zip(r[:-1], widths)] + [str(r[-1]).rjust(widths[-1])]
        lines.append("  ".join(cells).rstrip())
    return lines


def _state_line(state: dict) -> str:
    parts = [f"step {state['step']}"]
    if isinstance(state.get("data"), dict):
        parts.append("data " + ", ".join(f"{k} {v}" for k, v in state["data"].items()))
    for key, label in (("examples_seen", "examples seen"), ("lr", "lr"), ("best_val_loss", "best val loss"),
                       ("elapsed_s", "elapsed s")):
        v = state.get(key)
        if v is not None:
            parts.append(f"{label} {v:.4g}" if isinstance(v, float) else f"{label} {v}")
    return " | ".join(parts)


def _echo_file(s) -> None:
    kinds = {"checkpoint": "zigtensor checkpoint", "model": "zigtensor model", "safetensors": "safetensors"}
    typer.echo(f"{s.path}: {kinds[s.kind]}")
    rows = [("name", "shape", "dtype", "bytes")]
    rows += [(t.name, "(" + ", ".join(map(str, t.shape)) + ")", t.dtype, f"{t.nbytes:,}") for t in s.tensors]
    for line in _table(rows):
        typer.echo(f"  {line}")
    what = "model parameters" if s.kind == "checkpoint" else "parameters"
    typer.echo(f"total: {len(s.tensors)} tensors, {s.total_bytes:,} bytes ({_size(s.total_bytes)}), "
               f"{s.parameters:,} {what}")
    if s.lineage:
        typer.echo("lineage: " + " | ".join(f"{k} {v}" for k, v in s.lineage.items()))
    # the metadata not shown elsewhere: all of a foreign file's; a model's step, tokenizer, normalization
    shown = ("format", "recipe", "lineage") if s.kind == "model" else ()
    meta = {} if s.kind == "checkpoint" else {k: v for k, v in s.metadata.items() if k not in shown}
    if meta:
        typer.echo("metadata:")
        for k, v in meta.items():
            typer.echo(f"  {k}: {v if len(v) <= 200 else v[:197] + '...'}")
    if s.state:
        typer.echo(f"training state: {_state_line(s.state)}")
        if s.state.get("last_eval"):
            from zigtensor.train.trainer import format_eval

            ev = dict(s.state["last_eval"])
            typer.echo(f"last eval (step {ev.pop('step', '?')}): {format_eval(ev)}")
    if s.recipe:
        typer.echo("recipe:")
        for line in s.recipe.rstrip("\n").split("\n"):
            typer.echo(f"  {line}".rstrip())


def info(model: Annotated[Path, typer.Option("--model", help=_MODEL)]) -> None:
    """Tensors (name, shape, dtype, bytes), totals, metadata and training state of a model or a run."""
    from zigtensor.train.summary import RunSummary, summarize

    s = summarize(model)
    if not isinstance(s, RunSummary):
        _echo_file(s)
        return
    typer.echo(f"run folder {s.folder}")
    if s.checkpoints:
        typer.echo("checkpoints: " + ", ".join(p.name for p in s.checkpoints))
    if s.state:
        typer.echo(f"newest checkpoint {s.state['checkpoint']}: {_state_line(s.state)}")
    for split, r in s.last_metrics.items():
        acc = f" acc {r['accuracy']:.4f}" if isinstance(r.get("accuracy"), (int, float)) else ""
        loss = f"loss {r['loss']:.4f}" if isinstance(r.get("loss"), (int, float)) else "no loss"
        typer.echo(f"last {split} metrics (step {r.get('step')}): {loss}{acc}")
    if s.model is not None:
        typer.echo("")
        _echo_file(s.model)
