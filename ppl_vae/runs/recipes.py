"""Recipes: the TOML files in the repository's ``models/`` folder, installed as the package data of
``ppl_vae.recipes`` and read with ``importlib.resources`` (so an installed wheel has them too).
Wherever a recipe name is accepted, a path to a user's own TOML file is accepted as well.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import List, Sequence, Union

from ppl_vae.config import Config, loads, tomllib
from ppl_vae.registry import ConfigError, closest

DEFAULT_RECIPE = "vae-digits"
RecipeSource = Union[Path, Traversable]


def _shipped() -> dict:
    """Recipe name -> the shipped file."""
    try:
        folder = resources.files("ppl_vae.recipes")
    except ModuleNotFoundError:  # pragma: no cover - a broken installation
        return {}
    return {entry.name[:-5]: entry for entry in folder.iterdir() if entry.name.endswith(".toml")}


def recipe_names() -> List[str]:
    """The names of the shipped recipes, sorted."""
    return sorted(_shipped())


def is_recipe_file(name_or_file: str) -> bool:
    """Whether ``name_or_file`` names a file (ends in .toml or holds a path separator) rather than a recipe."""
    return name_or_file.endswith(".toml") or os.sep in name_or_file or (os.altsep or os.sep) in name_or_file


def recipe_source(name_or_file: str) -> RecipeSource:
    """The shipped recipe of that name, or the user's TOML file at that path."""
    if is_recipe_file(name_or_file):
        path = Path(name_or_file)
        if not path.is_file():
            raise ConfigError(f"recipe file '{name_or_file}' not found")
        return path
    shipped = _shipped()
    if name_or_file not in shipped:
        names = sorted(shipped)
        raise ConfigError(
            f"unknown recipe '{name_or_file}'{closest(name_or_file, names)}; 'ppl-vae recipes' lists them: {', '.join(names)}"
        )
    return shipped[name_or_file]


def _read(source: RecipeSource, name: str) -> str:
    try:
        return source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read recipe '{name}': {err}") from None


def load_config(name_or_file: str = DEFAULT_RECIPE, overrides: Sequence[str] = ()) -> Config:
    """The config of a recipe (name or TOML file) with ``KEY=VALUE`` overrides applied."""
    text = _read(recipe_source(name_or_file), name_or_file)
    return loads(text, source=name_or_file).override(list(overrides))


def describe(name_or_file: str) -> str:
    """A recipe's one-line description."""
    try:
        text = tomllib.loads(_read(recipe_source(name_or_file), name_or_file)).get("description", "")
        return text.strip().splitlines()[0] if text.strip() else ""
    except tomllib.TOMLDecodeError:
        return ""
