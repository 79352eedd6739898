"""M2 and the conditional VAE: enumeration against sums by hand, training, evaluation."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from ppl_vae.data.base import ArrayDataset
from ppl_vae.components.likelihoods import NormalLikelihood
from ppl_vae.registry import ConfigError
from ppl_vae.data.labelled import balanced_labelled_split
from ppl_vae.data.spec import DataSpec
from ppl_vae.evaluation.classification import accuracy
from ppl_vae.kinds import kind
from ppl_vae.kinds.conditional import ConditionalVAE
from ppl_vae.kinds.semisupervised import SemiSupervisedVAE, enumerated_log_likelihood, make_classifier, train_classifier
from ppl_vae.objectives.labelled import ConditionalObjective, SemiSupervisedObjective
from ppl_vae.training.fit import fit


def tiny(likelihood=None):
    return SemiSupervisedVAE(
        (6,), n_classes=3, latent_dim=2, hidden=(8,), classifier_hidden=(8,), likelihood=likelihood or NormalLikelihood(scale=0.7)
    )


def test_enumerated_elbo_equals_the_sum_over_classes_by_hand():
    m, x = tiny(), torch.randn(5, 6)
    pyro.set_rng_seed(1)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(m.model, m.guide, x)
    pyro.set_rng_seed(1)  # the same draws of z, one per (class, datum)
    z = poutine.trace(poutine.enum(m.guide, first_available_dim=-2)).get_trace(x).nodes["z"]["value"]
    assert z.shape == (3, 5, 2)
    log_q_y = torch.log_softmax(m.classify(x), -1)  # (5, 3)
    total = torch.zeros(5)
    for c in range(3):
        y = torch.full((5,), c)
        q_z = m.encode(x, y)
        log_joint = math.log(1 / 3) + m.prior().log_prob(z[c]) + m.likelihood(m.decoder(z[c], y)).log_prob(x) - q_z.log_prob(z[c])
        total += log_q_y[:, c].exp() * (log_joint - log_q_y[:, c])
    assert float(loss.detach()) == pytest.approx(-float(total.detach().sum()), rel=1e-5)


def test_enumerated_log_likelihood_is_exact_when_the_decoder_ignores_z():
    m, x = tiny(), torch.randn(4, 6)
    with torch.no_grad():  # p(x | y, z) = p(x | y) and q(z | x, y) = p(z): every importance weight is exact
        m.decoder.input.data.weight.zero_()
        head = m.encoder.rest[-1][-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0] + [math.log(math.expm1(1 - 1e-4))] * 2))
    exact = torch.logsumexp(
        torch.stack([math.log(1 / 3) + m.likelihood(m.decoder(torch.zeros(4, 2), torch.full((4,), c))).log_prob(x) for c in range(3)]),
        0,
    )
    est = enumerated_log_likelihood(m, x, num_samples=7)
    assert est["log_px"].tolist() == pytest.approx(exact.tolist(), rel=1e-5)
    assert (est["elbo"] <= est["log_px"] + 1e-5).all()


def test_balanced_split_and_its_errors():
    y = np.repeat(np.arange(4), 30)
    lab, rest = balanced_labelled_split(y, 10, 4)
    assert np.bincount(y[lab]).tolist() == [3, 3, 2, 2]
    assert len(rest) == 110 and not set(lab) & set(rest)
    with pytest.raises(ConfigError, match="labels must be integers in 0..3"):
        balanced_labelled_split(np.array([0, 1, 4]), 3, 4)
    with pytest.raises(ConfigError, match="between 1 and the 120"):
        balanced_labelled_split(y, 500, 4)
    with pytest.raises(ConfigError, match="class 3 has 1"):
        balanced_labelled_split(np.array([0] * 10 + [1] * 10 + [2] * 10 + [3]), 8, 4)


@pytest.fixture(scope="module")
def digit_sets():
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)
    train = ArrayDataset(x[:1400], y[:1400], binarize=True)
    test = ArrayDataset(x[1400:], y[1400:]).fixed_binarized()
    lab, rest = balanced_labelled_split(train.y.numpy(), 50, 10)
    return train.subset(torch.from_numpy(lab)), train.subset(torch.from_numpy(rest)), test


def test_m2_trains_both_losses_and_classifies_above_chance(digit_sets):
    labelled, unlabelled, test = digit_sets
    m = SemiSupervisedVAE((64,), 10, 8, hidden=(128,), classifier_hidden=(128,))
    obj = SemiSupervisedObjective(alpha=50, labelled_batch_size=50, labelled=labelled)
    xb, yb = labelled.fixed_binarized().x, labelled.y
    xu = unlabelled.fixed_binarized().x[:200]

    def losses():
        with torch.no_grad():
            pyro.set_rng_seed(3)
            return float(obj.eval_loss(m, xu)), float(obj.labelled_loss(m, xb, None, yb))

    before = losses()
    history = fit(m, unlabelled, val=test, objective=obj, epochs=8, batch_size=100, progress=False, device="cpu")
    after = losses()
    assert after[0] < before[0] - 5 * len(xu) and after[1] < before[1] - 5 * len(xb)
    assert accuracy(m.classify, test) > 0.5  # chance is 0.1
    assert "val_accuracy" in history[-1]
    report = kind("semi-supervised").evaluate(m, test, DataSpec("digits", shape=(64,)), num_samples=20)
    assert report["accuracy"] == pytest.approx(accuracy(m.classify, test))
    assert report["log_px"] >= report["elbo"]


def test_supervised_baseline_learns_from_labels_alone(digit_sets):
    labelled, _, test = digit_sets
    clf = make_classifier(64, 10, (128,))
    res = train_classifier(clf, labelled, val=test, steps=300)
    assert accuracy(res["classify"], test) == pytest.approx(res["val_accuracy"])
    assert res["val_accuracy"] > 0.5


def test_conditional_vae_trains_on_labels_and_generates_per_class(digit_sets):
    labelled, unlabelled, test = digit_sets
    m = ConditionalVAE((64,), 10, 4, hidden=(64,))
    history = fit(
        m, unlabelled, val=test, objective=ConditionalObjective(), epochs=15, batch_size=50, lr=3e-3, progress=False, device="cpu"
    )
    assert history[-1]["val_elbo"] > history[0]["val_elbo"]
    grid = m.generate_grid(5)
    assert grid.shape == (50, 64)
    # each row is one class: a classifier trained on real digits mostly reads the row's class (chance: 0.1)
    clf = make_classifier(64, 10, (128,))
    res = train_classifier(clf, unlabelled, steps=300)
    rows = torch.arange(10).repeat_interleave(5)
    assert (res["classify"]((grid > 0.5).float()).argmax(-1) == rows).float().mean() > 0.5
    assert m.style_transfer(test.x[:3], test.y[:3]).shape == (30, 64)
    with pytest.raises(ConfigError, match="needs labels"):
        m.model(test.x[:2])


def test_vamp_prior_is_refused_with_a_reason():
    with pytest.raises(ConfigError, match="VampPrior"):
        SemiSupervisedVAE((6,), 3, 2, prior="vamp")
