import math

import pytest
import torch

from ppl_vae.components.likelihoods import LIKELIHOODS, DataSupportError, NormalLikelihood, bits_per_dim
from ppl_vae.components.tabular import TabularLikelihood

SHAPE = (1, 4, 4)


def good_data(name, n=3):
    """Data inside each likelihood's support, and data outside it (None: every real is fine)."""
    u = torch.rand(n, *SHAPE)
    counts = torch.poisson(3 * torch.ones(n, *SHAPE))
    table = {
        "bernoulli": ((u > 0.5).float(), u * 0.5 + 0.25),
        "continuous-bernoulli": (u, u + 1.0),
        "normal": (torch.randn(n, *SHAPE), None),
        "laplace": (torch.randn(n, *SHAPE), None),
        "student-t": (torch.randn(n, *SHAPE), None),
        "beta": (u.clamp(0.01, 0.99), torch.zeros(n, *SHAPE)),
        "categorical256": (torch.randint(0, 256, (n, *SHAPE)).float(), u),
        "poisson": (counts, counts - 0.5),
        "negative-binomial": (counts, -counts - 1),
        "zinb": (counts, counts + 0.3),
    }
    return table[name]


ELEMENTWISE = [
    "bernoulli",
    "continuous-bernoulli",
    "normal",
    "laplace",
    "student-t",
    "beta",
    "categorical256",
    "poisson",
    "negative-binomial",
    "zinb",
]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_shapes_sampling_log_prob_and_support(name):
    lik = LIKELIHOODS.build(name).setup(SHAPE)
    out = lik.decoder_output_shape()
    params = torch.randn(2, 3, *out)  # (particles, batch, ...)
    d = lik(params)
    assert tuple(d.event_shape) == SHAPE and tuple(d.batch_shape) == (2, 3)
    assert d.sample().shape == (2, 3, *SHAPE)
    x, bad = good_data(name)
    lik.check_support(x)
    lp = d.log_prob(x)
    assert lp.shape == (2, 3) and torch.isfinite(lp).all()
    if bad is not None:
        with pytest.raises(DataSupportError, match=lik.name):
            lik.check_support(bad)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_mask_removes_unobserved_entries(name):
    lik = LIKELIHOODS.build(name).setup(SHAPE)
    params = torch.randn(3, *lik.decoder_output_shape())
    x, _ = good_data(name)
    mask = torch.rand(3, *SHAPE) > 0.4
    full = lik.elementwise(lik.split(params)).log_prob(x)
    expected = (full * mask).flatten(1).sum(-1)
    assert torch.allclose(lik(params, mask).log_prob(x), expected, atol=1e-4)
    # a NaN in a missing entry does not poison the value or the gradient
    x_nan = torch.where(mask, x, torch.full_like(x, float("nan")))
    params.requires_grad_(True)
    lp = lik(params, mask).log_prob(lik.fill_missing(x_nan, mask)).sum()
    lp.backward()
    assert torch.isfinite(lp) and torch.isfinite(params.grad).all()
    lik.check_support(x_nan, mask)  # missing entries are not checked


def test_bernoulli_on_grey_levels_names_the_fix():
    lik = LIKELIHOODS.build("bernoulli").setup((4,))
    with pytest.raises(DataSupportError, match="binary.*binarize.*continuous-bernoulli"):
        lik.check_support(torch.tensor([[0.0, 0.5, 1.0, 0.2]]))


def test_nan_data_are_refused_with_a_clear_message():
    lik = LIKELIHOODS.build("normal").setup((2,))
    with pytest.raises(DataSupportError, match="1 NaN/inf"):
        lik.check_support(torch.tensor([[0.0, float("nan")]]))


