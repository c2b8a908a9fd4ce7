"""curves.png: the loss (and accuracy) of a run over the steps, from its metrics.jsonl, with matplotlib.

matplotlib is an optional extra (pip install 'zigtensor[plot]'); only the Agg canvas is used, so plotting
never opens a window or changes pyplot's global state.

>>> plot_curves("runs/mlp/metrics.jsonl", "runs/mlp/curves.png")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .metrics import read_metrics

INSTALL = "pip install 'zigtensor[plot]'"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _series(records: list[dict], key: str) -> dict[str, tuple[list, list]]:
    """split -> (steps, values) of the records that have key."""
    out: dict[str, tuple[list, list]] = {}
    for r in records:
        if isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), int):
            steps, values = out.setdefault(str(r.get("split", "?")), ([], []))
            steps.append(r["step"])
            values.append(r[key])
    return out


def plot_curves(metrics, out) -> Path:
    """Write out (a PNG) with the train/val/test loss over the steps, and the accuracy when the run logged
    it. metrics: a metrics.jsonl path or the records. Raises ModuleNotFoundError without matplotlib."""
    if not have_matplotlib():
        raise ModuleNotFoundError(f"matplotlib is not installed; {INSTALL}", name="matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_metrics(metrics) if isinstance(metrics, (str, Path)) else list(metrics)
    if not records:
        raise ValueError(f"{metrics}: no metrics to plot" if isinstance(metrics, (str, Path))
                         else "plot_curves: no metrics to plot")
    panels = [("loss", _series(records, "loss"))]
    accuracy = _series(records, "accuracy")
    if accuracy:
        panels.append(("accuracy", accuracy))
    fig = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (key, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for split, (steps, values) in series.items():
            style = "-" if split == "train" else "o-"
            ax.plot(steps, values, style, label=split, markersize=3, alpha=0.8 if split == "train" else 1.0)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        if key == "loss" and all(v > 0 for _, vs in series.values() for v in vs):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    out = Path(out)
    fig.savefig(out, dpi=100)
    return out
