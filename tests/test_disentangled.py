"""Disentanglement objectives against their definitions."""

import pytest
import torch

from ppl_vae.data.base import ArrayDataset
from ppl_vae.objectives.disentangled import (
    CapacityObjective,
    DIPVAEObjective,
    FactorVAEObjective,
    TCVAEObjective,
    batch_terms,
    decomposition,
    dip_covariance,
    mss_log_weights,
)
from ppl_vae.objectives import ELBOObjective
from ppl_vae.registry import ConfigError
from ppl_vae.training.fit import fit
from ppl_vae.kinds.vae import VAE


def aggregate(n, corr, scale=0.3, z_dim=3, seed=0):
    """Posterior means from N(0, C) with C = (1 - corr) I + corr 11^T; one draw z per datum."""
    g = torch.Generator().manual_seed(seed)
    cov = (1 - corr) * torch.eye(z_dim) + corr * torch.ones(z_dim, z_dim)
    loc = torch.randn(n, z_dim, generator=g) @ torch.linalg.cholesky(cov).T
    sc = torch.full_like(loc, scale)
    z = loc + sc * torch.randn(loc.shape, generator=g)
    return z, loc, sc, torch.distributions.Normal(0.0, 1.0).log_prob(z)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_mi_tc_and_dimension_wise_kl_add_up_to_the_kl_term(estimator):
    z, loc, sc, lp = aggregate(64, 0.5)
    d = decomposition(z, loc, sc, lp, dataset_size=5000, estimator=estimator)
    kl = torch.distributions.Normal(loc, sc).log_prob(z).sum(-1) - lp.sum(-1)
    torch.testing.assert_close(d["mi"] + d["tc"] + d["dim_kl"], kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(d["kl"], kl, rtol=1e-5, atol=1e-4)


def test_mss_weights_follow_the_definition():
    n, b = 1000, 5
    w = mss_log_weights(b, n).exp()
    m = b - 1
    for i in range(b):
        assert w[i, i] == pytest.approx(1 / n)  # the datum itself
        assert w[i, (i + 1) % b] == pytest.approx((n - m) / (n * m))  # the stratified one
        others = [j for j in range(b) if j not in (i, (i + 1) % b)]
        assert w[i, others].tolist() == pytest.approx([1 / m] * len(others))
        assert float(w[i].sum()) == pytest.approx(1.0)  # a proper average over the data set


def test_tc_near_zero_for_a_factorized_aggregate_and_large_for_a_correlated_one():
    n = 2000
    flat = decomposition(*aggregate(n, 0.0), dataset_size=n, estimator="mss")["tc"].mean()
    corr = decomposition(*aggregate(n, 0.9), dataset_size=n, estimator="mss")["tc"].mean()
    # closed form for the Gaussian aggregate: TC = -1/2 log det of the correlation matrix
    cov = 0.1 * torch.eye(3) + 0.9 * torch.ones(3, 3) + 0.09 * torch.eye(3)
    sd = cov.diagonal().sqrt()
    exact = -0.5 * torch.logdet(cov / sd[:, None] / sd[None])
    assert abs(float(flat)) < 0.1
    assert float(corr) == pytest.approx(float(exact), rel=0.1) and float(corr) > 1.0


def test_mws_and_mss_agree_on_tc_differences_on_a_large_batch():
    """The paper's MWS is a biased (lower-bound) estimator: its MI, TC and dimension-wise KL carry
    offsets that depend on N and the batch size, not on the parameters. What the objective's gradient
    sees, how TC changes between aggregates, agrees with MSS on a large batch."""
    n = 2000
    tc = {
        e: [float(decomposition(*aggregate(n, c, seed=3), dataset_size=n, estimator=e)["tc"].mean()) for c in (0.0, 0.9)]
        for e in ("mws", "mss")
    }
    assert tc["mws"][1] - tc["mws"][0] == pytest.approx(tc["mss"][1] - tc["mss"][0], rel=0.1)


def test_dip_ii_covariance_is_cov_of_means_plus_mean_variance():
    loc = torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]])
    scale = torch.tensor([[1.0, 2.0], [1.0, 2.0], [2.0, 2.0]])
    mean = loc.mean(0)
    cov_mu = sum(torch.outer(r - mean, r - mean) for r in loc) / 3
    torch.testing.assert_close(dip_covariance(loc, scale, "i"), cov_mu)
    torch.testing.assert_close(dip_covariance(loc, scale, "ii"), cov_mu + torch.diag(torch.tensor([2.0, 4.0])))


