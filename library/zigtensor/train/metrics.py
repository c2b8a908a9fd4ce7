"""metrics.jsonl: one JSON object per line, appended as training goes, read back for plots and `zt info`.

    {"step": 10, "split": "train", "loss": 0.61, "lr": 0.001, "time": 1.9, "accuracy": 0.81, ...}
    {"step": 200, "split": "val", "loss": 0.43, "accuracy": 0.86, "time": 30.2}

A resumed run first truncates the lines logged after its checkpoint's step (truncate_after), so the file
reads as if the run had never stopped.

>>> log = MetricsLog("runs/mlp/metrics.jsonl")
>>> log.write({"step": 10, "split": "train", "loss": 0.61})
>>> read_metrics("runs/mlp/metrics.jsonl")[-1]["loss"]
0.61
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io.atomic import atomic_write


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl file, in order. A line that is not a JSON object (the partial last
    line of a run killed mid-write) is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


class MetricsLog:
    """Appends records to a metrics.jsonl file, one flushed line each (a crash loses at most the last)."""

    def __init__(self, path):
        self.path = Path(path)
        self._file = None

    def write(self, record: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (kept open across writes)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def truncate_after(self, step: int) -> int:
        """Drop the records with a step greater than step (and unreadable lines); returns how many went."""
        self.close()
        if not self.path.exists():
            return 0
        records = read_metrics(self.path)
        kept = [r for r in records if isinstance(r.get("step"), int) and r["step"] <= step]
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if len(kept) == len(lines):
            return 0
        text = "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8")
        atomic_write(self.path, lambda f: f.write(text))
        return len(lines) - len(kept)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"MetricsLog({str(self.path)!r})"
