"""``ppl-vae diagnose`` and ``ppl-vae compare`` through the real command, checking what they write."""

import json

import numpy as np
import pytest

from ppl_vae.diagnostics import arviz_adapter as adapter

from .clitools import FAST, error_of, ppl_vae

QUICK = ["--n", "120", "--samples", "100", "--nuts", "1", "--nuts-draws", "150", "--sbc", "200"]


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "report"
    proc = ppl_vae("diagnose", run_dir, "--out", out, *QUICK)
    return out, proc.stdout


def test_diagnose_writes_a_consistent_report(report):
    out, stdout = report
    r = json.loads((out / "diagnostics.json").read_text())
    imp = r["importance"]
    assert r["n"] == 120 and imp["num_samples"] == 100 and imp["khat_threshold"] == pytest.approx(0.5)
    assert imp["log_px_mean"] >= imp["elbo_mean"] and imp["gap_mean"] > 0
    assert len(r["sbc"]["per_dim"]) == 8 and r["sbc"]["num_sims"] == 200
    point = r["nuts"]["points"][0]
    assert point["khat"] == pytest.approx(imp["khat_max"])  # the reference goes to the worst datum first
    assert point["log_px"] >= point["elbo_reoptimized"] - 0.5 and len(point["sd_ratio"]) == 8
    assert set(r["ppc"]["posterior_pvalue"]) == {"mean_intensity", "active_fraction"}

    idata = adapter.from_netcdf(out / "inference_data.nc")
    khat = idata.sample_stats["khat"].values
    assert idata.posterior["z"].dims == ("chain", "draw", "image", "latent")
    assert khat.shape == (120,) and int((khat > 0.5).sum()) == imp["n_flagged"]
    assert np.median(khat) == pytest.approx(imp["khat_median"])
    assert idata.observed_data["mean_intensity"].shape == (120,)
    assert idata.constant_data["label"].shape == (120,)

    md = (out / "report.md").read_text()
    for name, v in r["verdicts"].items():
        line = f"**{'PASS' if v['passed'] else 'FAIL'}** ({name}): {v['message']}"
        assert line in md
        assert f"{'PASS' if v['passed'] else 'FAIL'}  {name}:" in stdout
    assert f"| flagged data | {imp['n_flagged']} (" in md
    for fig in ("khat", "sbc", "ppc", "worst", f"nuts_{point['datum']}"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"(figures/{fig}.png)" in md


def test_diagnose_refuses_bad_input_and_writes_nothing(run_dir, report, tmp_path):
    out, _ = report
    assert "already exists and is not empty" in error_of("diagnose", run_dir, "--out", out, *QUICK)
    fresh = tmp_path / "fresh"
    assert "--samples: must be an integer in [10, 10000000] (at least 10 for the Pareto fit)" in error_of(
        "diagnose", run_dir, "--out", fresh, "--samples", "5"
    )
    assert "--nuts-draws: must be an integer in [50, 1000000]" in error_of("diagnose", run_dir, "--out", fresh, "--nuts-draws", "10")
    assert "--n: must be an integer in [1, 1000000]" in error_of("diagnose", run_dir, "--out", fresh, "--n", "0")
    assert "--sbc: must be an integer in [10, 1000000]" in error_of("diagnose", run_dir, "--out", fresh, "--sbc", "3")
    assert not fresh.exists()
    assert not list(tmp_path.glob(".fresh-*"))


def test_compare_two_priors_on_the_same_data(run_dir, tmp_path):
    other = tmp_path / "mog"
    ppl_vae("train", "--out", other, *FAST, "--no-figures", "--set", "model.prior.name=mixture")
    rows = json.loads(ppl_vae("compare", run_dir, other, "--n", "100", "--samples", "50", "--json").stdout)
    assert {r["model"] for r in rows} == {run_dir.name, "mog"}
    assert rows[0]["log_px"] >= rows[1]["log_px"] and rows[0]["diff"] == 0
    assert rows[1]["diff"] == pytest.approx(rows[1]["log_px"] - rows[0]["log_px"], abs=1e-6)
    assert 0 < rows[1]["diff_se"] and all(r["n"] == 100 for r in rows)
    table = ppl_vae("compare", run_dir, other, "--n", "50", "--samples", "20").stdout
    assert "paired difference to best" in table and "| mog |" in table
    scaled = tmp_path / "cb"
    ppl_vae(
        "train",
        "--out",
        scaled,
        "--set",
        "train.epochs=1",
        "--no-progress",
        "--no-figures",
        "--set",
        "data.preprocess=scale",
        "--set",
        "model.likelihood.name=continuous-bernoulli",
    )
    assert "not comparable" in error_of("compare", run_dir, scaled)
    assert "at least two" in error_of("compare", run_dir)