def test_dip_lambda_defaults_and_capacity_schedule():
    assert DIPVAEObjective("i", lambda_od=5).lambda_d == 50 and DIPVAEObjective("ii", lambda_od=5).lambda_d == 5
    cap = CapacityObjective(gamma=100, capacity=20, capacity_steps=1000)
    assert [cap.capacity_at(s) for s in (0, 500, 1000, 5000)] == [0, 10, 20, 20]
    with pytest.raises(ConfigError, match="'DIPVAEObjective.kind' must be one of: i, ii, got 'iii'"):
        DIPVAEObjective("iii")
    with pytest.raises(ConfigError, match="'CapacityObjective.gamma' must be a finite number > 0, got 0"):
        CapacityObjective(gamma=0)
    with pytest.raises(ConfigError, match="mws"):
        TCVAEObjective(estimator="exact")


def test_tcvae_with_unit_weights_is_the_elbo():
    vae = VAE((20,), 3, hidden=(16,))
    x = torch.rand(32, 20).bernoulli()
    obj = TCVAEObjective(alpha=1, beta=1, gamma=1, dataset_size=1000)
    torch.manual_seed(1)
    tc_loss = obj.loss(vae, x)
    torch.manual_seed(1)
    elbo_loss = ELBOObjective(pyro_elbo=True).loss(vae, x)
    assert float(tc_loss.detach()) == pytest.approx(float(elbo_loss.detach()), rel=1e-5)


def test_each_objective_trains_and_records_the_decomposition(digits):
    x, _ = digits
    data = ArrayDataset(x[:300], binarize=True)
    for obj in (
        CapacityObjective(gamma=10, capacity=5, capacity_steps=50),
        TCVAEObjective(beta=4),
        FactorVAEObjective(gamma=10, hidden=32, layers=2),
        DIPVAEObjective("ii", lambda_od=5),
    ):
        vae = VAE((64,), 4, hidden=(32,))
        history = fit(vae, data, val=data, objective=obj, epochs=3, batch_size=50, progress=False, device="cpu")
        last = history[-1]
        assert {"mi", "tc", "dim_kl", "kl"} <= set(last)
        assert last["mi"] + last["tc"] + last["dim_kl"] == pytest.approx(last["kl"], abs=1e-3)
        assert history[-1]["val_elbo"] > history[0]["val_elbo"]


def test_factor_vae_discriminator_learns_to_spot_permuted_codes():
    vae = VAE((6,), 2, hidden=(8,))
    obj = FactorVAEObjective(gamma=1, hidden=32, layers=2, lr=1e-2)
    obj.setup(vae, torch.zeros(10, 6))
    g = torch.Generator().manual_seed(0)
    base = torch.randn(256, 1, generator=g)
    z = torch.cat([base, base + 0.05 * torch.randn(256, 1, generator=g)], 1)  # strongly correlated codes
    for _ in range(80):
        obj._last_z = z
        obj.auxiliary_step(vae, None, None, 0)
    logits = obj.discriminator(z)
    assert float((logits[:, 0] - logits[:, 1]).mean()) > 1.0  # TC estimate: clearly positive


def test_penalties_refuse_unsupported_posteriors_and_priors():
    x = torch.rand(4, 6).bernoulli()
    with pytest.raises(ConfigError, match="diagonal Gaussian"):
        batch_terms(VAE((6,), 2, hidden=(8,), posterior="iaf"), x)
    with pytest.raises(ConfigError, match="factorizes"):
        batch_terms(VAE((6,), 2, hidden=(8,), prior="mixture"), x)