def test_normal_scale_modes_and_closed_form():
    x = torch.randn(5, 3)
    loc = torch.randn(5, 3)
    fixed = NormalLikelihood(scale=0.5).setup((3,))
    expected = (-0.5 * ((x - loc) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(fixed(loc).log_prob(x), expected, atol=1e-5)
    assert sum(p.numel() for p in NormalLikelihood("shared").setup((3,)).parameters()) == 1
    assert sum(p.numel() for p in NormalLikelihood("feature").setup((3,)).parameters()) == 3
    dec = NormalLikelihood("decoder").setup((3,))
    assert dec.decoder_output_shape() == (6,)
    with pytest.raises(Exception, match="scale"):
        NormalLikelihood(scale="wide")


def test_categorical_reconstruction_is_the_expected_level():
    lik = LIKELIHOODS.build("categorical256").setup((2,))
    logits = torch.full((1, 256 * 2), -1e4)
    logits[0, 10 * 2 + 0] = 0  # level 10 for entry 0 (levels are the leading axis)
    logits[0, 200 * 2 + 1] = 0  # level 200 for entry 1
    assert torch.allclose(lik.reconstruct(logits), torch.tensor([[10.0, 200.0]]))


def test_tabular_columns_masks_and_support():
    lik = TabularLikelihood(["numeric", "binary", "categorical:3"]).setup((3,))
    assert lik.decoder_output_shape() == (2 + 1 + 3,)
    params = torch.randn(4, 5, 6)
    d = lik(params)
    assert tuple(d.event_shape) == (3,) and tuple(d.batch_shape) == (4, 5)
    x = torch.tensor([[0.3, 1.0, 2.0]] * 5)
    lp = d.log_prob(x)
    p = params[0, 0]
    by_hand = (
        torch.distributions.Normal(p[0], torch.nn.functional.softplus(p[1]) + 1e-3).log_prob(x[0, 0])
        + torch.distributions.Bernoulli(logits=p[2]).log_prob(x[0, 1])
        + torch.log_softmax(p[3:], -1)[2]
    )
    assert torch.allclose(lp[0, 0], by_hand, atol=1e-5)
    masked = lik(params, torch.tensor([True, False, True])).log_prob(x)
    assert torch.allclose(masked[0, 0], by_hand - torch.distributions.Bernoulli(logits=p[2]).log_prob(x[0, 1]), atol=1e-5)
    assert d.sample().shape == (4, 5, 3)
    with pytest.raises(DataSupportError, match="column 2 is declared 'categorical' and needs integer codes 0..2"):
        lik.check_support(torch.tensor([[0.3, 1.0, 5.0]]))


def test_bits_per_dim():
    log_px = torch.tensor([-784 * math.log(2)])
    assert torch.allclose(bits_per_dim(log_px, 784, discrete=True), torch.tensor([1.0]))
    # a density on [0, 1]-scaled 8-bit data pays log2(255) bits per dimension for the bin
    assert torch.allclose(bits_per_dim(log_px, 784, discrete=False, bin_width=1 / 255), torch.tensor([1.0 + math.log2(255)]))


@pytest.mark.parametrize("shape", [(12,), (1, 4, 5)])
def test_bernoulli_event_log_prob_equals_independent_bernoulli(shape):
    import pyro.distributions as pdist

    from ppl_vae.components.likelihoods import BernoulliLikelihood

    lik = BernoulliLikelihood().setup(shape)
    logits = torch.randn(7, *shape, requires_grad=True)
    x = torch.bernoulli(torch.rand(7, *shape))
    ours = lik(logits).log_prob(x)
    reference = pdist.Bernoulli(logits=logits).to_event(len(shape)).log_prob(x)
    assert ours.shape == (7,) and torch.allclose(ours, reference, atol=1e-5)
    (g1,) = torch.autograd.grad(ours.sum(), logits)
    (g2,) = torch.autograd.grad(reference.sum(), logits)
    assert torch.allclose(g1, g2, atol=1e-6)
    assert lik(logits).expand((3, 7)).log_prob(x).shape == (3, 7)  # Pyro's plates expand it
