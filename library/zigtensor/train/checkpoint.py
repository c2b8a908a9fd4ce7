"""Checkpoints: everything a run needs to go on exactly where it stopped, in one safetensors file.

    tensors   model.<name>            the model's state_dict
              optim.<index>.<key>     the optimizer's tensor state (exp_avg, momentum_buffer, ...)
    metadata  format    "zigtensor.checkpoint"         (all values are strings; the structured ones JSON)
              version   "1"
              step      optimizer steps done
              recipe    the resolved recipe, TOML
              lineage   {"zigtensor", "git_commit", "device", "seed", "python", "numpy", "created"}
              optimizer {"type", "param_groups", "state": {index: {non-tensor state}}}
              scheduler the LRScheduler's state_dict
              rng       {device: the framework generator's state}
              data      {loader name: its state_dict}
              trainer   the loop's own counters (elapsed time, log window, best val loss, ...) and,
                        for train.dtype float16, the GradScaler's state_dict (grad_scaler)
              + extra keys given by the trainer (tokenizer, normalize)

Files are written atomically (temporary file, fsync, rename), so a crash leaves the previous checkpoint
whole and at most a hidden `.step_*.safetensors.*.tmp` file, which never matches the checkpoint name.

>>> save_checkpoint(checkpoint_path("runs/mlp/checkpoints", 120), step=120, model=model, optimizer=opt, ...)
>>> ckpt = latest_checkpoint("runs/mlp/checkpoints", warn=print)   # the newest one that opens
>>> restore_checkpoint(ckpt, model, opt, scheduler)                 # + the loaders from ckpt.data
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..io.errors import SafetensorsError
from ..io.safetensors import load_file, safe_open, save_file
from ..tensor import Tensor

FORMAT = "zigtensor.checkpoint"  # metadata "format" of a checkpoint
MODEL_FORMAT = "zigtensor.model"  # metadata "format" of a run's final model.safetensors
VERSION = "1"
_NAME = re.compile(r"step_(\d+)\.safetensors")
_JSON_KEYS = ("lineage", "optimizer", "scheduler", "rng", "data", "trainer")
_REQUIRED = ("version", "step", "recipe", *_JSON_KEYS)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: not ours, incomplete, or not matching the model or optimizer it
    should restore. The one-line message names the file and what is wrong."""


@dataclass
class Checkpoint:
    """A checkpoint read back: the tensors (memory-mapped) and the decoded metadata."""

    path: Path
    step: int  # optimizer steps done
    recipe: str  # the resolved recipe, TOML text
    lineage: dict
    model: dict  # name -> Tensor, the model's state_dict
    optimizer: dict  # {"type", "param_groups", "state"} with the tensors put back into "state"
    scheduler: dict
    rng: dict  # device -> generator state
    data: dict  # loader name -> state_dict
    trainer: dict  # the loop's counters
    extra: dict = field(default_factory=dict)  # the other metadata (tokenizer, normalize), decoded

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, step={self.step}, {len(self.model)} model tensors)"


# ---------------------------------------------------------------------------------------------- lineage
def git_commit(cwd=None) -> str | None:
    """`git rev-parse HEAD` in cwd (default the current folder), or None when that fails."""
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or os.getcwd(), capture_output=True,
                           text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = r.stdout.strip()
    return commit if r.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def run_lineage(device, seed: int) -> dict:
    """Where a run's weights come from: versions, the git commit of the working folder, device and seed."""
    from .. import __version__

    return {"zigtensor": __version__, "git_commit": git_commit(), "device": str(device), "seed": seed,
            "python": platform.python_version(), "numpy": np.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# ---------------------------------------------------------------------------------------------- RNG
def rng_states() -> dict:
    """The framework generator's state of every device opened so far, by device name."""
    from ..backends import _cache

    return {str(dev): backend.get_rng_state() for dev, backend in _cache.items()}


def set_rng_states(states: dict) -> None:
    from ..random import set_rng_state

    for dev, state in states.items():
        set_rng_state(state, dev)


# ---------------------------------------------------------------------------------------------- files
def checkpoint_path(folder, step: int) -> Path:
    return Path(folder) / f"step_{step:06d}.safetensors"


def list_checkpoints(folder) -> list[Path]:
    """The files named step_<N>.safetensors in folder, by step (temporary files never match)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def stale_temp_files(folder) -> list[Path]:
    """Temporary files that an interrupted atomic checkpoint write left in folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(".step_*.safetensors.*.tmp") if p.is_file())


