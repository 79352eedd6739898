"""What ships: every package folder in the wheel, the recipes as package data, recipes by name or by file."""

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ppl_vae.registry import ConfigError
from ppl_vae.runs import describe, load_config, recipe_names, recipe_source

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ppl_vae").rglob("__init__.py")}
    assert on_disk | {"ppl_vae.recipes"} == listed


def test_the_recipes_are_read_as_package_data():
    on_disk = sorted(p.stem for p in (ROOT / "models").glob("*.toml"))
    assert recipe_names() == on_disk and "vae-digits" in on_disk
    assert all(describe(name) for name in on_disk)


def test_a_path_to_a_toml_file_is_accepted_wherever_a_recipe_name_is(tmp_path):
    mine = tmp_path / "my-recipe.toml"
    mine.write_text(recipe_source("vae-digits").read_text().replace("latent_dim = 8", "latent_dim = 3"))
    cfg = load_config(str(mine), ["train.epochs=2"])
    assert cfg.train.epochs == 2 and cfg.model.latent_dim == 3
    with pytest.raises(ConfigError, match="recipe file '.*missing.toml' not found"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nlatent_dim = 3")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(str(bad))
