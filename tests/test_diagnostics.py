"""Diagnostics against closed forms: a linear-Gaussian VAE has an exact posterior and log p(x)."""

import math

import numpy as np
import pytest
import torch

from ppl_vae.diagnostics import (
    amortized_sbc,
    compare_log_likelihoods,
    comparison_table,
    importance_diagnostics,
    khat_threshold,
    nuts_posterior,
    predictive_statistics,
    reference_report,
    to_inference_data,
)
from ppl_vae.diagnostics import arviz_adapter as adapter
from ppl_vae.diagnostics.psis import importance_ess
from ppl_vae.diagnostics.report import nuts_indices

from .linear_gaussian import exact_guide_vae, exact_log_px, exact_posterior, trained_linear_vae


@pytest.fixture(scope="module")
def ppca():
    torch.manual_seed(0)
    return trained_linear_vae()


@pytest.fixture
def halved(ppca):
    """The trained guide with its scale halved (too narrow), restored afterwards."""
    vae, x = ppca
    with torch.no_grad():
        vae.encoder.log_scale -= math.log(2)
    yield vae, x
    with torch.no_grad():
        vae.encoder.log_scale += math.log(2)


def test_threshold_follows_sample_size():
    assert khat_threshold(100) == pytest.approx(0.5)
    assert khat_threshold(1000) == pytest.approx(2 / 3)
    assert khat_threshold(10**6) == 0.7


def test_importance_ess_closed_forms():
    assert importance_ess(torch.zeros(50, 3)).tolist() == pytest.approx([50.0] * 3)
    one_hot = torch.full((50, 1), -1e4)
    one_hot[7] = 0
    assert float(importance_ess(one_hot)) == pytest.approx(1.0)


def test_well_trained_guide_passes_and_gives_exact_log_px(ppca):
    vae, x = ppca
    d = importance_diagnostics(vae, x[:200], num_samples=1000)
    assert np.median(d.khat) < 0.5
    assert d.flagged.mean() < 0.05
    assert np.abs(d.log_px - exact_log_px(vae, x[:200]).detach().numpy()).mean() < 0.05
    assert (d.gap >= -1e-6).all() and d.gap.mean() < 0.1
    assert (d.ess > 500).mean() > 0.9


def test_halved_guide_scale_is_flagged_for_most_points(halved):
    vae, x = halved
    d = importance_diagnostics(vae, x[:200], num_samples=1000)
    assert d.flagged.mean() > 0.5
    assert np.median(d.ess) < 200


def test_exact_posterior_has_flat_weights_and_no_flags():
    vae, x = exact_guide_vae()
    d = importance_diagnostics(vae, x[:50], num_samples=200)
    assert not d.flagged.any()
    assert d.gap == pytest.approx(np.zeros(50), abs=1e-4)


def _arviz_khat(log_w):
    """ArviZ's own k-hat, without the adapter."""
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(az.psislw(log_w)[1])


def _legacy_flat(log_w):
    """The absolute flatness cutoff that ``psis_khat`` used before (issue 17)."""
    return np.ptp(log_w, axis=-1) < 1e-3


def test_khat_of_float32_rounding_noise_at_large_log_weights_is_flat():
    """Equal weights near log w = 3150, where a float32 ulp is 2**-12: values 0..7 ulps apart, a spread the old absolute
    cutoff (0.001) took for a tail; ArviZ then finds the top tied, too short a tail, and returns k = +inf."""
    rng = np.random.default_rng(0)
    ulp = np.float32(2.0**-12)
    assert np.spacing(np.float32(3150)) == ulp
    log_w = (np.float32(3150) + ulp * rng.integers(0, 8, size=(20, 1000)).astype(np.float32)).astype(np.float32)
    assert (np.ptp(log_w.astype(np.float64), axis=1) == 7 * 2.0**-12).all()
    assert not _legacy_flat(log_w.astype(np.float64)).any()
    khat = adapter.psis_khat(log_w)
    assert np.isneginf(khat).all()  # the equal-weights convention
    assert not (khat > khat_threshold(1000)).any()


