"""The training loop of a recipe: data, model, optimizer and schedule, then steps, logs, evals, checkpoints.

>>> result = Trainer(load_recipe("recipes/fashion_mlp.toml"), "runs/fashion_mlp").fit()
>>> result.final["test"]["accuracy"]

A run folder (out) holds:
    recipe.toml                   the resolved recipe
    metrics.jsonl                 a train line every train.log_every steps, an eval line per split at each
                                  evaluation (every train.eval_every steps on eval.split, and at the end on
                                  every split: val, and test for image datasets, whole for images)
    checkpoints/step_NNNNNN.safetensors   every train.checkpoint_every steps and at the end; the newest
                                  train.keep_checkpoints are kept
    model.safetensors             the final weights, with the recipe and lineage in the metadata
    sample.txt                    language models: text generated at the end ([sample])
    curves.png                    the loss curves, when matplotlib is installed

Resuming (resume="auto" or a checkpoint path) restores the model, the optimizer state, the schedule's
step, the framework RNG (dropout) and the loader's position, and truncates metrics.jsonl after the
checkpoint's step: on CPU the continued run is bit-identical to an uninterrupted one.

Ctrl-C (SIGINT) finishes the current step, saves a checkpoint and returns a result with interrupted=True;
a second Ctrl-C stops at once. A non-finite loss or gradient norm raises TrainingError before the weights
are updated, leaving the checkpoints already written as they are.

Mixed precision (train.dtype "bfloat16" or "float16"): the parameters and the optimizer stay float32; the
forward passes (training, evaluation, sampling) run under zt.amp.autocast in that dtype. float16 adds a
GradScaler: a step whose gradients overflowed is skipped (it still counts as a step and takes its batch),
the log line counts the skipped steps, and the scaler's state goes into the checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import amp, optim
from ..autograd.grad_mode import no_grad
from ..creation import tensor
from ..dtypes import as_dtype, float64, int64
from ..io.atomic import atomic_write
from ..nn import functional as F
from ..nn.utils import clip_grad_norm_, get_total_norm
from ..ops.shape import stack
from ..optim import lr_scheduler
from ..random import manual_seed
from . import recipe as R
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_checkpoint,
    run_lineage,
    save_checkpoint,
    save_model,
    stale_temp_files,
)
from .datasets import RunData, build_data, describe_data
from .metrics import MetricsLog
from .models import DataInfo, build_model, generate

OPTIMIZERS = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop,
              "adagrad": optim.Adagrad, "lion": optim.Lion}  # recipe optim.name -> class
# the recipe values a checkpoint must agree with to be resumed exactly (the rest may change: train.steps...)
_SAME_RUN = ("model", "data", "optim.name", "train.seed", "train.batch_size")
_MAY_MOVE = ("data.path",)  # the same data in another place (a changed corpus shows in its tokenizer)


class TrainingError(RuntimeError):
    """A run that cannot start or go on: an out folder that holds another run, a loss or gradient norm that
    is not finite. The one-line message names the step, the value and what to do."""


@dataclass
class TrainResult:
    """What fit() did: the step reached, the final evaluation, and the files written."""

    out: Path
    step: int
    interrupted: bool = False  # stopped by Ctrl-C; checkpoint holds the state to resume
    checkpoint: Path | None = None  # the last checkpoint written
    model_path: Path | None = None  # model.safetensors (None when interrupted)
    final: dict = field(default_factory=dict)  # split -> {"loss", "accuracy"?}
    sample: str | None = None  # language models: the generated text
    curves: Path | None = None  # curves.png, when matplotlib is installed


# ---------------------------------------------------------------------------------------------- building
def make_autocast(recipe: R.Recipe):
    """The context the recipe's forward passes run in: autocast to train.dtype, or nothing for float32."""
    t = recipe.train
    if t.dtype == "float32":
        return contextlib.nullcontext()
    return amp.autocast(str(t.device).partition(":")[0], dtype=as_dtype(t.dtype))


def make_grad_scaler(recipe: R.Recipe) -> amp.GradScaler | None:
    """A GradScaler with PyTorch's defaults for float16 (whose gradients underflow without one); None else
    (bfloat16 has float32's range)."""
    return amp.GradScaler() if recipe.train.dtype == "float16" else None


