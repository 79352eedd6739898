"""Label-aware VAEs as Pyro programs: the conditional VAE and Kingma et al.'s M2.

* ``ConditionalVAE``: p(x | y) = int p(z) p(x | z, y) dz with q(z | x, y); the label is an input,
  always observed (class-conditional generation).
* ``SemiSupervisedVAE`` (M2): the label is a discrete latent with a uniform prior p(y), observed on
  labelled data and latent otherwise. Its guide's classifier q(y | x) is enumerated in parallel by
  ``TraceEnum_ELBO`` (the guide marks the site ``enumerate="parallel"``), so the unlabelled bound sums
  exactly over classes. Sites: ``y``, ``z``, ``x`` in the plate ``data`` (dim -1).

Any prior and likelihood from the core can be used (not the VampPrior, whose pseudo-inputs go
through an unconditional encoder). The networks concatenate a one-hot label to their input and
broadcast it against enumerated or particle dimensions.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from .likelihoods import as_likelihood
from .nets import _activation, _positive, mlp
from .priors import VampPrior, as_prior
from .registry import ConfigError
from .vae import DiagonalGaussianPosterior


class LabelledInput(nn.Module):
    """Linear(cat(h, one_hot(y))) computed as Linear(h) + Embedding(y): the same map, but the
    data half runs once per datum instead of once per enumerated class."""

    def __init__(self, in_dim: int, n_classes: int, out_dim: int):
        super().__init__()
        self.data = nn.Linear(in_dim, out_dim)
        self.label = nn.Embedding(n_classes, out_dim)
        nn.init.normal_(self.label.weight, std=1 / math.sqrt(in_dim + n_classes))

    def forward(self, h, y):
        return self.data(h) + self.label(y.long())  # broadcasts (N, d) with enumerated (C, 1, d)


class ConditionalEncoder(nn.Module):
    """(x, y) -> (loc, scale) of q(z | x, y): an MLP on (flattened x, one-hot y)."""

    def __init__(self, data_dim: int, n_classes: int, latent_dim: int, hidden: Sequence[int] = (256,),
                 activation: str = "relu"):
        super().__init__()
        sizes = [*hidden, 2 * latent_dim]
        self.input = LabelledInput(data_dim, n_classes, sizes[0])
        self.rest = nn.Sequential(_activation(activation), mlp(sizes, activation)) if hidden else nn.Identity()

    def forward(self, x_flat, y):
        loc, raw = self.rest(self.input(x_flat, y)).chunk(2, -1)
        return loc, _positive(raw)


class ConditionalDecoder(nn.Module):
    """(z, y) -> likelihood parameters shaped (*batch, *out_shape)."""

    def __init__(self, latent_dim: int, n_classes: int, out_shape, hidden: Sequence[int] = (256,),
                 activation: str = "relu"):
        super().__init__()
        self.out_shape = tuple(out_shape)
        sizes = [*hidden, math.prod(self.out_shape)]
        self.input = LabelledInput(latent_dim, n_classes, sizes[0])
        self.rest = nn.Sequential(_activation(activation), mlp(sizes, activation)) if hidden else nn.Identity()

    def forward(self, z, y):
        h = self.rest(self.input(z, y))
        return h.reshape(*h.shape[:-1], *self.out_shape)


class ConditionalVAE(nn.Module):
    """p(x | y) with labels always given: ``ConditionalVAE((784,), n_classes=10, latent_dim=20)``."""

    def __init__(self, data_shape: Sequence[int], n_classes: int, latent_dim: int = 10, prior=None, likelihood=None,
                 hidden: Sequence[int] = (256,), activation: str = "relu"):
        super().__init__()
        if n_classes < 2 or latent_dim < 1:
            raise ConfigError(f"need n_classes >= 2 and latent_dim >= 1, got {n_classes} and {latent_dim}")
        self.data_shape, self.n_classes, self.latent_dim = tuple(data_shape), int(n_classes), int(latent_dim)
        self.likelihood = as_likelihood(likelihood).setup(self.data_shape)
        out_shape = self.likelihood.decoder_output_shape(self.data_shape)
        self.encoder = ConditionalEncoder(math.prod(self.data_shape), n_classes, latent_dim, hidden, activation)
        self.decoder = ConditionalDecoder(latent_dim, n_classes, out_shape, tuple(reversed(hidden)), activation)
        prior = as_prior(prior)
        if isinstance(prior, VampPrior):
            raise ConfigError("the VampPrior needs an unconditional encoder; label-aware VAEs use q(z | x, y): "
                              "choose another prior")
        self.prior = prior.setup(latent_dim, data_shape=self.data_shape)
        self.posterior = DiagonalGaussianPosterior()

    def _flat(self, x):
        return x.flatten(start_dim=x.dim() - len(self.data_shape))

    def encode(self, x, y, mask=None) -> dist.TorchDistribution:
        return self.posterior(*self.encoder(self._flat(self.likelihood.fill_missing(x, mask)), y))

    def decode(self, z, y) -> dist.TorchDistribution:
        return self.likelihood(self.decoder(z, y))

    def model(self, x, mask=None, y=None, beta: float = 1.0):
        if y is None:
            raise ConfigError("the conditional VAE needs labels for every datum")
        x = self.likelihood.fill_missing(x, mask)
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z, y), mask), obs=x)

    def guide(self, x, mask=None, y=None, beta: float = 1.0):
        with pyro.plate("data", x.shape[0], dim=-1), poutine.scale(scale=beta):
            pyro.sample("z", self.encode(x, y, mask))

    @torch.no_grad()
    def generate_grid(self, n_styles: int = 8) -> torch.Tensor:
        """(n_classes * n_styles, *data_shape): one row per class, one column per style z (shared by rows)."""
        z = self.prior().sample((n_styles,))
        y = torch.arange(self.n_classes, device=z.device)
        return self.likelihood.reconstruct(self.decoder(z[None], y[:, None])).reshape(-1, *self.data_shape)

    @torch.no_grad()
    def style_transfer(self, x, y) -> torch.Tensor:
        """(len(x) * n_classes, *data_shape): z's mean from each (x, y), decoded with every class."""
        loc, _ = self.encoder(self._flat(x), y)
        classes = torch.arange(self.n_classes, device=x.device)
        return self.likelihood.reconstruct(self.decoder(loc[:, None], classes[None])).reshape(-1, *self.data_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class SemiSupervisedVAE(ConditionalVAE):
    """M2: ``SemiSupervisedVAE((784,), n_classes=10, latent_dim=50)``; y observed when given, else enumerated."""

    def __init__(self, data_shape: Sequence[int], n_classes: int, latent_dim: int = 10, prior=None, likelihood=None,
                 hidden: Sequence[int] = (256,), classifier_hidden: Sequence[int] = (256,), activation: str = "relu",
                 classifier: Optional[nn.Module] = None):
        super().__init__(data_shape, n_classes, latent_dim, prior, likelihood, hidden, activation)
        self.classifier = classifier if classifier is not None else make_classifier(
            math.prod(self.data_shape), n_classes, classifier_hidden, activation)
        self.register_buffer("y_logits", torch.zeros(n_classes))  # uniform p(y)

    def classify(self, x, mask=None) -> torch.Tensor:
        """Logits of q(y | x), shape (batch, n_classes)."""
        return self.classifier(self._flat(self.likelihood.fill_missing(x, mask)))

    def model(self, x, mask=None, y=None, beta: float = 1.0):
        x = self.likelihood.fill_missing(x, mask)
        with pyro.plate("data", x.shape[0], dim=-1):
            y = pyro.sample("y", dist.Categorical(logits=self.y_logits), obs=y)
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z, y), mask), obs=x)

    def guide(self, x, mask=None, y=None, beta: float = 1.0):
        with pyro.plate("data", x.shape[0], dim=-1):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classify(x, mask)), infer={"enumerate": "parallel"})
            with poutine.scale(scale=beta):
                pyro.sample("z", self.encode(x, y, mask))


def make_classifier(data_dim: int, n_classes: int, hidden: Sequence[int] = (256,), activation: str = "relu") -> nn.Module:
    """The classifier architecture of q(y | x), also used alone by the supervised-only baseline."""
    return mlp([data_dim, *hidden, n_classes], activation)
