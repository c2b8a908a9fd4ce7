"""What a model file, a checkpoint or a run folder holds, for `zt info`: tensors, sizes, metadata, state.

>>> s = summarize("runs/mlp")                 # a run folder: its model.safetensors and newest checkpoint
>>> s.model.parameters, s.state["step"]
>>> summarize("model.safetensors").tensors[0]  # TensorRow(name='fc1.weight', shape=(128, 784), ...)

Only the headers are read: the tensors' data is never touched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..io.safetensors import safe_open
from .checkpoint import FORMAT, MODEL_FORMAT, CheckpointError, list_checkpoints, read_metadata
from .metrics import read_metrics
from .recipe import tomllib  # the stdlib's, or tomli before Python 3.11

# bits per element of the safetensors dtypes
_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
         "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
         "C64": 64, "F64": 64, "I64": 64, "U64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


@dataclass(frozen=True)
class TensorRow:
    name: str
    shape: tuple
    dtype: str  # the safetensors dtype string: F32, BF16, I64, ...
    nbytes: int


@dataclass
class FileSummary:
    """One safetensors file: a zigtensor checkpoint, a zigtensor model, or any other safetensors file."""

    path: Path
    kind: str  # "checkpoint", "model" or "safetensors"
    tensors: list[TensorRow]
    metadata: dict  # the raw metadata, str -> str
    parameters: int  # elements of the model's tensors (model.* in a checkpoint; all of them otherwise), a tied
    # matrix stored under two names counted once
    recipe: str | None = None  # TOML
    lineage: dict | None = None
    state: dict | None = None  # a checkpoint's training state

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


@dataclass
class RunSummary:
    """A training-run folder: its model (model.safetensors, or the newest checkpoint), its checkpoints,
    the training state of the newest complete checkpoint and the last metrics of each split."""

    folder: Path
    model: FileSummary | None
    checkpoints: list[Path] = field(default_factory=list)
    state: dict | None = None
    last_metrics: dict = field(default_factory=dict)  # split -> its last metrics.jsonl record


def _json(meta: dict, key: str):
    try:
        return json.loads(meta[key]) if key in meta else None
    except json.JSONDecodeError:
        return None


def checkpoint_state(meta: dict) -> dict:
    """The training state in a checkpoint's metadata: step, the loader's epoch and position, lr, best val
    loss, ..."""
    trainer, data = _json(meta, "trainer") or {}, _json(meta, "data") or {}
    sched = _json(meta, "scheduler") or {}
    state = {"step": int(meta["step"]), "data": data.get("train", data),
             "examples_seen": trainer.get("examples_seen"), "elapsed_s": trainer.get("elapsed"),
             "lr": (sched.get("last_lr") or [None])[0], "best_val_loss": trainer.get("best_val_loss"),
             "last_eval": trainer.get("last_eval") or None}
    return {k: v for k, v in state.items() if v is not None}


def _tied_copies(meta: dict, prefix: str) -> set[str]:
    """Names under which a zigtensor model file stores a tied matrix a second time (a state dict names it once
    per use): the GPT's output head is its token embedding."""
    try:
        model = tomllib.loads(meta.get("recipe", "")).get("model", {})
    except tomllib.TOMLDecodeError:
        return set()
    return {prefix + "lm_head.weight"} if isinstance(model, dict) and model.get("name") == "gpt" else set()


def summarize_file(path) -> FileSummary:
    """The tensors and metadata of a safetensors file (SafetensorsError when it is not one)."""
    path = Path(path)
    with safe_open(path) as f:
        meta = f.metadata() or {}
        rows = []
        for name in f.offset_keys():
            s = f.get_slice(name)
            shape, dtype = tuple(s.get_shape()), s.get_dtype()
            rows.append(TensorRow(name, shape, dtype, math.ceil(math.prod(shape) * _BITS.get(dtype, 0) / 8)))
    fmt = meta.get("format")
    kind = "checkpoint" if fmt == FORMAT else "model" if fmt == MODEL_FORMAT else "safetensors"
    model_rows = [t for t in rows if t.name.startswith("model.")] if kind == "checkpoint" else rows
    tied = _tied_copies(meta, "model." if kind == "checkpoint" else "") if kind != "safetensors" else set()
    model_rows = [t for t in model_rows if t.name not in tied]
    summary = FileSummary(path=path, kind=kind, tensors=rows, metadata=meta,
                          parameters=sum(math.prod(t.shape) for t in model_rows),
                          recipe=meta.get("recipe"), lineage=_json(meta, "lineage"))
    if kind == "checkpoint":
        try:
            summary.state = checkpoint_state(read_metadata(path))
        except (CheckpointError, ValueError, KeyError):
            summary.state = None
    return summary


def summarize_run(folder) -> RunSummary:
    folder = Path(folder)
    checkpoints = list_checkpoints(folder / "checkpoints")
    state = None
    for p in reversed(checkpoints):
        try:
            state = {"checkpoint": str(p), **checkpoint_state(read_metadata(p))}
            break
        except (CheckpointError, ValueError, KeyError):
            continue
    model_file = folder / "model.safetensors"
    source = model_file if model_file.is_file() else (Path(state["checkpoint"]) if state else None)
    last = {}
    if (folder / "metrics.jsonl").is_file():
        for r in read_metrics(folder / "metrics.jsonl"):
            last[str(r.get("split"))] = r
    if source is None and not last:
        raise FileNotFoundError(f"{folder}: not a training run (no model.safetensors, checkpoints/ or "
                                "metrics.jsonl)")
    return RunSummary(folder=folder, model=summarize_file(source) if source else None,
                      checkpoints=checkpoints, state=state, last_metrics=last)


def summarize(path) -> FileSummary | RunSummary:
    """A run folder's RunSummary or a file's FileSummary."""
    p = Path(path)
    if p.is_dir():
        return summarize_run(p)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    return summarize_file(p)
