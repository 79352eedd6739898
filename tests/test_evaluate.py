import math

import pytest
import torch

from ppl_vae.data.base import ArrayDataset
from ppl_vae.evaluation.likelihood import evaluate, iwae_log_likelihood, latent_statistics

from .linear_gaussian import exact_log_px, exact_posterior, trained_linear_vae


@pytest.fixture(scope="module")
def ppca():
    torch.manual_seed(0)
    return trained_linear_vae()


def test_iwae_matches_exact_log_px_of_a_linear_gaussian_vae(ppca):
    vae, x = ppca
    x = x[:200]
    est = iwae_log_likelihood(vae, x, num_samples=1000)
    with torch.no_grad():
        exact = exact_log_px(vae, x)
    assert (est["log_px"] - exact).abs().mean() < 0.05
    assert est["elbo"].mean() < exact.mean()
    assert (est["elbo"] <= est["log_px"] + 1e-4).all()


def test_trained_guide_matches_the_exact_posterior(ppca):
    vae, x = ppca
    with torch.no_grad():
        loc, cov = exact_posterior(vae, x[:50])
        q_loc, q_scale = vae.encoder(x[:50])
    assert (q_loc - loc).abs().max() < 0.1
    assert torch.allclose(q_scale[0] ** 2, cov.diagonal(), rtol=0.1)


def test_chunking_over_particles_gives_the_same_estimate(ppca):
    vae, x = ppca
    x = x[:50]
    with torch.no_grad():
        exact = exact_log_px(vae, x)
    small = iwae_log_likelihood(vae, x, num_samples=500, max_elements=5 * 50 * 7)  # ~7 particles a chunk
    assert (small["log_px"] - exact).abs().mean() < 0.05


def test_evaluate_report_and_active_units(ppca):
    vae, x = ppca
    report = evaluate(vae, ArrayDataset(x[:100]), num_samples=200)
    for key in ("elbo", "log_px", "bits_per_dim", "mse", "active_units", "kl_per_dim", "log_px_se"):
        assert key in report
    assert report["gap"] >= 0
    assert report["active_units"] == 2
    # a continuous density on real data: bits/dim follow from log p(x)
    assert report["bits_per_dim"] == pytest.approx(-report["log_px"] / (5 * math.log(2)) + math.log2(255), rel=1e-4)
    stats = latent_statistics(vae, x[:100])
    assert stats["kl_per_dim"].shape == (2,) and (stats["kl_per_dim"] > 0).all()


def test_inactive_unit_is_detected():
    from ppl_vae.kinds.vae import VAE

    vae = VAE((16,), 3, hidden=(8,))
    with torch.no_grad():  # make z2's posterior mean constant across data
        vae.encoder.head.weight[2].zero_()
    stats = latent_statistics(vae, (torch.rand(50, 16) > 0.5).float())
    assert stats["posterior_mean_variance"][2] < 1e-10
    assert stats["active_units"] <= 2
