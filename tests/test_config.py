import pytest

from ppl_vae.config import Config
from ppl_vae.data.spec import DataSpec
from ppl_vae.kinds import build_component, kind
from ppl_vae.objectives import IWAEObjective
from ppl_vae.registry import OBJECTIVES, ConfigError
from ppl_vae.runs import load_config, recipe_names


def build_vae(model, shape):
    return kind(model.kind).build(model, DataSpec("test", shape=tuple(shape)))


def build_objective(table):
    return build_component(OBJECTIVES, table, "objective")


def test_config_round_trips_through_toml(tmp_path):
    cfg = load_config("vae-digits", ["train.epochs=3", "model.prior={name='mixture', k=4}", "model.prior.k=5"])
    path = tmp_path / "c.toml"
    cfg.save(path)
    again = load_config(str(path))
    assert again == cfg
    assert again.train.epochs == 3 and again.model.prior == {"name": "mixture", "k": 5}


def test_every_recipe_loads_and_builds():
    names = recipe_names()
    assert "vae-digits" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.description, f"recipe {name} needs a description"
        build_objective(cfg.objective)


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown key 'train.epoch' \(did you mean 'train.epochs'\?\)"):
        Config().override(["train.epoch=5"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'train.epochs' must be an integer in \[1, 1000000\], got 'five'"):
        Config().override(["train.epochs=five"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        Config().override(["train.epochs"])


def test_unknown_recipe_and_component_names():
    with pytest.raises(ConfigError, match="unknown recipe 'vae-digit' \\(did you mean 'vae-digits'"):
        load_config("vae-digit")
    cfg = Config()
    cfg.model.likelihood = {"name": "bernouli"}
    with pytest.raises(ConfigError, match="unknown likelihood 'bernouli' \\(did you mean 'bernoulli'"):
        build_vae(cfg.model, (64,))


def test_objective_from_config():
    assert isinstance(build_objective({"name": "iwae", "num_particles": 7}), IWAEObjective)
    with pytest.raises(ConfigError, match="objective 'elbo'.*unexpected keyword"):
        build_objective({"name": "elbo", "particles": 3})
