"""``ppl-vae tune``: hyperparameter search with Optuna (``ppl_vae.runs.tune``, ``ppl_vae.runs.tune_space``).

Every trial is a real ``train_run`` of a tiny recipe (96 digits, 3 optimizer steps per epoch, 3 epochs,
a 32-unit MLP, 16 test data with 4 importance samples). The command runs in this process through
``ppl_vae.cli.main`` (no interpreter start per call). What is checked: the sampled values lie in the
declared ranges and each trial's run directory holds the recipe with exactly those values; the best
config (best.toml) trains with ``ppl-vae train``; a search is reproducible from its seed; re-running
adds trials to the same study (and fails trials a killed process left running); a clearly worse trial
is pruned at its first epoch; a bad key, range or flag is one line and writes nothing.
"""

import json
import math

import pytest

from ppl_vae.cli import main
from ppl_vae.config import Config
from ppl_vae.registry import ConfigError
from ppl_vae.runs import load_config
from ppl_vae.training.checkpoint import load_checkpoint

optuna = pytest.importorskip("optuna")

from ppl_vae.runs.tune import BEST, STUDY, STUDY_NAME, tune  # noqa: E402
from ppl_vae.runs.tune_space import load_space, parse_flag  # noqa: E402

RECIPE = """
description = "A tiny digits VAE for the tune tests."
[data]
name = "digits"
limit = 96
[model]
latent_dim = 4
encoder = { name = "mlp", hidden = [32] }
decoder = { name = "mlp", hidden = [32] }
[train]
epochs = 3
batch_size = 32
device = "cpu"
[eval]
iwae_samples = 4
n_test = 16
[tune]
trials = 2
startup_trials = 1
warmup_epochs = 0
[tune.params]
"train.lr" = { low = 1e-6, high = 3e-2, log = true }
"""
FLAGS = [
    "--param",
    "train.lr=log:1e-4:3e-2",
    "--param",
    "model.latent_dim=2:8:2",
    "--param",
    "model.encoder.hidden=choice:[32],[16,16]",
]


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE)
    return str(path)


def study_of(out):
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY}")


def trials_of(out):
    return [(t.number, t.state.name, t.params, t.value) for t in study_of(out).trials]


def test_a_recipe_with_a_tune_table_still_trains(recipe):
    cfg = load_config(recipe)  # what `ppl-vae train` reads: the [tune] table is skipped, not an unknown key
    assert cfg.train.lr == 1e-3 and "tune" not in cfg.to_dict()
    assert Config.from_dict({"tune": {"trials": 3}, "train": {"epochs": 2}}).train.epochs == 2
    with pytest.raises(ConfigError, match="unknown key 'tune'"):  # it is not a setting of a run
        load_config(recipe, ["tune.trials=3"])
    declared = load_space("vae-digits")  # the shipped recipe that declares a search
    assert {p.key for p in declared.params} >= {"train.lr", "model.latent_dim"}


