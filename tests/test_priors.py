import pyro.distributions as dist
import pytest
import torch

from ppl_vae.components.priors import PRIORS, CallablePrior, as_prior
from ppl_vae.registry import ConfigError
from ppl_vae.kinds.vae import VAE

LATENT = 4


@pytest.mark.parametrize("name", PRIORS.names())
def test_prior_shapes_sampling_and_log_prob(name):
    vae = VAE((16,), LATENT, prior=name, likelihood="bernoulli", hidden=(8,))
    d = vae.prior()
    assert isinstance(d, dist.Distribution)
    assert tuple(d.event_shape) == (LATENT,)
    assert tuple(d.batch_shape) == ()
    z = d.sample((7,))
    assert z.shape == (7, LATENT)
    lp = d.log_prob(z)
    assert lp.shape == (7,) and torch.isfinite(lp).all()
    # broadcast to a data plate and a particle plate
    assert d.expand((3, 5)).log_prob(torch.zeros(3, 5, LATENT)).shape == (3, 5)


def test_standard_normal_log_prob_is_closed_form():
    d = as_prior("standard-normal").setup(LATENT)()
    z = torch.randn(5, LATENT)
    expected = -0.5 * (z**2).sum(-1) - 0.5 * LATENT * torch.log(torch.tensor(2 * torch.pi))
    assert torch.allclose(d.log_prob(z), expected, atol=1e-5)


def test_mixture_prior_is_a_mixture_of_its_components():
    prior = PRIORS.build("mixture", k=3).setup(2)
    z = torch.randn(4, 2)
    comp = dist.Normal(prior.locs, prior.log_scales.exp()).to_event(1).log_prob(z[:, None])
    expected = torch.logsumexp(comp + torch.log_softmax(prior.logits, 0), -1)
    assert torch.allclose(prior().log_prob(z), expected, atol=1e-5)


def test_laplace_and_student_t_are_heavier_tailed_than_normal():
    far = torch.full((1, LATENT), 6.0)
    normal = as_prior("standard-normal").setup(LATENT)().log_prob(far)
    for name in ("laplace", "student-t"):
        assert as_prior(name).setup(LATENT)().log_prob(far) > normal


def test_vampprior_components_come_from_the_encoder():
    vae = VAE((16,), LATENT, prior="vamp", hidden=(8,))
    loc, scale = vae.encoder(vae.prior.pseudo_inputs)
    assert torch.allclose(vae.prior().component_distribution.base_dist.loc, loc)
    # the encoder's parameters are owned once by the VAE
    names = [n for n, _ in vae.named_parameters()]
    assert len(names) == len(set(id(p) for p in vae.parameters()))


def test_user_distribution_and_callable_are_accepted():
    user = dist.Normal(torch.zeros(LATENT), 2 * torch.ones(LATENT)).to_event(1)
    vae = VAE((16,), LATENT, prior=user, hidden=(8,))
    assert vae.prior() is user
    vae2 = VAE((16,), LATENT, prior=lambda: user, hidden=(8,))
    assert vae2.prior() is user


def test_user_prior_with_wrong_event_shape_is_refused():
    bad = dist.Normal(torch.zeros(LATENT), torch.ones(LATENT))  # event_shape () not (4,)
    with pytest.raises(ConfigError, match=r"event_shape \(\) .*expects \(4,\).*to_event"):
        CallablePrior(bad).setup(LATENT)


def test_unknown_prior_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'mixture'"):
        as_prior("mixtur")
