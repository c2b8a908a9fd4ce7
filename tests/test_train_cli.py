"""The training commands of `zt`: train (errors, --dry-run), recipes, info, plot, and --help everywhere.

Through Typer's CliRunner (in process: exit codes and the exception raised) and through a real
`python -m zigtensor_cli` (what a user sees: one line on stderr, the exit code).
"""

import subprocess
import sys

import pytest
from tiny_recipes import IMAGE_RECIPE, write_image_dataset
from typer.testing import CliRunner

import zigtensor as zt
from zigtensor.train import RecipeError
from zigtensor_cli.app import app

TINY = """\
# A tiny MLP for the tests
[model]
name = "mlp"
hidden = [32]
[data]
name = "mnist"
path = "/nonexistent/mnist"
"""

TINY_GPT = """\
# A tiny GPT on bytes

[model]
name = "gpt"
n_layer = 1
n_head = 2
n_embd = 16
[data]
name = "text"
path = "/nonexistent/text.txt"
tokenizer = "bytes"
block_size = 8
"""


def zt_cli(*args, cwd, env=None, script=None):
    cmd = [sys.executable, "-m", "zigtensor_cli"] if script is None else [sys.executable, "-c", script]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """invoke(*args): the CLI in process, in tmp_path, with the shipped recipes in tmp_path/recipes."""
    shipped = tmp_path / "recipes"
    shipped.mkdir()
    (shipped / "tiny.toml").write_text(TINY)
    (shipped / "tiny_gpt.toml").write_text(TINY_GPT)
    monkeypatch.setenv("ZT_RECIPES", str(shipped))
    monkeypatch.chdir(tmp_path)
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------- errors
BAD_RECIPES = {
    "unknown key": ('[model]\nname = "mlp"\nhiden = [32]\n[data]\nname = "fashion-mnist"\n',
                    "unknown key 'model.hiden' (did you mean 'model.hidden'?)"),
    "wrong type": ('[model]\nname = "mlp"\n[data]\nname = "fashion-mnist"\n[train]\nsteps = "ten"\n',
                   "train.steps: expected int, got str ('ten')"),
    "bad TOML": ('[model]\nname = "mlp\n',
                 "{path}: invalid TOML at line 2, column 12: Illegal character '\\n'"),
    "unknown model": ('[model]\nname = "mpl"\n[data]\nname = "fashion-mnist"\n',
                      "model.name: unknown model 'mpl'; expected one of cnn, gpt, lstm, mlp "
                      "(did you mean 'mlp'?)"),
}


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_recipe_errors_print_one_line_and_exit_1(case, tmp_path, cli):
    text, message = BAD_RECIPES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    message = message.format(path=path)
    r = zt_cli("train", path, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"error: RecipeError: {message}\n")
    r = cli("train", path)
    assert r.exit_code == 1 and isinstance(r.exception, RecipeError) and str(r.exception) == message


def test_override_errors_and_missing_recipes(tmp_path, cli):
    (tmp_path / "r.toml").write_text(TINY)
    r = cli("train", "r.toml", "--set", "train.steps=-3", "--dry-run")
    assert r.exit_code == 1 and str(r.exception) == "train.steps: expected a positive int, got -3"
    r = cli("train", "r.toml", "--set", "steps")
    assert str(r.exception) == "override 'steps': expected key.path=value, e.g. optim.lr=3e-4"
    r = cli("train", "nope")
    assert str(r.exception) == "nope: no such recipe file or shipped recipe (shipped: tiny, tiny_gpt)"
    r = cli("train", "some/where.toml")
    assert str(r.exception) == "some/where.toml: no such recipe file"
    r = zt_cli("train", "r.toml", "--out", "run", cwd=tmp_path)  # the dataset is not there
    assert r.returncode == 1 and r.stderr == (
        "error: DatasetNotFoundError: mnist not found: no folder /nonexistent/mnist; set path (data.path in "
        "a recipe) to a folder with the IDX files train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]\n")