def prune_checkpoints(folder, keep: int) -> list[Path]:
    """Delete all but the newest keep checkpoints in folder (keep 0: delete none); returns those deleted."""
    if keep <= 0:
        return []
    old = list_checkpoints(folder)[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def _json_value(v, what: str):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_json_value(x, what) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x, what) for k, x in v.items()}
    raise TypeError(f"save_checkpoint: cannot store {what} value {v!r} ({type(v).__name__}) as JSON")


def _dumps(v, what: str) -> str:
    return json.dumps(_json_value(v, what))


def save_checkpoint(path, *, step: int, model, optimizer, scheduler, data: dict, trainer: dict, recipe: str,
                    lineage: dict, extra: dict | None = None) -> Path:
    """Write a checkpoint of the run at this step to path, atomically. extra: more JSON metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    sd = optimizer.state_dict()
    plain_state = {}
    for index, state in sd["state"].items():
        plain_state[str(index)] = {}
        for k, v in state.items():
            if isinstance(v, Tensor):
                tensors[f"optim.{index}.{k}"] = v
            else:
                plain_state[str(index)][k] = v
    optim = {"type": type(optimizer).__name__, "param_groups": sd["param_groups"], "state": plain_state}
    metadata = {"format": FORMAT, "version": VERSION, "step": str(step), "recipe": recipe,
                "lineage": _dumps(lineage, "lineage"), "optimizer": _dumps(optim, "optimizer"),
                "scheduler": _dumps(scheduler.state_dict(), "scheduler"), "rng": _dumps(rng_states(), "rng"),
                "data": _dumps(data, "data"), "trainer": _dumps(trainer, "trainer")}
    for k, v in (extra or {}).items():
        metadata[k] = _dumps(v, k)
    save_file(tensors, path, metadata)
    return Path(path)


def save_model(path, model, metadata: dict) -> Path:
    """A run's final weights: the model's state_dict by its own names, with JSON metadata (format added)."""
    meta = {"format": MODEL_FORMAT}
    meta.update({k: v if isinstance(v, str) else _dumps(v, k) for k, v in metadata.items()})
    save_file(dict(model.state_dict()), path, meta)
    return Path(path)


# ---------------------------------------------------------------------------------------------- reading
def read_metadata(path) -> dict[str, str]:
    """The metadata of a checkpoint, checked for our format and keys, without reading the tensors."""
    try:
        with safe_open(path) as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except (SafetensorsError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        what = "a model file, not a checkpoint" if meta.get("format") == MODEL_FORMAT else (
            f"metadata format {meta['format']!r}" if "format" in meta else "no 'format' metadata")
        raise CheckpointError(f"{path}: not a zigtensor checkpoint ({what}; expected format {FORMAT!r})")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint: missing metadata {', '.join(missing)}")
    if meta["version"] != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta['version']!r}; this zigtensor reads "
                              f"version {VERSION!r}")
    return meta


def _loads(path, meta: dict, key: str):
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON ({e})") from None


def load_checkpoint(path, device="cpu") -> Checkpoint:
    """A checkpoint file read and checked (format, metadata, tensor names); tensors are memory-mapped."""
    path = Path(path)
    meta = read_metadata(path)
    if not re.fullmatch(r"\d+", meta["step"]):
        raise CheckpointError(f"{path}: metadata step {meta['step']!r} is not a non-negative integer")
    decoded = {k: _loads(path, meta, k) for k in _JSON_KEYS}
    extra = {k: _loads(path, meta, k) for k in meta if k not in (*_REQUIRED, "format")}
    optim = decoded["optimizer"]
    if not isinstance(optim, dict) or not {"type", "param_groups", "state"} <= set(optim):
        raise CheckpointError(f"{path}: metadata 'optimizer' needs keys type, param_groups and state")
    try:
        tensors = load_file(path, device=device)
    except (SafetensorsError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read the tensors ({e})") from None
    model, state = {}, {int(i): dict(s) for i, s in optim["state"].items()}
    for name, t in tensors.items():
        prefix, _, rest = name.partition(".")
        if prefix == "model" and rest:
            model[rest] = t
        elif prefix == "optim" and re.fullmatch(r"\d+\.[^.].*", rest):
            index, _, key = rest.partition(".")
            state.setdefault(int(index), {})[key] = t
        else:
            raise CheckpointError(f"{path}: unexpected tensor {name!r} (a checkpoint holds model.* and "
                                  "optim.<index>.* tensors)")
    if not model:
        raise CheckpointError(f"{path}: the checkpoint holds no model.* tensors")
    optim = {**optim, "state": state}
    return Checkpoint(path=path, step=int(meta["step"]), recipe=meta["recipe"], lineage=decoded["lineage"],
                      model=model, optimizer=optim, scheduler=decoded["scheduler"], rng=decoded["rng"],
                      data=decoded["data"], trainer=decoded["trainer"], extra=extra)


def latest_checkpoint(folder, warn: Callable[[str], None] | None = None) -> Checkpoint | None:
    """The newest checkpoint in folder that opens and checks out; each newer one that does not is skipped
    with a warning line. None when there is none."""
    for p in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(p)
        except CheckpointError as e:
            if warn is not None:
                warn(f"warning: skipping {p}: {e}")
    return None


# ---------------------------------------------------------------------------------------------- restoring
def _check_model(ckpt: Checkpoint, model) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in ckpt.model]
    unexpected = [k for k in ckpt.model if k not in own]
    wrong = [f"{k} {tuple(ckpt.model[k].shape)} vs {tuple(t.shape)}" for k, t in own.items()
             if k in ckpt.model and tuple(ckpt.model[k].shape) != tuple(t.shape)]
    problems = ([f"missing tensors {', '.join(missing)}"] if missing else []) + (
        [f"unexpected tensors {', '.join(unexpected)}"] if unexpected else []) + (
        [f"shapes differ (checkpoint vs model): {'; '.join(wrong)}"] if wrong else [])
    if problems:
        raise CheckpointError(f"{ckpt.path}: does not match the recipe's model ({type(model).__name__}): "
                              + "; ".join(problems))


def _optimizer_state(ckpt: Checkpoint, optimizer) -> dict:
    saved = ckpt.optimizer
    if saved["type"] != type(optimizer).__name__:
        raise CheckpointError(f"{ckpt.path}: holds the state of optimizer {saved['type']}, the recipe's is "
                              f"{type(optimizer).__name__}")
    groups = saved["param_groups"]
    mine = optimizer.param_groups
    if len(groups) != len(mine) or any(len(g["params"]) != len(m["params"]) for g, m in zip(groups, mine)):
        raise CheckpointError(f"{ckpt.path}: optimizer parameter groups of sizes "
                              f"{[len(g['params']) for g in groups]}, the model's are "
                              f"{[len(m['params']) for m in mine]}")
    # JSON turned tuples (betas) into lists: give them back their type
    groups = [{k: tuple(v) if isinstance(m.get(k), tuple) and isinstance(v, list) else v
               for k, v in g.items()} for g, m in zip(groups, mine)]
    return {"state": saved["state"], "param_groups": groups}


def restore_checkpoint(ckpt: Checkpoint, model, optimizer=None, scheduler=None, rng: bool = True) -> None:
    """Put the checkpoint's model weights, optimizer state, scheduler step and framework RNG states back
    (the loaders restore themselves from ckpt.data). A mismatch is a CheckpointError naming it."""
    _check_model(ckpt, model)
    model.load_state_dict(ckpt.model)
    if optimizer is not None:
        state = _optimizer_state(ckpt, optimizer)
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{ckpt.path}: cannot restore the optimizer state ({e})") from None
    if scheduler is not None:
        try:
            scheduler.load_state_dict(ckpt.scheduler)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{ckpt.path}: cannot restore the scheduler state ({e})") from None
    if rng:
        try:
            set_rng_states(ckpt.rng)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt.path}: cannot restore the RNG state ({e})") from None

