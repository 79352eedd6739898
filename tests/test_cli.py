"""End-to-end tests through the real command (subprocesses)."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from .clitools import error_of, ppl_vae


def test_default_train_writes_a_complete_run_directory(run_dir):
    for name in ("config.toml", "checkpoint.pt", "history.jsonl", "metrics.json"):
        assert (run_dir / name).is_file()
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["log_px"] >= metrics["elbo"] and metrics["epochs"] == 5
    for fig in ("samples", "reconstructions", "interpolations", "traversals", "latent_map", "loss_curves"):
        png = run_dir / "figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'name = "digits"' in (run_dir / "config.toml").read_text()
    assert not list(run_dir.glob(".*.tmp"))


def test_evaluate_json(run_dir):
    report = json.loads(ppl_vae("evaluate", run_dir, "--iwae-samples", "50", "--json").stdout)
    assert report["iwae_samples"] == 50 and report["n"] == 359
    assert np.isfinite(report["log_px"]) and report["bits_per_dim"] > 0 and 0 <= report["active_units"] <= 8
    table = ppl_vae("evaluate", run_dir, "--iwae-samples", "20", "--n-test", "50").stdout
    assert "bits/dim" in table and "active units" in table


def test_sample(run_dir, tmp_path):
    out = tmp_path / "grid.png"
    ppl_vae("sample", run_dir, "-n", "16", "--out", out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_recipes_lists_descriptions():
    out = ppl_vae("recipes").stdout
    assert "vae-digits" in out and "8x8 digits" in out


def test_resume_after_an_interrupted_run(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppl_vae", "train", "--out", str(out), "--no-progress", "--no-figures", "--set", "train.epochs=100000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = out / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
    proc.wait()
    reached = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert reached >= 2
    target = reached + 3
    ppl_vae(
        "train", "--resume", out, "--set", f"train.epochs={target}", "--set", "eval.iwae_samples=50", "--no-progress", "--no-figures"
    )
    epochs = [json.loads(line)["epoch"] for line in history.read_text().splitlines()]
    assert epochs == list(range(1, target + 1))
    assert json.loads((out / "metrics.json").read_text())["epochs"] == target


def test_bad_inputs_give_one_line_errors_and_leave_nothing(tmp_path):
    out = tmp_path / "never"
    assert "unknown recipe 'vae-digit' (did you mean 'vae-digits'" in error_of("train", "vae-digit", "--out", out)
    assert "Fashion-MNIST not found" in error_of("train", "vae-fashion-mnist", "--out", out, "--set", f"data.path={tmp_path}/nowhere")
    assert "Bernoulli" in error_of("train", "--out", out, "--set", "data.preprocess=scale")
    assert "conv encoder needs images" in error_of("train", "--out", out, "--set", "model.encoder.name=conv")
    assert "unknown key 'train.epoch'" in error_of("train", "--out", out, "--set", "train.epoch=3")
    x = np.random.default_rng(0).random((40, 5)).astype(np.float32)
    x[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    assert "NaN/inf" in error_of(
        "train",
        "--out",
        out,
        "--set",
        "data.name=array",
        "--set",
        f"data.path={tmp_path}/nan.npy",
        "--set",
        "data.preprocess=none",
        "--set",
        "model.likelihood.name=normal",
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert "cannot write to output directory" in error_of("train", "--out", blocker / "run")
    assert not out.exists()


def test_bad_checkpoints_are_refused(tmp_path, run_dir):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"\x00garbage")
    assert "refused to load" in error_of("evaluate", corrupt)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"state": torch.zeros(1)}, foreign / "checkpoint.pt")
    assert "not a ppl-vae checkpoint" in error_of("evaluate", foreign)
    assert "not found" in error_of("evaluate", tmp_path / "missing")
    assert "already exists and is not empty" in error_of("train", "--out", run_dir)
    assert "nothing to resume" in error_of("train", "--resume", tmp_path)


def test_same_recipe_and_seed_give_the_same_run(tmp_path):
    from ppl_vae.runs import load_config
    from ppl_vae.runs import train_run

    cfg = load_config("vae-digits", ["train.epochs=2", "eval.iwae_samples=10"])
    a = train_run(cfg, tmp_path / "a", progress=False, figures=False)
    b = train_run(cfg, tmp_path / "b", progress=False, figures=False)
    assert a["elbo"] == b["elbo"] and a["log_px"] == b["log_px"]