def test_usage_errors_exit_2(tmp_path):
    for args in (["train"], ["train", "x.toml", "--device", "tpu"], ["info"], ["plot"], ["recipes", "nope"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
    r = zt_cli("train", "x.toml", "--device", "tpu", cwd=tmp_path)
    assert r.returncode == 2 and "Invalid value for '--device'" in r.stderr


def test_help_on_every_command(tmp_path):
    for args in ([], ["train"], ["recipes"], ["recipes", "show"], ["info"], ["plot"]):
        r = CliRunner().invoke(app, [*args, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output, (args, r.output)
    r = zt_cli("--help", cwd=tmp_path)
    assert r.returncode == 0 and all(c in r.stdout for c in ("train", "recipes", "info", "plot", "bench"))
    r = zt_cli("train", "--help", cwd=tmp_path)
    assert r.returncode == 0 and all(o in r.stdout for o in ("--out", "--set", "--device", "--resume",
                                                              "--dry-run"))


# ---------------------------------------------------------------------------------------------- dry run
def test_dry_run_prints_recipe_model_and_parameters(tmp_path, cli):
    (tmp_path / "r.toml").write_text(TINY)
    r = cli("train", "r.toml", "--set", "optim.lr=3e-4", "--set", "model.hidden=[16]", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "[model]\nname = \"mlp\"\nhidden = [16]\n" in r.output and "lr = 0.0003\n" in r.output
    assert "MLP(" in r.output and "Linear(in_features=784, out_features=16, bias=True)" in r.output
    assert r.output.rstrip().endswith(f"parameters: {784 * 16 + 16 + 16 * 10 + 10:,}")
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written, no dataset needed
    # a shipped recipe by name, in a new process
    r = zt_cli("train", "tiny_gpt", "--dry-run", cwd=tmp_path, env={**__import__("os").environ,
                                                                     "ZT_RECIPES": str(tmp_path / "recipes")})
    assert r.returncode == 0, r.stderr
    assert "GPT(" in r.stdout and "vocab_size=256" in r.stdout and "parameters: " in r.stdout


# ---------------------------------------------------------------------------------------------- recipes
def test_recipes_lists_and_shows(tmp_path, cli):
    r = cli("recipes")
    assert r.exit_code == 0
    assert r.output == "tiny      A tiny MLP for the tests\ntiny_gpt  A tiny GPT on bytes\n"
    r = cli("recipes", "show", "tiny_gpt")
    assert r.exit_code == 0 and r.output == TINY_GPT
    r = cli("recipes", "show", "nope")
    assert r.exit_code == 1 and isinstance(r.exception, RecipeError)
    env = {**__import__("os").environ, "ZT_RECIPES": str(tmp_path / "empty")}
    r = zt_cli("recipes", cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout == f"no recipes in {tmp_path / 'empty'}\n"


# ---------------------------------------------------------------------------------------------- info
def test_info_on_a_run_folder_a_checkpoint_and_a_plain_file(tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(IMAGE_RECIPE.format(path=write_image_dataset(tmp_path / "images", 96, 32)))
    r = cli("train", recipe, "--out", "run", "--set", "train.steps=4", "--set", "train.checkpoint_every=2",
            "--set", "schedule.warmup_steps=1")
    assert r.exit_code == 0, r.output
    assert "done: step 4 | val loss" in r.output and "model: run/model.safetensors" in r.output

    r = cli("info", "--model", "run")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "run folder run\ncheckpoints: step_000002.safetensors, step_000004.safetensors\n" in out
    # 72 train images after the val split: 2 batches of 32 an epoch
    assert ("newest checkpoint run/checkpoints/step_000004.safetensors: step 4 | data epoch 2, position 0 | "
            "examples seen 128 | lr 0 | best val loss ") in out
    assert "last val metrics (step 4): loss " in out and "last test metrics (step 4)" in out
    assert "run/model.safetensors: zigtensor model\n" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["layers.0.weight", "(32,", "784)", "F32", "100,352"] in rows
    n = 784 * 32 + 32 + 32 * 10 + 10
    assert f"total: 4 tensors, {4 * n:,} bytes (99.4 KiB), {n:,} parameters\n" in out
    assert f"lineage: zigtensor {zt.__version__} | git_commit None | device cpu | seed 0" in out
    assert "recipe:\n  [model]\n  name = \"mlp\"\n" in out and "  steps = 4\n" in out
    assert "  normalize: {\"mean\": " in out

    r = cli("info", "--model", "run/checkpoints/step_000002.safetensors")
    assert r.exit_code == 0, r.output
    assert "step_000002.safetensors: zigtensor checkpoint\n" in r.output
    assert "  model.layers.0.weight" in r.output and "  optim.0.exp_avg" in r.output
    assert f"{n:,} model parameters\n" in r.output
    assert "training state: step 2 | data epoch 1, position 0 | examples seen 64 | lr 0.00225 | " in r.output

    zt.save_file({"w": zt.zeros(2, 3), "ids": zt.arange(5)}, tmp_path / "plain.safetensors",
                  metadata={"note": "hi"})
    r = zt_cli("info", "--model", "plain.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("plain.safetensors: safetensors\n"
                        "  name  shape   dtype  bytes\n"
                        "  ids   (5)     I64       40\n"
                        "  w     (2, 3)  F32       24\n"
                        "total: 2 tensors, 64 bytes (64 B), 11 parameters\n"
                        "metadata:\n"
                        "  note: hi\n")
    r = zt_cli("info", "--model", "nowhere", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "error: FileNotFoundError: nowhere: no such file or folder\n")


# ---------------------------------------------------------------------------------------------- plot
METRICS = "".join(
    f'{{"step": {s}, "split": "train", "loss": {2.0 / s}, "lr": 0.001, "time": {s / 10}, "accuracy": 0.5}}\n'
    for s in range(1, 6)) + '{"step": 5, "split": "val", "loss": 0.5, "accuracy": 0.7, "time": 0.6}\n'


def test_plot_writes_curves_or_says_how_to_get_matplotlib(tmp_path, cli, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(METRICS)
    # without matplotlib: one line naming the extra
    no_mpl = "import sys; sys.modules['matplotlib'] = None\nsys.argv = ['zt', *sys.argv[1:]]\n" \
             "from zigtensor_cli.app import main\nmain()\n"
    r = zt_cli("plot", run, cwd=tmp_path, script=no_mpl)
    assert (r.returncode, r.stderr) == (1, "error: ModuleNotFoundError: matplotlib is not installed; "
                                           "pip install 'zigtensor[plot]'\n")
    r = cli("plot", "nowhere")
    assert r.exit_code == 1
    pytest.importorskip("matplotlib")
    r = cli("plot", run)
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote {run / 'curves.png'}\n"
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