def test_search_resume_reproduce_and_best_toml_trains(tmp_path, capsys):
    recipe = str(tmp_path / "unpruned.toml")  # every trial trains its 3 epochs
    (tmp_path / "unpruned.toml").write_text(RECIPE.replace("startup_trials = 1\n", 'pruner = "none"\n'))
    out = tmp_path / "search"
    assert main(["tune", recipe, "--trials", "3", "--out", str(out), *FLAGS, "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    first = trials_of(out)
    assert [(n, s) for n, s, _, _ in first] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    for number, _, params, value in first:
        assert 1e-4 <= params["train.lr"] <= 3e-2 and params["model.latent_dim"] in (2, 4, 6, 8)
        assert params["model.encoder.hidden"] in ("[32]", "[16, 16]")
        cfg = load_config(str(out / "trials" / f"{number:04d}" / "config.toml"))  # the trial's run directory
        expected = load_config(recipe, [f"train.lr={params['train.lr']!r}", f"model.latent_dim={params['model.latent_dim']}"])
        expected.model.encoder["hidden"] = json.loads(params["model.encoder.hidden"])
        assert cfg == expected  # the recipe with exactly the sampled values, nothing else changed
        history = load_checkpoint(out / "trials" / f"{number:04d}" / "checkpoint.pt")["history"]
        assert value == max(h["val_elbo"] for h in history) and len(history) == 3
        assert f"{number:04d}" in printed
    best = max(first, key=lambda t: t[3])
    assert f"{best[0]:04d} *" in printed and str(out / BEST) in printed

    # best.toml is the best trial's config and trains with `ppl-vae train`
    best_cfg = load_config(str(out / BEST))
    assert best_cfg.train.lr == best[2]["train.lr"] and best_cfg.model.latent_dim == best[2]["model.latent_dim"]
    assert main(["train", str(out / BEST), "--out", str(tmp_path / "best-run"), "--no-progress", "--no-figures"]) == 0
    assert load_config(str(tmp_path / "best-run" / "config.toml")) == best_cfg
    trial_history = load_checkpoint(out / "trials" / f"{best[0]:04d}" / "checkpoint.pt")["history"]
    retrained = load_checkpoint(tmp_path / "best-run" / "checkpoint.pt")["history"]
    assert [h["val_elbo"] for h in retrained] == [h["val_elbo"] for h in trial_history]  # same config, same seed, same run

    # the same command with the same seed gives the same search
    again = tmp_path / "again"
    assert main(["tune", recipe, "--trials", "2", "--out", str(again), *FLAGS, "--seed", "7"]) == 0
    assert trials_of(again) == first[:2]

    # resuming: a trial a killed process left running is failed; --trials 4 adds one finished trial
    orphan = study_of(out).ask()
    assert orphan.number == 3
    capsys.readouterr()
    assert main(["tune", recipe, "--trials", "4", "--out", str(out), *FLAGS, "--seed", "7"]) == 0
    resumed = trials_of(out)
    assert resumed[:3] == first and resumed[3][1] == "FAIL" and resumed[4][1] == "COMPLETE" and len(resumed) == 5
    assert resumed[4][2] not in [t[2] for t in first]  # the resumed sampler does not replay the first draws
    assert (out / "trials" / "0004" / "checkpoint.pt").is_file()

    # a different search in the same folder is refused, in one line
    assert main(["tune", recipe, "--trials", "5", "--out", str(out), "--param", "train.lr=log:1e-3:1e-2", "--seed", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a study of another search" in err[0]
    assert len(trials_of(out)) == 5


def test_a_clearly_worse_trial_is_pruned_at_its_first_epoch(recipe, tmp_path):
    out = tmp_path / "pruned"
    space = load_space(recipe)  # the recipe's [tune]: 2 trials, prune after 1 finished trial, from epoch 1
    result = tune(space, out, enqueue=[{"train.lr": 2e-2}, {"train.lr": 1e-6}], log=lambda line: None)
    good, bad = result.study.trials
    assert good.state.name == "COMPLETE" and bad.state.name == "PRUNED"
    assert bad.params["train.lr"] == 1e-6 and list(bad.intermediate_values) == [1]
    assert bad.intermediate_values[1] < good.intermediate_values[1]  # below the median (of one trial) at epoch 1
    kept = load_checkpoint(out / "trials" / "0001" / "checkpoint.pt")  # the pruned trial's last checkpoint stays
    assert kept["epoch"] == 1 and not (out / "trials" / "0001" / "metrics.json").exists()
    assert result.best == out / BEST and load_config(str(out / BEST)).train.lr == 2e-2
    assert "pruned" in result.table and math.isfinite(good.value)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--param", "train.lrr=log:1e-4:1e-2"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        (["--param", "train.lr=log:1e-2:1e-4"], "low must be below high"),
        (["--param", "train.lr=log:0:1e-2"], "a log range needs low > 0"),
        (["--param", "train.lr=1e-4:1000"], "'train.lr' must be a finite number in (0, 100], got 1000.0"),
        (["--param", "model.latent_dim=0:8"], "'model.latent_dim' must be an integer in [1, 4096], got 0"),
        (["--param", "model.latent_dim=2:8:1.5"], "integer setting; low, high and step must be integers"),
        (["--param", "model.latent_dim=2:9:2"], "must be a multiple of step"),
        (["--param", "train.lr=0.001:0.01:0.004"], "high - low (0.009) must be a multiple of step (0.004)"),
        (["--param", "train.lr=1e-4"], "expected LOW:HIGH, LOW:HIGH:STEP, log:LOW:HIGH or choice:V1,V2,..."),
        (["--param", "train.lr=log:a:1"], "LOW must be a number, got 'a'"),
        (["--param", "train.optimizer=choice:adam,sgdd"], "'train.optimizer' must be one of: adam, adamw, sgd, rmsprop, got 'sgdd'"),
        (["--param", 'model.likelihood.name=choice:"bernoulli","gauss"'], "unknown likelihood 'gauss' (did you mean 'gaussian'?)"),
        (["--param", "objective.bta=0.5:2"], "'objective.bta' = 0.5: objective 'elbo'"),
        (["--param", "train.epochs=choice:1,1"], "choices repeat a value"),
        (["--set", "data.val_fraction=0"], "no validation data"),
    ],
)
def test_bad_search_is_one_line_and_writes_nothing(recipe, tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    assert main(["tune", recipe, "--trials", "2", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ppl-vae: error: ") and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "table, message",
    [
        ('"train.lr" = { low = 1e-4, hi = 1e-2 }', "unknown field 'hi' (did you mean 'high'?)"),
        ('"train.lr" = { low = 1e-4, high = 1e-2, step = 1e-3, log = true }', "give step or log = true, not both"),
        ('"train.lr" = { choices = [1e-3], low = 1e-4 }', "give either choices or low/high"),
        ('"train.lr" = 1e-3', "must be a table such as"),
        ('"train.lr" = { low = 1e-4 }', "a range needs both low and high"),
    ],
)
def test_bad_tune_table_is_one_line(tmp_path, table, message):
    path = tmp_path / "bad.toml"
    path.write_text(RECIPE.split("[tune.params]")[0] + "[tune.params]\n" + table + "\n")
    with pytest.raises(ConfigError, match="^\\[tune.params\\] 'train.lr'") as err:
        load_space(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_tune_settings_and_flags(tmp_path, recipe):
    path = tmp_path / "settings.toml"
    path.write_text(RECIPE.replace("trials = 2", "trails = 2"))
    with pytest.raises(ConfigError, match="unknown key 'tune.trails' \\(did you mean 'trials'\\?\\)"):
        load_space(str(path))
    path.write_text(RECIPE.replace("trials = 2", 'pruner = "hyperband"'))
    with pytest.raises(ConfigError, match="'tune.pruner' must be one of: median, none"):
        load_space(str(path))
    with pytest.raises(ConfigError, match="nothing to search"):
        load_space("vae-dsprites")
    assert parse_flag("train.lr=log:1e-4:1e-2") == ("train.lr", {"low": 1e-4, "high": 1e-2, "log": True})
    assert parse_flag("train.batch_size=32:128:32") == ("train.batch_size", {"low": 32, "high": 128, "step": 32})
    assert parse_flag('train.optimizer=choice:"adam","sgd"') == parse_flag("train.optimizer=choice:adam,sgd")
    space = load_space(
        recipe, ["train.lr=1e-3:1e-2", "model.encoder.hidden=choice:[32],[16,16]"]
    )  # a flag replaces the recipe's entry
    lr, hidden = space.params
    assert (lr.type, lr.low, lr.high, lr.log) == ("float", 1e-3, 1e-2, False)  # a float setting: a float range from integers too
    assert hidden.choices == ([32], [16, 16])
    with pytest.raises(ConfigError, match="is not in the search space"):
        tune(space, tmp_path / "x", enqueue=[{"train.lr": 0.5}])
    assert not (tmp_path / "x").exists()


def test_a_failing_trial_is_one_line_and_a_diverged_one_counts_as_pruned(recipe, tmp_path, capsys, monkeypatch):
    import ppl_vae.runs.tune as tuning
    from ppl_vae.training.fit import TrainingDiverged

    def broken(cfg, run, **kwargs):
        raise ConfigError("the data of this trial cannot be loaded")

    monkeypatch.setattr(tuning, "train_run", broken)
    out = tmp_path / "failing"
    assert main(["tune", recipe, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ppl-vae: error: the data of this trial cannot be loaded"]  # Optuna's own report of the failure is silenced
    assert [t.state.name for t in study_of(out).trials] == ["FAIL"]

    def diverging(cfg, run, **kwargs):
        raise TrainingDiverged("training diverged in epoch 1")

    monkeypatch.setattr(tuning, "train_run", diverging)
    assert main(["tune", recipe, "--out", str(out)]) == 0  # resumed: the failed trial does not count
    printed = capsys.readouterr().out
    trials = study_of(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "PRUNED", "PRUNED"]
    assert trials[1].user_attrs["diverged"] == "training diverged in epoch 1"
    assert "no trial completed" in printed and not (out / BEST).exists()
