"""`zt recipes`: the shipped recipes, listed or shown."""

from __future__ import annotations

import typer

app = typer.Typer(help="List the shipped recipes (recipes/*.toml), or show one.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def recipes(ctx: typer.Context) -> None:
    """List the shipped recipes with a one-line description each (`zt recipes show NAME` prints one)."""
    if ctx.invoked_subcommand is not None:
        return
    from zigtensor.train.catalog import list_recipes, recipes_folder

    entries = list_recipes()
    if not entries:
        typer.echo(f"no recipes in {recipes_folder()}")
        return
    width = max(len(e.name) for e in entries)
    for e in entries:
        typer.echo(f"{e.name:<{width}}  {e.description}")


@app.command("show")
def show(name: str = typer.Argument(..., help="A shipped recipe's name (or a recipe file).")) -> None:
    """Print a recipe's TOML."""
    from zigtensor.train.catalog import find_recipe

    typer.echo(find_recipe(name).read_text(encoding="utf-8"), nl=False)
