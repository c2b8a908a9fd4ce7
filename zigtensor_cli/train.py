"""`zt train`: run a recipe (a TOML file or a shipped recipe's name) into a run folder."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

_RECIPE = "A recipe TOML file, or the name of a shipped recipe (see zt recipes)."
_SET = "Override a recipe value with a TOML value (optim.lr=3e-4, model.hidden=[128,64]); repeatable."
_RESUME = ("Continue a run: auto (the newest complete checkpoint in OUT/checkpoints; a new run when there is "
           "none) or a checkpoint file.")
_OUT = "The run folder. Default: runs/<recipe name>."
_DRY_RUN = "Print the resolved recipe, the model and its parameter count, and exit without training."


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def train(
    recipe: Annotated[str, typer.Argument(help=_RECIPE)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help=_OUT)] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", metavar="KEY.PATH=VALUE", help=_SET)] = None,
    device: Annotated[Device | None, typer.Option(help="Where to train (sets train.device).")] = None,
    resume: Annotated[str | None, typer.Option(metavar="auto|CHECKPOINT", help=_RESUME)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=_DRY_RUN)] = False,
) -> None:
    """Train a model from a recipe: logs to OUT/metrics.jsonl, checkpoints, OUT/model.safetensors.

    Ctrl-C saves a checkpoint and exits with code 130; continue with --resume auto.
    """
    from zigtensor.train import load_recipe, recipe_to_toml
    from zigtensor.train.catalog import find_recipe
    from zigtensor.train.trainer import Trainer, build_recipe_model, count_parameters, format_eval

    path = find_recipe(recipe)
    r = load_recipe(path, [*(overrides or []), *([f"train.device={device.value}"] if device else [])])
    if dry_run:
        model, info = build_recipe_model(r)
        typer.echo(f"# recipe {path}, resolved\n{recipe_to_toml(r)}")
        typer.echo(f"# data\n{info}\n\n# model\n{model}\n")
        typer.echo(f"parameters: {count_parameters(model):,}")
        return
    out = out if out is not None else Path("runs") / path.stem
    try:
        result = Trainer(r, out, resume=resume).fit()
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the loop started
        typer.echo("interrupted: nothing saved for the current step", err=True)
        raise typer.Exit(130) from None
    if result.interrupted:
        saved = f"checkpoint saved to {result.checkpoint}" if result.checkpoint else "nothing to save"
        typer.echo(f"interrupted at step {result.step}: {saved}; continue with --resume auto", err=True)
        raise typer.Exit(130)
    if result.sample is not None:
        typer.echo(f"--- sample ---\n{result.sample}\n--------------")
    final = format_eval(result.final)
    typer.echo(f"done: step {result.step}" + (f" | {final}" if final else ""))
    typer.echo(f"model: {result.model_path}" + (f" | curves: {result.curves}" if result.curves else ""))