def test_exact_guide_with_log_weights_near_3150_is_not_flagged():
    """End to end: a pPCA with 784 dimensions and a small noise scale puts log p(x) near 3150; the guide is exact, so the
    per-datum log weights are equal up to float32 rounding. The old cutoff flagged several of these data."""
    vae, x = exact_guide_vae(d=784, s=0.0045)
    d = importance_diagnostics(vae, x[:100], num_samples=100, keep_weights=True)
    log_w = d.log_weights.astype(np.float64)
    assert 3000 < np.abs(log_w).min() and np.abs(log_w).max() < 3300
    assert not _legacy_flat(log_w).all()  # rounding noise of several ulps: above 0.001 for some rows
    assert not d.flagged.any()
    assert np.isneginf(d.khat).all()
    assert d.gap == pytest.approx(np.zeros(100), abs=1e-2)


def test_heavy_tail_at_large_log_weights_is_still_flagged():
    """log w = 3150 + log of Pareto draws with tail index 1/0.9 (k = 0.9), rounded to float32 as the pipeline does: the
    per-row shift and the relative flatness test leave the tail to PSIS, which sees the same k as at log w = log Pareto."""
    rng = np.random.default_rng(0)
    tail = np.log1p(rng.pareto(1 / 0.9, size=(20, 1000)))
    khat = adapter.psis_khat((3150 + tail).astype(np.float32))
    assert (khat > khat_threshold(1000)).mean() >= 0.75  # k-hat from S = 1000 draws scatters about 0.1 around k
    assert 0.75 < np.median(khat) < 1.0
    assert khat == pytest.approx(adapter.psis_khat(tail), abs=0.05)  # float32 rounding of the tail moves k-hat little
    assert adapter.psis_khat(3150 + tail) == pytest.approx(adapter.psis_khat(tail), rel=1e-6)


def test_khat_at_small_log_weights_is_unchanged():
    """Small magnitudes: the exact guide's rows stay flat (-inf), and a non-flat row gets ArviZ's own k-hat."""
    vae, x = exact_guide_vae()
    d = importance_diagnostics(vae, x[:50], num_samples=200, keep_weights=True)
    assert _legacy_flat(d.log_weights.astype(np.float64)).all()
    assert np.isneginf(d.khat).all()
    rng = np.random.default_rng(2)
    log_w = rng.normal(-8.0, 1.0, size=(5, 500))
    log_w[0, :3] = -np.inf  # zero weights: not flat, left to PSIS
    assert adapter.psis_khat(log_w) == pytest.approx(_arviz_khat(log_w), rel=1e-9)
    assert adapter.psis_khat(np.zeros((2, 100))).tolist() == [-np.inf, -np.inf]


def test_sbc_is_uniform_for_the_exact_posterior_and_not_for_a_shrunken_guide():
    vae, _ = exact_guide_vae()
    exact = amortized_sbc(vae, num_sims=1000, num_samples=100)
    assert all(d["chi2_pvalue"] > 0.01 and d["verdict"] == "calibrated" for d in exact.summary())
    assert exact.fractions.mean() == pytest.approx(0.5, abs=0.03)
    with torch.no_grad():
        vae.encoder.log_scale -= math.log(2)
    narrow = amortized_sbc(vae, num_sims=1000, num_samples=100)
    assert all(d["chi2_pvalue"] < 1e-6 and d["verdict"].startswith("too narrow") for d in narrow.summary())
    with torch.no_grad():
        vae.encoder.log_scale += 2 * math.log(2)
    wide = amortized_sbc(vae, num_sims=1000, num_samples=100)
    assert all(d["verdict"].startswith("too wide") for d in wide.summary())


@pytest.mark.slow
def test_nuts_agrees_with_the_exact_posterior(ppca):
    vae, x = ppca
    xi = x[3:4]
    draws = nuts_posterior(vae, xi, num_samples=1000, warmup=1000)
    assert draws.shape == (4, 1000, 2)
    assert adapter.rhat(draws).max() < 1.01
    loc, cov = exact_posterior(vae, xi)
    sd = cov.diag().sqrt().detach().numpy()
    flat = draws.reshape(-1, 2)
    assert np.abs(flat.mean(0) - loc[0].detach().numpy()) / sd == pytest.approx([0, 0], abs=0.15)
    assert flat.std(0) / sd == pytest.approx([1, 1], abs=0.1)


@pytest.mark.slow
def test_reference_report_splits_the_gap():
    vae, x = exact_guide_vae()
    with torch.no_grad():
        vae.encoder.lin.bias += 0.3  # an amortization error that a per-datum optimum removes
    rep, _ = reference_report(vae, x[:1], num_samples=300, warmup=300, reopt_steps=300)
    assert rep["amortization_gap"] > 0.05
    assert abs(rep["approximation_gap"]) < 0.05  # the family contains the exact posterior (Monte Carlo noise only)
    assert max(abs(v) for v in rep["mean_diff_in_sd"]) > 0.3


