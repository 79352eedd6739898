"""The label-aware recipes through the real command."""

import json

from .clitools import error_of, ppl_vae

QUICK = ["--set", "train.epochs=2", "--set", "eval.iwae_samples=10", "--no-progress"]


def test_ssvae_recipe_reports_accuracy_next_to_the_baseline(tmp_path):
    out = tmp_path / "ss"
    stdout = ppl_vae("train", "ssvae-digits", "--out", out, *QUICK).stdout
    assert "accuracy of q(y|x)" in stdout and "supervised-only baseline (100 labels)" in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert 0.1 < m["accuracy"] <= 1 and 0.1 < m["baseline_accuracy"] <= 1 and m["labels"] == 100
    assert m["log_px"] >= m["elbo"] and m["seconds_per_epoch"] > 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert "val_accuracy" in history[-1]
    for fig in ("conditional_generation", "style_transfer", "loss_curves"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads(ppl_vae("evaluate", out, "--json", "--iwae-samples", "5").stdout)
    assert report["accuracy"] == m["accuracy"] and report["n"] == 359
    assert (
        "'diagnose' needs a model kind that can be diagnosed; this run is model.kind = 'semi-supervised'; kinds that can: vae"
    ) in error_of("diagnose", out, "--out", tmp_path / "d")


def test_conditional_recipe_generates_per_class(tmp_path):
    out = tmp_path / "cvae"
    stdout = ppl_vae("train", "cvae-digits", "--out", out, *QUICK).stdout
    assert "log p(x | y), K=10" in stdout
    assert (out / "figures" / "conditional_generation.png").is_file()
    ppl_vae("sample", out, "-n", "20", "--out", tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_semi_supervised_settings_are_checked(tmp_path):
    out = tmp_path / "never"
    assert "between 1 and the" in error_of("train", "ssvae-digits", "--out", out, "--set", "data.labels=100000")
    assert "model.kind 'semi-supervised' trains with objective.name in (semi-supervised), not 'elbo'" in error_of(
        "train", "ssvae-digits", "--out", out, "--set", "objective.name=elbo"
    )
    assert "data.labels is used only by model kinds that train on a labelled subset (semi-supervised)" in error_of(
        "train", "--out", out, "--set", "data.labels=50"
    )
    assert "needs data.labels > 0" in error_of("train", "ssvae-digits", "--out", out, "--set", "data.labels=0")
    assert "unknown model kind 'm2'" in error_of("train", "ssvae-digits", "--out", out, "--set", "model.kind=m2")
    assert not out.exists()
