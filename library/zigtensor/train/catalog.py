"""The shipped recipes: the TOML files of the repository's recipes/ folder, found by name.

The folder is $ZT_RECIPES when set, else recipes/ beside the package's source tree (an editable install),
else ./recipes. A recipe's description is the first comment line of its file.

>>> [r.name for r in list_recipes()]
['fashion_cnn', 'fashion_mlp', 'shakespeare_gpt']
>>> find_recipe("fashion_mlp")           # a path works too: find_recipe("my/recipe.toml")
PosixPath('.../recipes/fashion_mlp.toml')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .recipe import RecipeError


@dataclass(frozen=True)
class RecipeEntry:
    name: str  # the file's stem: `zt train NAME`
    description: str  # the first comment line of the file
    path: Path


def recipes_folder() -> Path:
    """Where the shipped recipes are (the first that exists of $ZT_RECIPES, <source tree>/recipes,
    ./recipes; the last when none does)."""
    env = os.environ.get("ZT_RECIPES")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[3] / "recipes"
    return beside if beside.is_dir() else Path("recipes")


def _description(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip().startswith("#"):
                    return line.strip().lstrip("#").strip()
    except (OSError, UnicodeDecodeError):
        return "(unreadable)"
    return ""


def list_recipes(folder=None) -> list[RecipeEntry]:
    """The recipes in folder (default recipes_folder()), sorted by name."""
    folder = Path(folder) if folder is not None else recipes_folder()
    if not folder.is_dir():
        return []
    return [RecipeEntry(p.stem, _description(p), p) for p in sorted(folder.glob("*.toml")) if p.is_file()]


def find_recipe(name_or_path) -> Path:
    """A recipe file: name_or_path itself when it exists, else the shipped recipe of that name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    text = str(name_or_path)
    if "/" not in text and os.sep not in text:
        shipped = recipes_folder() / (text if text.endswith(".toml") else f"{text}.toml")
        if shipped.is_file():
            return shipped
        names = ", ".join(r.name for r in list_recipes()) or "none"
        raise RecipeError(f"{text}: no such recipe file or shipped recipe (shipped: {names})")
    raise RecipeError(f"{text}: no such recipe file")