# a float16 step is skipped while the scaler finds overflowed gradients and halves its scale; once the scale
# is below this, the gradients overflow unscaled: the run has diverged
_MIN_LOSS_SCALE = 1.0


def make_optimizer(cfg, params) -> optim.Optimizer:
    """The zigtensor.optim class that a recipe's [optim] section names, with its other keys as arguments."""
    kwargs = {k: v for k, v in R.recipe_to_dict(cfg).items() if k != "name"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return OPTIMIZERS[cfg.name](params, **kwargs)


def make_schedule(recipe: R.Recipe):
    """The function step -> lr of a recipe's [schedule] section, from optim.lr."""
    s, lr = recipe.schedule, recipe.optim.lr
    if isinstance(s, R.ConstantSchedule):
        return lr_scheduler.constant_lr(lr)
    if isinstance(s, R.StepSchedule):
        return lr_scheduler.step_lr(lr, s.step_size, s.gamma)
    if isinstance(s, R.CosineSchedule):
        # NOTE: equal to cosine_annealing_lr up to decay_steps, then held at min_lr instead of rising again
        return lr_scheduler.warmup_cosine_lr(lr, 0, s.decay_steps, s.min_lr)
    if isinstance(s, R.WarmupCosineSchedule):
        return lr_scheduler.warmup_cosine_lr(lr, s.warmup_steps, s.decay_steps, s.min_lr, s.start_factor)
    if isinstance(s, R.WarmupLinearSchedule):
        return lr_scheduler.warmup_linear_lr(lr, s.warmup_steps, s.decay_steps, s.min_lr, s.start_factor)
    if isinstance(s, R.WSDSchedule):
        return lr_scheduler.warmup_stable_decay_lr(lr, s.warmup_steps, s.stable_steps, s.decay_steps, s.decay,
                                                   s.min_lr, s.start_factor)
    raise TypeError(f"make_schedule: unknown schedule section {type(s).__name__}")


def build_recipe_model(recipe: R.Recipe, info: DataInfo | None = None):
    """(model, info): the recipe's model on its device, initialized from train.seed (info: the data's, or
    described from the recipe without loading images)."""
    info = info if info is not None else describe_data(recipe)
    manual_seed(recipe.train.seed)
    return build_model(recipe.model, info).to(device=recipe.train.device), info


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def recipe_differences(old: R.Recipe, new: R.Recipe) -> list[tuple[str, object, object]]:
    """(key, old value, new value) for each resolved value that differs (None: absent)."""
    a, b = _flatten(R.recipe_to_dict(old)), _flatten(R.recipe_to_dict(new))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def format_eval(results: dict) -> str:
    """'val loss 0.4312 acc 0.8460 | test loss ...' for {split: {"loss", "accuracy"?}}."""
    parts = [f"{split} loss {m['loss']:.4f}" + (f" acc {m['accuracy']:.4f}" if "accuracy" in m else "")
             for split, m in results.items()]
    return " | ".join(parts)


def _fmt_norm(norm: float | None) -> str:
    return "-" if norm is None else f"{norm:.3f}"  # None: every float16 step of the window was skipped


def _fmt_rate(n: float) -> str:
    return f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:.0f}"