def test_compare_paired_differences_and_standard_error():
    rng = np.random.default_rng(0)
    a = rng.normal(-100, 10, size=400)
    noise = rng.normal(0, 0.5, size=400)
    rows = compare_log_likelihoods({"a": a, "b": a - 1 + noise})
    assert [r["model"] for r in rows] == ["a", "b"]
    assert rows[1]["diff"] == pytest.approx(-1 + noise.mean())
    assert rows[1]["diff_se"] == pytest.approx(noise.std(ddof=1) / 20)
    assert rows[1]["diff_se"] < rows[1]["se"] / 5  # pairing removes the between-datum spread
    assert "| a |" in comparison_table(rows) and "best" in comparison_table(rows)
    with pytest.raises(ValueError, match="different numbers"):
        compare_log_likelihoods({"a": a, "b": a[:10]})


def test_nuts_indices_start_from_the_worst():
    assert nuts_indices(np.array([0.1, 0.9, 0.3, -np.inf]), 2) == [1, 3]
    assert nuts_indices(np.array([0.1]), 0) == []


def test_inference_data_shapes_coords_and_netcdf_roundtrip(ppca, tmp_path):
    vae, x = ppca
    xs = x[:30]
    d = importance_diagnostics(vae, xs, num_samples=50, keep_weights=True)
    pred = predictive_statistics(vae, xs, num_draws=20, columns=["numeric"] * 5)
    idata = to_inference_data(
        vae,
        xs,
        index=np.arange(100, 130),
        diagnostics=d,
        predictive=pred,
        num_draws=40,
        n_raw=4,
        obs_dim="row",
        labels=np.zeros(30, dtype=int),
    )
    assert idata.posterior["z"].dims == ("chain", "draw", "row", "latent")
    assert idata.posterior["z"].shape == (1, 40, 30, 2)
    assert idata.posterior["row"].values.tolist() == list(range(100, 130))
    assert idata.sample_stats["khat"].dims == ("row",)
    assert idata.sample_stats["log_importance_ratio"].shape == (1, 50, 30)
    assert idata.posterior_predictive["column_0"].shape == (1, 20, 30)
    assert idata.observed_data["x"].shape == (4, 5)
    assert idata.constant_data["label"].dims == ("row",)
    adapter.to_netcdf(idata, tmp_path / "d.nc")
    back = adapter.from_netcdf(tmp_path / "d.nc")
    np.testing.assert_allclose(back.sample_stats["khat"].values, d.khat)
    np.testing.assert_allclose(back.posterior["z"].values, idata.posterior["z"].values)


def test_predictive_statistics_of_images():
    from ppl_vae.diagnostics.predictive import image_statistics

    x = torch.tensor([[0.0, 1.0, 1.0, 0.2], [0.6, 0.6, 0.6, 0.6]])
    s = image_statistics(x, 1)
    assert s["mean_intensity"].tolist() == pytest.approx([0.55, 0.6])
    assert s["active_fraction"].tolist() == pytest.approx([0.5, 1.0])


def test_the_nuts_figure_shows_the_dimensions_where_guide_and_nuts_disagree_most():
    import numpy as np
    import pyro.distributions as dist

    from ppl_vae.diagnostics.figures import disagreement, nuts_figure

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(4000, 9))
    guide = reference[rng.permutation(4000)].copy()
    guide[:, 7] += 2.0  # the guide is off by 2 sd in z7, by 1 sd in z2
    guide[:, 2] += 1.0
    gaps = disagreement(reference, guide)
    assert list(np.argsort(-gaps)[:2]) == [7, 2] and abs(gaps[7] - 2.0) < 0.1 and gaps[0] < 0.1

    class Guide:
        def encode(self, x, mask):
            return dist.Normal(torch.as_tensor(guide.mean(0), dtype=torch.float32), 1.0).to_event(1)

    fig = nuts_figure(Guide(), torch.zeros(1, 4), None, reference[None], index=0, max_dims=3)
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["z7", "z2", fig.axes[2].get_title().split(":")[0]]
    assert fig.axes[2].get_title().split(":")[0] not in ("z7", "z2")
