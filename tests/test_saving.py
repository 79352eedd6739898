"""``ppl_vae.save`` / ``ppl_vae.load`` round trips with the command line, and seeded runs that are bitwise equal."""

import copy
import json

import pyro
import pytest
import torch
from torch import nn

import ppl_vae
from ppl_vae import VAE, ConditionalVAE, ConfigError, evaluate, fit, load, save
from ppl_vae.components.priors import MixtureOfGaussiansPrior
from ppl_vae.config import DataConfig
from ppl_vae.data import load_data
from ppl_vae.runs import evaluate_run
from ppl_vae.training.checkpoint import load_checkpoint
from tests.clitools import ppl_vae as cli
from tests.test_recipes import differences, without_timings

DATA = DataConfig(name="digits", preprocess="binarize-fixed", limit=300)
QUICK = ["--set", "data.limit=300", "--set", "train.epochs=2", "--set", "eval.iwae_samples=10", "--no-figures", "--no-progress"]


@pytest.fixture(scope="module")
def digits():
    return load_data(DATA)


def trained_vae(digits, seed=0, epochs=2):
    pyro.set_rng_seed(seed)  # the initial weights are drawn when the model is built
    vae = VAE(digits.train.shape, latent_dim=4, prior=MixtureOfGaussiansPrior(k=3), likelihood="bernoulli", hidden=(32,))
    history = fit(vae, digits.train, val=digits.val, epochs=epochs, batch_size=64, progress=False, seed=seed)
    return vae, history


def test_a_model_trained_in_python_is_a_run_every_command_accepts(digits, tmp_path):
    vae, history = trained_vae(digits)
    run = save(vae, tmp_path / "python-run", DATA, history=history)
    assert run == tmp_path / "python-run"
    report = json.loads(cli("evaluate", run, "--iwae-samples", 20, "--json").stdout)
    assert report["epochs"] == 2 and report["n"] == len(digits.test)
    assert cli("sample", run, "-n", 16).stdout.strip().endswith("samples.png")
    assert "report:" in cli("diagnose", run, "--n", 20, "--samples", 50, "--nuts", 0, "--sbc", 20).stdout
    other = save(trained_vae(digits, seed=1, epochs=1)[0], tmp_path / "other", DATA)
    rows = json.loads(cli("compare", run, other, "--n", 50, "--samples", 20, "--json").stdout)
    assert len(rows) == 2

    loaded = load(run)
    assert type(loaded.module) is VAE and loaded.history == history
    assert not differences(loaded.module.state_dict(), vae.state_dict())
    torch.manual_seed(0)
    mine = evaluate(vae, digits.test, num_samples=20)
    torch.manual_seed(0)
    theirs = evaluate(loaded.module, digits.test, num_samples=20)
    assert mine["log_px"] == theirs["log_px"] and mine["elbo"] == theirs["elbo"]


def test_a_command_line_run_loads_in_python_with_the_same_numbers(tmp_path):
    run = tmp_path / "cli-run"
    cli("train", "--out", run, *QUICK)
    loaded = load(run)
    assert isinstance(loaded, ppl_vae.runs.LoadedRun) and type(loaded.module) is VAE
    report = json.loads(cli("evaluate", run, "--iwae-samples", 20, "--json").stdout)  # evaluation is seeded
    assert evaluate_run(run, iwae_samples=20)["log_px"] == report["log_px"]
    pyro.set_rng_seed(0)
    again = loaded.kind.evaluate(loaded.module, loaded.split("test"), loaded.spec, 20)
    assert again["log_px"] == report["log_px"]


def test_a_conditional_vae_saves_with_its_objective(tmp_path):
    data = DataConfig(name="digits", preprocess="binarize-fixed", limit=200)
    splits = load_data(data)
    cvae = ConditionalVAE(splits.train.shape, n_classes=10, latent_dim=3, hidden=(16,), activation="tanh")
    run = save(cvae, tmp_path / "cvae", data, objective="conditional")
    loaded = load(run)
    assert loaded.config.model.encoder == {"name": "mlp", "hidden": [16], "activation": "tanh"}
    assert not differences(loaded.module.state_dict(), cvae.state_dict())


class MyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(64, 8)

    def forward(self, x):
        loc, raw = self.net(x).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 1e-3


def test_save_refuses_what_a_run_directory_could_not_rebuild_and_writes_nothing(digits, tmp_path):
    custom = VAE(digits.train.shape, latent_dim=4, encoder=MyEncoder(), hidden=(16,))
    with pytest.raises(ConfigError, match="model.encoder is a MyEncoder, which no registry names.*register") as err:
        save(custom, tmp_path / "a", DATA)
    assert "\n" not in str(err.value) and not (tmp_path / "a").exists()
    vae, _ = trained_vae(digits, epochs=1)
    with pytest.raises(ConfigError, match=r"takes data of shape \(64,\).*shape \(784,\)"):
        save(vae, tmp_path / "b", DataConfig(name="fashion-mnist", limit=10) if _has_fashion() else {"name": "bad"})
    assert not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        save(vae, tmp_path / "c", DATA)
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="is not the model of a registered kind"):
        save(nn.Linear(2, 2), tmp_path / "d", DATA)


def _has_fashion():
    from pathlib import Path

    return Path("/usr/share/datasets/fashion-mnist").is_dir()


def test_fit_with_a_seed_is_deterministic_and_the_seed_matters(digits):
    pyro.set_rng_seed(0)
    start = VAE(digits.train.shape, latent_dim=3, hidden=(16,))
    runs = []
    for seed in (5, 5, 6):
        vae = copy.deepcopy(start)
        fit(vae, digits.train, epochs=1, batch_size=64, progress=False, seed=seed)
        runs.append(vae.state_dict())
    assert not differences(runs[0], runs[1])
    assert differences(runs[0], runs[2])
    a, b = trained_vae(digits, seed=3, epochs=1)[0], trained_vae(digits, seed=3, epochs=1)[0]  # seeded build + seeded fit
    assert not differences(a.state_dict(), b.state_dict())


def test_two_command_line_runs_with_one_seed_write_equal_checkpoints(tmp_path):
    for name in "ab":
        cli("train", "--out", tmp_path / name, "--seed", 7, *QUICK)
    a, b = (load_checkpoint(tmp_path / n / "checkpoint.pt") for n in "ab")
    for payload in (a, b):
        payload["history"] = without_timings(payload["history"])
    assert not differences(a, b)  # weights, optimizer, objective and RNG states, history: bitwise
    assert a["config"]["train"]["seed"] == 7