# ---------------------------------------------------------------------------------------------- the loop
class Trainer:
    """Runs one recipe in one out folder.

    Args:
        recipe (Recipe): the validated recipe (load_recipe).
        out (str | Path): the run folder.
        resume: None (a new run: out must not hold one), "auto" (the newest complete checkpoint in
            out/checkpoints, or a new run when there is none) or the path of a checkpoint.
        echo (callable): prints a line (default tqdm.write, which keeps the progress bar whole).
        progress (bool | None): the tqdm progress bar; None: when stderr is a terminal.
    """

    def __init__(self, recipe: R.Recipe, out, resume=None, echo: Callable[[str], None] | None = None,
                 progress: bool | None = None):
        self.recipe, self.out, self.resume = recipe, Path(out), resume
        self.echo = echo or tqdm.write
        self.progress = progress
        self.ckpt_dir = self.out / "checkpoints"
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.recipe_toml = R.recipe_to_toml(recipe)
        self.step, self.elapsed, self.step_lr = 0, 0.0, 0.0
        self.window = self._empty_window()
        self.best_val_loss: float | None = None
        self.last_eval: dict = {}
        self.last_checkpoint: Path | None = None
        self._stop = False

    # --------------------------------------------------------------------------------------- setup
    def _empty_window(self) -> dict:
        return {"steps": 0, "loss": 0.0, "correct": 0, "examples": 0, "grad_norm": 0.0, "skipped": 0}

    def _existing_run(self) -> str | None:
        """What in out shows an earlier run, or None."""
        if list_checkpoints(self.ckpt_dir):
            return f"checkpoints in {self.ckpt_dir}"
        m = self.metrics.path
        if m.is_file() and m.stat().st_size:
            return f"a non-empty {m}"
        if (self.out / "model.safetensors").exists():
            return f"{self.out / 'model.safetensors'}"
        return None

    def _find_checkpoint(self) -> Checkpoint | None:
        if self.resume is None:
            found = self._existing_run()
            if found:
                raise TrainingError(f"{self.out} already holds a run ({found}); continue it with "
                                    "--resume auto, or remove it or choose another --out")
            return None
        if str(self.resume) != "auto":
            return load_checkpoint(self.resume)
        for tmp in stale_temp_files(self.ckpt_dir):
            tmp.unlink(missing_ok=True)
            self.echo(f"removed {tmp} (left by a checkpoint write that did not finish)")
        ckpt = latest_checkpoint(self.ckpt_dir, warn=self.echo)
        if ckpt is None:
            self.echo(f"no checkpoint in {self.ckpt_dir}: starting from step 0")
        return ckpt

    def _check_same_run(self, ckpt: Checkpoint) -> None:
        try:
            saved = R.parse_recipe(ckpt.recipe, source=f"{ckpt.path} (its recipe)")
        except R.RecipeError as e:
            raise CheckpointError(f"{ckpt.path}: its recipe does not validate any more: {e}") from None
        diffs = recipe_differences(saved, self.recipe)
        for key, old, new in diffs:
            if key not in _MAY_MOVE and any(key == s or key.startswith(s + ".") for s in _SAME_RUN):
                raise CheckpointError(f"{ckpt.path}: was trained with {key} = {old!r}, the recipe has "
                                      f"{new!r}; only a run of the same model, data, optimizer, seed and "
                                      "batch size resumes")
        if diffs:
            self.echo("note: the recipe differs from the checkpoint's in "
                      + ", ".join(f"{k} ({old!r} -> {new!r})" for k, old, new in diffs))

    def _restore(self, ckpt: Checkpoint) -> None:
        self._check_same_run(ckpt)
        saved_tok = ckpt.extra.get("tokenizer")
        if self.data.tokenizer is not None and saved_tok != self.data.tokenizer.to_dict():
            raise CheckpointError(f"{ckpt.path}: its tokenizer differs from the one built from the recipe's "
                                  "data (the corpus changed?)")
        restore_checkpoint(ckpt, self.model, self.optimizer, self.scheduler)
        try:
            self.data.train.load_state_dict(ckpt.data["train"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: cannot restore the data loader ({e})") from None
        state = ckpt.trainer
        try:
            self.elapsed = float(state["elapsed"])
            self.window = {k: type(v)(state["window"].get(k, v)) for k, v in self._empty_window().items()}
            self.best_val_loss = state.get("best_val_loss")
            self.last_eval = state.get("last_eval", {})
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: metadata 'trainer' is incomplete ({e})") from None
        if self.scaler is not None and "grad_scaler" in state:  # absent: a run that was not float16 before
            try:
                self.scaler.load_state_dict(state["grad_scaler"])
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{ckpt.path}: cannot restore the float16 GradScaler ({e})") from None
        self.step = ckpt.step
        self.last_checkpoint = ckpt.path
        self.lineage["resumed_at_steps"] = [*ckpt.lineage.get("resumed_at_steps", []), ckpt.step]

    def _check_prompt(self) -> None:
        s = self.recipe.sample
        if s is None or self.data.tokenizer is None:
            return
        if not s.prompt:
            raise R.RecipeError("sample.prompt: expected a non-empty string (generation continues a prompt)")
        try:
            self.data.tokenizer.encode(s.prompt)
        except ValueError as e:
            raise R.RecipeError(f"sample.prompt: {e}") from None

    def setup(self) -> None:
        """Build data, model, optimizer and schedule; restore a checkpoint when resuming."""
        r = self.recipe
        ckpt = self._find_checkpoint()
        self.data: RunData = build_data(r)
        self._check_prompt()
        self.model, self.info = build_recipe_model(r, self.data.info)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(r.optim, self.params)
        self.scheduler = lr_scheduler.LRScheduler(self.optimizer, make_schedule(r))
        self.scaler = make_grad_scaler(r)
        self.lineage = run_lineage(r.train.device, r.train.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        if ckpt is not None:
            self._restore(ckpt)
            dropped = self.metrics.truncate_after(ckpt.step)
            self.echo(f"resuming from {ckpt.path} (step {ckpt.step}"
                      + (f"; dropped {dropped} metrics lines after it)" if dropped else ")"))
        elif self.resume is not None:
            self.metrics.truncate_after(0)
        self.ckpt_dir.mkdir(exist_ok=True)
        atomic_write(self.out / "recipe.toml", lambda f: f.write(self.recipe_toml.encode("utf-8")))
        n = count_parameters(self.model)
        precision = "" if r.train.dtype == "float32" else f" in {r.train.dtype} (mixed precision)"
        self.echo(f"{self.out}: {r.model.name} ({n:,} parameters) on {r.data.name}, {r.optim.name}, "
                  f"{r.train.steps} steps of {r.train.batch_size} on {r.train.device}{precision}")

    # --------------------------------------------------------------------------------------- one step
    def _loss(self, logits, y):
        if self.info.kind == "text":
            B, T, V = logits.shape
            return F.cross_entropy(logits.reshape(B * T, V), y.reshape(B * T))
        return F.cross_entropy(logits, y)

    def _diverged(self, what: str, value: float) -> TrainingError:
        lr = self.scheduler.get_last_lr()[0]
        last = list_checkpoints(self.ckpt_dir)
        kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written"
        return TrainingError(f"step {self.step + 1}: the {what} is {value} (lr {lr:g}); stopped before "
                             f"updating the weights; {kept} (try a lower optim.lr or train.grad_clip)")

    def train_step(self, x, y) -> tuple[float, int, float | None]:
        """One optimizer step on a batch: (loss, correct predictions (classifiers), gradient norm); the norm
        is None for a float16 step that the GradScaler skipped (its gradients overflowed)."""
        # NOTE: the loss and the gradient norm are checked for inf/nan below, with a message that names the
        # step; NumPy's overflow warnings on the way there would only add noise
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._train_step(x, y)

    def _train_step(self, x, y) -> tuple[float, int, float | None]:
        with make_autocast(self.recipe):
            logits = self.model(self.data.inputs(x))
            loss = self._loss(logits, y)
        self.optimizer.zero_grad()
        scaler = self.scaler
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.unscale_(self.optimizer)  # true gradients for clipping and the norm
        clip = self.recipe.train.grad_clip
        if clip > 0:
            norm_t = clip_grad_norm_(self.params, clip)
        else:
            norm_t = get_total_norm([p.grad for p in self.params if p.grad is not None])
        # NOTE: one transfer from the device per step (loss, norm and, for classifiers, correct predictions),
        # before the weights change: a GPU then waits for the host once, not three times
        stats = [loss.detach().to(float64), norm_t.to(float64)]
        if self.info.kind == "image":
            stats.append((logits.detach().argmax(-1) == y.to(logits.device)).sum().to(float64))
        values = stack(stats).numpy().tolist()
        loss_value, norm = values[0], values[1]
        correct = int(values[2]) if len(values) > 2 else 0
        # NOTE: the loss is computed before any scaling (in float32 under autocast), so a non-finite one is
        # a divergence in every dtype; what the float16 scaler absorbs are overflowed gradients
        if not math.isfinite(loss_value):
            raise self._diverged("loss", loss_value)
        if not math.isfinite(norm) and (scaler is None or scale < _MIN_LOSS_SCALE):
            raise self._diverged("gradient norm", norm)
        self.step_lr = self.scheduler.get_last_lr()[0]  # the rate of this step, which the log line shows
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)  # skipped when a gradient overflowed
            scaler.update()
            if scaler.get_scale() < scale:  # the scale backs off exactly when the step was skipped
                norm = None
        self.scheduler.step()
        return loss_value, correct, norm

    # --------------------------------------------------------------------------------------- evaluation
    @no_grad()
    def evaluate(self, split: str, limit: int | None) -> dict:
        """{"loss", "accuracy"?} of the model on a split (at most limit batches), in eval mode."""
        was_training = self.model.training
        self.model.eval()
        total, correct, n = 0.0, 0, 0
        try:
            for x, y in self.data.eval_batches(split, limit):
                with make_autocast(self.recipe):
                    logits = self.model(self.data.inputs(x))
                    loss = self._loss(logits, y)
                count = y.numel()
                total += float(loss.item()) * count
                if self.info.kind == "image":
                    correct += int((logits.numpy().argmax(-1) == y.numpy()).sum())
                n += count
        finally:
            self.model.train(was_training)
        out = {"loss": total / max(n, 1)}
        if self.info.kind == "image":
            out["accuracy"] = correct / max(n, 1)
        return out

    def _run_evals(self, splits, final: bool) -> dict:
        results = {}
        for split in splits:
            limit = None if final and self.info.kind == "image" else self.recipe.eval.batches
            res = self.evaluate(split, limit)
            results[split] = res
            self.metrics.write({"step": self.step, "split": split, **res, "time": round(self._time(), 3)})
            if split == "val" and (self.best_val_loss is None or res["loss"] < self.best_val_loss):
                self.best_val_loss = res["loss"]
        self.last_eval = {"step": self.step, **results}
        self.echo(f"step {self.step:>6} | eval | {format_eval(results)}")
        return results

    # --------------------------------------------------------------------------------------- saving
    def _time(self) -> float:
        return self.elapsed + (time.perf_counter() - self._t0)

    def _trainer_state(self) -> dict:
        return {"step": self.step, "elapsed": self._time(), "window": dict(self.window),
                "best_val_loss": self.best_val_loss, "last_eval": self.last_eval,
                "epoch": getattr(self.data.train, "epoch", None),
                "examples_seen": self.step * self.recipe.train.batch_size,
                **({} if self.scaler is None else {"grad_scaler": self.scaler.state_dict()})}

    def _extra(self) -> dict:
        extra = {"data_info": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in vars(self.info).items()}}
        if self.data.tokenizer is not None:
            extra["tokenizer"] = self.data.tokenizer.to_dict()
        if self.data.normalize is not None:
            extra["normalize"] = self.data.normalize
        return extra

    def save_checkpoint(self) -> Path:
        """A checkpoint of the current step in out/checkpoints; older ones beyond keep_checkpoints go."""
        path = checkpoint_path(self.ckpt_dir, self.step)
        save_checkpoint(path, step=self.step, model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, data={"train": self.data.train.state_dict()},
                        trainer=self._trainer_state(), recipe=self.recipe_toml, lineage=self.lineage,
                        extra=self._extra())
        self.last_checkpoint = path
        prune_checkpoints(self.ckpt_dir, self.recipe.train.keep_checkpoints)
        return path

    def _save_model(self) -> Path:
        meta = {"recipe": self.recipe_toml, "lineage": self.lineage, "step": str(self.step), **self._extra()}
        return save_model(self.out / "model.safetensors", self.model, meta)

    def _sample(self) -> str | None:
        s = self.recipe.sample
        if s is None or self.data.tokenizer is None:
            return None
        tok = self.data.tokenizer
        idx = tensor(tok.encode(s.prompt)[None, :], dtype=int64, device=self.recipe.train.device)
        with make_autocast(self.recipe):
            out = generate(self.model, idx, s.tokens, temperature=s.temperature, top_k=s.top_k or None,
                           seed=self.recipe.train.seed)
        text = tok.decode(out.numpy()[0])
        atomic_write(self.out / "sample.txt", lambda f: f.write(text.encode("utf-8")))
        return text

    def _curves(self) -> Path | None:
        from .plot import have_matplotlib, plot_curves

        if not have_matplotlib():
            return None
        try:
            return plot_curves(self.metrics.path, self.out / "curves.png")
        except Exception as e:  # noqa: BLE001  (a figure is a bonus; it never fails a finished run)
            self.echo(f"warning: could not write curves.png: {type(e).__name__}: {e}")
            return None

    # --------------------------------------------------------------------------------------- fit
    @contextlib.contextmanager
    def _sigint_to_flag(self):
        """The first Ctrl-C asks the loop to stop at the next step boundary; a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _log_train(self, mark: tuple[float, int]) -> tuple[float, int]:
        """The train line of the steps since the last one; mark: (time, step) of the last one, renewed."""
        w, t = self.window, self.recipe.train
        now = time.perf_counter()
        per_step = t.batch_size * (self.info.block_size if self.info.kind == "text" else 1)
        rate = (self.step - mark[1]) * per_step / max(now - mark[0], 1e-9)
        record = {"step": self.step, "split": "train", "loss": w["loss"] / w["steps"],
                  "lr": self.step_lr, "time": round(self._time(), 3)}
        if self.info.kind == "image":
            record["accuracy"] = w["correct"] / w["examples"]
        stepped = w["steps"] - w["skipped"]  # a skipped float16 step has no gradient norm
        record["grad_norm"] = w["grad_norm"] / stepped if stepped else None
        if self.scaler is not None:
            record["skipped_steps"] = w["skipped"]
            record["loss_scale"] = self.scaler.get_scale()
        record[f"{self.data.unit}_per_s"] = round(rate, 1)
        self.metrics.write(record)
        self.window = self._empty_window()
        ms = 1e3 * (now - mark[0]) / max(self.step - mark[1], 1)
        speed = f"{_fmt_rate(rate)} {self.data.unit}/s"
        self._bar.set_postfix_str(f"loss {record['loss']:.4f} lr {record['lr']:.2e} {speed}")
        if self._bar.disable:
            acc = f" | acc {record['accuracy']:.4f}" if "accuracy" in record else ""
            skipped = f" | {record['skipped_steps']} skipped" if record.get("skipped_steps") else ""
            self.echo(f"step {self.step:>6}/{t.steps} | loss {record['loss']:.4f}{acc} | "
                      f"lr {record['lr']:.2e} | norm {_fmt_norm(record['grad_norm'])}{skipped} | {ms:.1f} ms/step | "
                      f"{speed}")
        return now, self.step

    def _loop(self) -> bool:
        """Steps until train.steps, with logs, evals and checkpoints; True when Ctrl-C stopped it."""
        r, t = self.recipe, self.recipe.train
        batches = self.data.train.batches()
        mark = (time.perf_counter(), self.step)
        while self.step < t.steps:
            if self._stop:  # Ctrl-C: between two steps the state is whole
                if self.step > 0 and self.last_checkpoint != checkpoint_path(self.ckpt_dir, self.step):
                    self.save_checkpoint()
                return True
            x, y = next(batches)
            loss, correct, norm = self.train_step(x, y)
            self.step += 1
            w = self.window
            w["steps"], w["loss"] = w["steps"] + 1, w["loss"] + loss
            if norm is None:  # a float16 step that the GradScaler skipped
                w["skipped"] += 1
            else:
                w["grad_norm"] += norm
            w["correct"], w["examples"] = w["correct"] + correct, w["examples"] + int(y.shape[0])
            self._bar.update(1)
            last = self.step == t.steps
            if self.step % t.log_every == 0 or last:
                mark = self._log_train(mark)
            paused = time.perf_counter()
            if not last and t.eval_every and self.step % t.eval_every == 0:
                self._run_evals([r.eval.split], final=False)
            if not last and t.checkpoint_every and self.step % t.checkpoint_every == 0:
                self.save_checkpoint()
            mark = (mark[0] + time.perf_counter() - paused, mark[1])  # throughput counts training only
        return False

    def fit(self) -> TrainResult:
        """Train to train.steps (or until Ctrl-C); then evaluate, checkpoint, save the model and sample."""
        self.setup()
        was_complete = self.step >= self.recipe.train.steps
        self._t0 = time.perf_counter()
        self._bar = tqdm(total=self.recipe.train.steps, initial=self.step, unit="step", dynamic_ncols=True,
                         disable=None if self.progress is None else not self.progress)
        try:
            with self._sigint_to_flag():
                interrupted = self._loop()
        finally:
            self._bar.close()
            self.metrics.close()
        result = TrainResult(out=self.out, step=self.step, interrupted=interrupted)
        if interrupted:
            result.checkpoint = self.last_checkpoint
            return result
        if was_complete:
            self.echo(f"the run was already complete at step {self.step}")
            result.final = {k: v for k, v in self.last_eval.items() if k != "step"}
        else:
            result.final = self._run_evals(list(self.data.splits), final=True)
            self.save_checkpoint()
            self.metrics.close()
        result.checkpoint = self.last_checkpoint
        result.model_path = self._save_model()
        result.sample = self._sample()
        result.curves = self._curves()
        return result
