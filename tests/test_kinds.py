"""Model kinds as plug-ins: the registry, capabilities, and a new kind added without touching the run layer."""

import ast
import json
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from ppl_vae.config import Config
from ppl_vae.kinds import CAPABILITIES, ModelKind, kind, kinds_where, require
from ppl_vae.registry import KINDS, ConfigError
from ppl_vae.runs import load_run, sample_run, train_run

PACKAGE = Path(__file__).resolve().parents[1] / "ppl_vae"


def test_every_registered_kind_declares_known_capabilities_and_objectives():
    from ppl_vae.registry import OBJECTIVES

    assert {"vae", "conditional", "semi-supervised"} <= set(KINDS.names())
    for name in KINDS.names():
        k = kind(name)
        assert k.name == name and k.description
        assert set(k.capabilities) <= set(CAPABILITIES), name
        assert k.objectives and all(o in OBJECTIVES for o in k.objectives), name


def test_a_missing_capability_is_a_one_line_error_naming_the_kinds_that_have_it():
    assert require("vae", "diagnose").name == "vae"
    with pytest.raises(ConfigError) as err:
        require("conditional", "diagnose", "'diagnose'")
    message = str(err.value)
    assert "\n" not in message
    assert "this run is model.kind = 'conditional'" in message and "kinds that can: vae" in message
    assert kinds_where(lambda k: "classify" in k.capabilities) == ["semi-supervised"]


def test_unknown_kind_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown model kind 'm2'.*choose one of: .*semi-supervised"):
        kind("m2")


def test_kind_accepts_only_its_objectives():
    cfg = Config()
    cfg.objective = {"name": "semi-supervised"}
    with pytest.raises(
        ConfigError, match="model.kind 'vae' trains with objective.name in .*'semi-supervised' is for model.kind 'semi-supervised'"
    ):
        kind("vae").validate(cfg)


def _python_files_outside_kinds():
    for path in PACKAGE.rglob("*.py"):
        if "kinds" not in path.relative_to(PACKAGE).parts:
            yield path


def test_nothing_outside_the_kind_modules_asks_which_kind_a_model_is():
    """No comparison with model.kind, no isinstance of a model class, no hasattr on a model outside kinds/."""
    model_classes = {"VAE", "ConditionalVAE", "SemiSupervisedVAE"}
    offences = []
    for path in _python_files_outside_kinds():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(n, ast.Attribute) and n.attr == "kind" and isinstance(n.value, ast.Attribute) and n.value.attr == "model"
                for n in ast.walk(node)
            ):
                offences.append(f"{path.name}:{node.lineno} compares model.kind")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "isinstance" and any(
                    isinstance(a, ast.Name) and a.id in model_classes for a in ast.walk(node.args[1])
                ):
                    offences.append(f"{path.name}:{node.lineno} isinstance of a model class")
                if (
                    node.func.id == "hasattr"
                    and isinstance(node.args[0], ast.Name)
                    and node.args[0].id in ("vae", "model", "module", "objective")
                ):
                    offences.append(f"{path.name}:{node.lineno} hasattr on a model or objective")
    assert not offences, offences


# ---- a new kind in one module: defined here, trained, saved, loaded and sampled by the run layer ----
class PointVAE(nn.Module):
    """z ~ N(0, I), x ~ N(W z, 0.5); the guide a point mass at the encoder's output (a toy kind)."""

    def __init__(self, dim: int, latent_dim: int):
        super().__init__()
        from ppl_vae.components.likelihoods import NormalLikelihood

        self.data_shape, self.latent_dim = (dim,), latent_dim
        self.likelihood = NormalLikelihood(scale=0.5).setup((dim,))
        self.encoder, self.decoder = nn.Linear(dim, latent_dim), nn.Linear(latent_dim, dim)

    def model(self, x, mask=None, beta=1.0):
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x, mask=None, beta=1.0):
        with pyro.plate("data", x.shape[0], dim=-1), poutine.scale(scale=beta):
            pyro.sample("z", dist.Delta(self.encoder(x)).to_event(1))

    @property
    def device(self):
        return self.decoder.weight.device


@pytest.fixture
def point_kind():
    from ppl_vae.data.spec import DataSpec

    class PointKind(ModelKind):
        name = "point-test"
        description = "a toy kind defined in a test"
        capabilities = frozenset({"compare"})
        objectives = ("elbo",)

        def build(self, model, spec: DataSpec):
            return PointVAE(spec.shape[0], model.latent_dim)

    KINDS.register("point-test")(PointKind)
    yield PointKind
    KINDS._items.pop("point-test")


def test_a_kind_registered_in_one_module_trains_saves_and_loads_through_the_run_layer(point_kind, tmp_path):
    cfg = Config()
    cfg.model.kind, cfg.model.latent_dim = "point-test", 2
    cfg.data.preprocess = "scale"
    cfg.train.epochs, cfg.eval.iwae_samples, cfg.eval.n_test = 2, 5, 20
    metrics = train_run(cfg, tmp_path / "run", progress=False, figures=True)
    assert metrics["epochs"] == 2 and metrics["n"] == 20
    assert (tmp_path / "run" / "figures" / "loss_curves.png").is_file()
    loaded = load_run(tmp_path / "run")
    assert isinstance(loaded.kind, point_kind) and isinstance(loaded.module, PointVAE)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["log_px"] == metrics["log_px"]
    with pytest.raises(
        ConfigError, match="'sample' needs a model kind that can draw new data.*kinds that can: conditional, .*semi-supervised, .*vae"
    ):
        sample_run(tmp_path / "run")
