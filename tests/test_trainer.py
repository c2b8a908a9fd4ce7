"""The trainer end to end on tiny synthetic data: it learns, it resumes bit for bit in a new process, it
survives a crash in the middle of a checkpoint write, it prunes checkpoints, it stops on a non-finite loss.

Everything runs in tmp folders (the subprocesses' working folder too); the models are tiny and the runs a
few dozen steps, so the whole file takes seconds.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from tiny_recipes import IMAGE_RECIPE, TEXT_RECIPE, write_image_dataset
from typer.testing import CliRunner

import zigtensor as zt
from zigtensor.models import MLP, MLPConfig
from zigtensor.train import load_recipe
from zigtensor.train.checkpoint import (
    CheckpointError,
    git_commit,
    list_checkpoints,
    load_checkpoint,
    restore_checkpoint,
)
from zigtensor.train.metrics import read_metrics
from zigtensor.train.trainer import Trainer, TrainingError
from zigtensor_cli.app import app

# ---------------------------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_image_dataset(root / "images")
    (root / "text.txt").write_text("hello world, hello zigtensor!\n" * 200)
    return root


@pytest.fixture(scope="module")
def recipes(data_dir):
    """{"image": path, "text": path} of the two recipe files."""
    image, text = data_dir / "image.toml", data_dir / "text.toml"
    image.write_text(IMAGE_RECIPE.format(path=data_dir / "images"))
    text.write_text(TEXT_RECIPE.format(path=data_dir / "text.txt"))
    return {"image": image, "text": text}


# ---------------------------------------------------------------------------------------------- helpers
def zt_cli(*args, cwd, script=None):
    """`python -m zigtensor_cli args` in a new process, or `python -c script args` (script ends by calling
    the CLI's main with sys.argv[1:])."""
    cmd = [sys.executable, "-m", "zigtensor_cli", *map(str, args)] if script is None else \
        [sys.executable, "-c", script, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


_RUN_MAIN = """
sys.argv = ["zt", *sys.argv[1:]]
from zigtensor_cli.app import main
main()
"""

# Ctrl-C from inside: the process sends itself SIGINT right after its n-th optimizer step (mid-step: the
# scheduler and the counters are not updated yet), n from the environment variable STOP_AFTER.
INTERRUPT = """
import os, signal, sys
import zigtensor.optim.optimizer as O
n, calls, step = int(os.environ["STOP_AFTER"]), [0], O.Optimizer.step
def patched(self, *a, **k):
    out = step(self, *a, **k)
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGINT)
    return out
O.Optimizer.step = patched
""" + _RUN_MAIN

# A crash in the middle of writing the checkpoint of step CRASH_AT: half the file goes to the temporary file,
# then the process dies without any cleanup.
CRASH = """
import io, os, sys
import zigtensor.io.safetensors as S
write_file, target = S.atomic_write, "step_%06d.safetensors" % int(os.environ["CRASH_AT"])
def patched(path, write):
    if not str(path).endswith(target):
        return write_file(path, write)
    def half(f):
        buf = io.BytesIO()
        write(buf)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
        f.flush()
        os._exit(3)
    return write_file(path, half)
S.atomic_write = patched
""" + _RUN_MAIN


def invoke(*args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, [str(a) for a in args])


def weights(path) -> dict:
    return {k: v.numpy().copy() for k, v in zt.load_file(path).items()}


def losses(run) -> list[tuple]:
    return [(r["step"], r["split"], r["loss"], r.get("accuracy"))
            for r in read_metrics(run / "metrics.jsonl")]


def assert_same_run(a, b):
    wa, wb = weights(a / "model.safetensors"), weights(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), f"{k} differs"
    assert losses(a) == losses(b)


@pytest.fixture(scope="module")
def reference(recipes, tmp_path_factory):
    """Uninterrupted runs of both recipes, in one process: {"image": out folder, "text": out folder}."""
    root = tmp_path_factory.mktemp("reference")
    outs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for kind, recipe in recipes.items():
            outs[kind] = root / kind
            Trainer(load_recipe(recipe), outs[kind], progress=False, echo=lambda s: None).fit()
    return outs


# ---------------------------------------------------------------------------------------------- learning
def test_image_run_learns_and_writes_its_folder(reference, recipes):
    out = reference["image"]
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [10, 20, 30, 40, 50, 60]
    assert set(train[0]) >= {"step", "split", "loss", "lr", "time", "accuracy", "grad_norm"}
    assert train[0]["accuracy"] < 0.6  # it starts far from the goal ...
    final = {r["split"]: r for r in records if r["step"] == 60 and r["split"] != "train"}
    assert set(final) == {"val", "test"}
    assert final["val"]["accuracy"] >= 0.9 and final["test"]["accuracy"] >= 0.9  # ... and gets there
    assert [r["step"] for r in records if r["split"] == "val"] == [20, 40, 60]
    # keep_checkpoints = 2 of those at 20, 40, 60
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_000040.safetensors",
                                                                       "step_000060.safetensors"]
    with zt.io.safe_open(out / "model.safetensors") as f:
        meta = f.metadata()
    assert meta["format"] == "zigtensor.model" and meta["step"] == "60"
    assert load_recipe(out / "recipe.toml") == load_recipe(recipes["image"])
    lineage = json.loads(meta["lineage"])
    assert lineage["zigtensor"] == zt.__version__ and lineage["seed"] == 0 and lineage["device"] == "cpu"
    assert set(json.loads(meta["normalize"])) == {"mean", "std"}


def test_text_run_learns_and_samples(reference):
    out = reference["text"]
    records = read_metrics(out / "metrics.jsonl")
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [25, 50, 75, 100]
    assert records[0]["loss"] > 1.5  # about ln(17) at the start
    assert val[-1]["loss"] < 0.3  # the sentence is learned: greedy decoding repeats it
    assert "tokens_per_s" in records[0]
    assert (out / "sample.txt").read_text() == ("hello world, hello zigtensor!\n" * 2)[:len("hello") + 40]
    with zt.io.safe_open(out / "model.safetensors") as f:
        assert json.loads(f.metadata()["tokenizer"])["type"] == "char"


# ---------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kind, stop_after", [("image", 27), ("text", 33)])
def test_resume_in_a_new_process_is_bit_identical(kind, stop_after, recipes, reference, tmp_path):
    """Ctrl-C after step k (a real SIGINT, mid-step), then `--resume auto` in a new process: the same
    losses and the same final weights, bit for bit, as the uninterrupted run (dropout > 0, so the RNG
    state must be restored)."""
    out = tmp_path / "run"
    r = zt_cli("train", recipes[kind], "--out", out, cwd=tmp_path,
               script=f"import os; os.environ['STOP_AFTER'] = '{stop_after}'\n" + INTERRUPT)
    assert r.returncode == 130, r.stderr
    ckpt = out / "checkpoints" / f"step_{stop_after:06d}.safetensors"
    assert r.stderr.strip().splitlines()[-1] == (
        f"interrupted at step {stop_after}: checkpoint saved to {ckpt}; continue with --resume auto")
    assert max(rec["step"] for rec in read_metrics(out / "metrics.jsonl")) <= stop_after
    assert not (out / "model.safetensors").exists()

    r = zt_cli("train", recipes[kind], "--out", out, "--resume", "auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"resuming from {ckpt} (step {stop_after})" in r.stdout
    assert_same_run(reference[kind], out)
    if kind == "text":
        assert (out / "sample.txt").read_text() == (reference[kind] / "sample.txt").read_text()


def test_resume_from_a_named_checkpoint_truncates_the_metrics(recipes, reference, tmp_path, monkeypatch):
    """--resume PATH goes back to an older checkpoint; the metrics logged after it are dropped first."""
    out = tmp_path / "run"
    r = invoke("train", recipes["image"], "--out", out, "--set", "train.keep_checkpoints=0", cwd=tmp_path,
               monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    assert len(list_checkpoints(out / "checkpoints")) == 3  # keep_checkpoints = 0 keeps them all
    older = out / "checkpoints/step_000020.safetensors"
    r = invoke("train", recipes["image"], "--out", out, "--resume", older, "--set",
               "train.keep_checkpoints=0", cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    assert "dropped" in r.output
    assert_same_run(reference["image"], out)


def test_crash_during_a_checkpoint_write_keeps_the_previous_one(recipes, reference, tmp_path):
    out = tmp_path / "run"
    r = zt_cli("train", recipes["image"], "--out", out, cwd=tmp_path,
               script="import os; os.environ['CRASH_AT'] = '40'\n" + CRASH)
    assert r.returncode == 3, r.stderr
    ckpts = out / "checkpoints"
    temps = list(ckpts.glob(".step_000040.safetensors.*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # the half-written file is there ...
    assert [p.name for p in list_checkpoints(ckpts)] == ["step_000020.safetensors"]  # ... as no checkpoint
    (ckpts / "step_000050.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")  # a broken one

    r = zt_cli("train", recipes["image"], "--out", out, "--resume", "auto", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"warning: skipping {ckpts / 'step_000050.safetensors'}: " in r.stdout
    assert f"removed {temps[0]}" in r.stdout
    assert f"resuming from {ckpts / 'step_000020.safetensors'} (step 20" in r.stdout
    assert not list(ckpts.glob("*.tmp"))
    assert_same_run(reference["image"], out)


def test_resume_of_a_finished_run_changes_nothing(reference, recipes, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference["text"], out)
    before = (out / "metrics.jsonl").read_text()
    r = invoke("train", recipes["text"], "--out", out, "--resume", "auto", cwd=tmp_path,
               monkeypatch=monkeypatch)
    assert r.exit_code == 0, r.output
    assert "already complete at step 100" in r.output
    assert (out / "metrics.jsonl").read_text() == before
    assert_same_run(reference["text"], out)


# ---------------------------------------------------------------------------------------------- refusals
def test_checkpoint_errors_name_the_problem(reference, recipes, tmp_path, monkeypatch):
    out = reference["image"]
    with pytest.raises(CheckpointError, match="not a zigtensor checkpoint \\(a model file"):
        load_checkpoint(out / "model.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    ckpt = out / "checkpoints" / "step_000060.safetensors"
    zt.save_file({"model.w": zt.zeros(2)}, tmp_path / "half.safetensors",
                 metadata={"format": "zigtensor.checkpoint", "version": "1", "step": "3"})
    with pytest.raises(CheckpointError, match="incomplete checkpoint: missing metadata recipe, lineage, "
                                              "optimizer, scheduler, rng, data, trainer$"):
        load_checkpoint(tmp_path / "half.safetensors")
    small = MLP(MLPConfig(in_features=784, hidden=(16,), num_classes=10))
    with pytest.raises(CheckpointError, match=re.escape(
            f"{ckpt}: does not match the recipe's model (MLP): shapes differ (checkpoint vs model): "
            "layers.0.weight (32, 784) vs (16, 784); layers.0.bias (32,) vs (16,); head.weight (10, 32) vs "
            "(10, 16)")):
        restore_checkpoint(load_checkpoint(ckpt), small)
    r = invoke("train", recipes["image"], "--out", tmp_path / "other", "--resume", ckpt, "--set",
               "model.hidden=[64]", cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and isinstance(r.exception, CheckpointError)
    assert str(r.exception) == (f"{ckpt}: was trained with model.hidden = [32], the recipe has [64]; only a "
                                "run of the same model, data, optimizer, seed and batch size resumes")


def test_a_folder_with_a_run_is_not_overwritten(reference, recipes, tmp_path, monkeypatch):
    r = invoke("train", recipes["image"], "--out", reference["image"], cwd=tmp_path, monkeypatch=monkeypatch)
    assert r.exit_code == 1 and isinstance(r.exception, TrainingError)
    assert "already holds a run" in str(r.exception) and "--resume auto" in str(r.exception)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(recipes, tmp_path):
    out = tmp_path / "run"
    r = zt_cli("train", recipes["image"], "--out", out, "--set", "optim.lr=1e30", "--set",
               "train.checkpoint_every=1", "--set", "train.grad_clip=0", cwd=tmp_path)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()  # one line, no NumPy overflow warnings
    m = re.fullmatch(r"error: TrainingError: step (\d+): the loss is (nan|inf) \(lr [0-9.e+]+\); stopped "
                     r"before updating the weights; the last good checkpoint is (\S+) \(try a lower "
                     r"optim.lr or train.grad_clip\)", line)
    assert m, line
    step = int(m.group(1))
    assert m.group(3) == str(out / "checkpoints" / f"step_{step - 1:06d}.safetensors")
    assert load_checkpoint(m.group(3)).step == step - 1
    assert not (out / "model.safetensors").exists()


def test_git_commit_outside_a_repository_is_none(tmp_path):
    assert git_commit(tmp_path) is None
