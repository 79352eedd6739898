import math

import pyro
import pytest
import torch
from torch import nn

from ppl_vae.components.likelihoods import NormalLikelihood
from ppl_vae.objectives import CyclicalBeta, IWAEObjective, LinearWarmup, MeanFieldObjective, ELBOObjective, make_schedule
from ppl_vae.registry import ConfigError
from ppl_vae.kinds.vae import VAE

from .linear_gaussian import LinearEncoder, exact_log_px

S = 0.7


def linear_vae():
    torch.manual_seed(1)
    return VAE((5,), 2, likelihood=NormalLikelihood(scale=S), encoder=LinearEncoder(5, 2), decoder=nn.Linear(2, 5))


def analytic_terms(vae, x):
    """E_q[log p(x|z)] and KL(q || N(0, I)) per datum, in closed form."""
    loc, scale = vae.encoder(x)
    W, b = vae.decoder.weight, vae.decoder.bias
    mean = loc @ W.T + b
    trace = (W**2) @ (scale**2).T  # (D, N): sum_k W_dk^2 sigma_k^2
    recon = (-0.5 * math.log(2 * math.pi * S**2) - ((x - mean) ** 2 + trace.T) / (2 * S**2)).sum(-1)
    kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
    return recon, kl


@pytest.mark.parametrize("analytic_kl", [False, True])
def test_beta_4_matches_reconstruction_minus_4_kl(analytic_kl):
    vae = linear_vae()
    x = torch.randn(6, 5) + 1
    recon, kl = analytic_terms(vae, x)
    expected = -(recon - 4 * kl).sum()
    objective = (MeanFieldObjective if analytic_kl else ELBOObjective)(num_particles=20000, beta=4.0)
    with torch.no_grad():
        loss = objective.loss(vae, x)
    assert torch.allclose(loss, expected, rtol=5e-3), (loss, expected)


def test_beta_scales_the_latent_site_in_model_and_guide():
    """Same random draws, beta 4 vs 1: with an analytic KL the difference is exactly 3 KL."""
    vae = linear_vae()
    x = torch.randn(6, 5) + 1
    _, kl = analytic_terms(vae, x)
    with torch.no_grad():
        pyro.set_rng_seed(3)
        l4 = MeanFieldObjective(beta=4.0).loss(vae, x)
        pyro.set_rng_seed(3)
        l1 = MeanFieldObjective(beta=1.0).loss(vae, x)
    assert torch.allclose(l4 - l1, 3 * kl.sum(), atol=1e-4)


def test_iwae_objective_lies_between_elbo_and_exact_log_px():
    vae = linear_vae()
    x = torch.randn(20, 5) + 1
    with torch.no_grad():
        recon, kl = analytic_terms(vae, x)
        elbo = (recon - kl).sum()
        iwae = -IWAEObjective(num_particles=2000).loss(vae, x)
        exact = exact_log_px(vae, x).sum()
    assert elbo < iwae <= exact + 0.5
    assert (exact - iwae) < (exact - elbo)


def test_schedules():
    warm = LinearWarmup(beta=2.0, warmup_steps=10, start=0.1)
    assert warm(0) == pytest.approx(0.1) and warm(5) == pytest.approx(1.05) and warm(100) == 2.0
    cyc = CyclicalBeta(beta=1.0, period=10, ratio=0.5, start=0.01)
    assert cyc(0) == pytest.approx(0.01) and cyc(5) == 1.0 and cyc(10) == pytest.approx(0.01)
    assert make_schedule(lambda s: 0.5)(3) == 0.5
    with pytest.raises(ConfigError, match="beta. must be a finite number > 0, got 0"):
        make_schedule(0.0)
    with pytest.raises(ConfigError, match="'LinearWarmup.start' must be a finite number > 0"):
        LinearWarmup(1.0, 10, start=0.0)


@pytest.mark.parametrize("particles,beta", [(1, 1.0), (3, 2.5)])
def test_sync_free_elbo_equals_trace_elbo_in_value_and_gradient(particles, beta):
    import pyro

    from ppl_vae.objectives import ELBOObjective
    from ppl_vae.kinds.vae import VAE

    vae = VAE((12,), 3, hidden=(8,), posterior="iaf")
    x = torch.rand(7, 12).bernoulli()
    fast, reference = ELBOObjective(particles, beta=beta), ELBOObjective(particles, beta=beta, pyro_elbo=True)
    grads = []
    for obj in (fast, reference):
        pyro.set_rng_seed(4)
        vae.zero_grad()
        loss = obj.loss(vae, x)
        loss.backward()
        grads.append((float(loss), [p.grad.clone() for p in vae.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_guides_without_reparameterization_go_through_trace_elbo():
    import pyro.distributions as dist

    from ppl_vae.objectives import reparam_elbo_loss

    def model(x):
        with pyro.plate("data", len(x)):
            k = pyro.sample("k", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(k, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("k", dist.Bernoulli(0.3))

    assert reparam_elbo_loss(model, guide, torch.zeros(3)) is None
