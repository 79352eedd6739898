"""The VAE: a generative ``model`` and an amortized ``guide``, both ordinary Pyro programs.

Sites: latent ``z`` and observation ``x`` inside one plate ``data`` (dim -1). Everything
swappable is a constructor argument: prior, likelihood, encoder, decoder, posterior family.
The VAE owns its parameters as an ``nn.Module`` (no global param store), so two VAEs in one
process never share or clobber each other. It knows nothing of training, files or the CLI.
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro import poutine
from torch import nn

from .likelihoods import as_likelihood
from .nets import MLPDecoder, MLPEncoder, check_decoder, check_encoder
from .priors import as_prior
from .registry import GUIDES, ConfigError

_ids = itertools.count()


@GUIDES.register("diagonal")
class DiagonalGaussianPosterior(nn.Module):
    """q(z | x) = N(loc(x), diag(scale(x)^2))."""

    def setup(self, latent_dim: int) -> "DiagonalGaussianPosterior":
        return self

    def forward(self, loc, scale) -> dist.TorchDistribution:
        return dist.Normal(loc, scale).to_event(1)


@GUIDES.register("iaf")
class IAFPosterior(nn.Module):
    """The diagonal Gaussian followed by inverse autoregressive flows (Kingma et al. 2016)."""

    def __init__(self, num_flows: int = 2, hidden: int = 64):
        super().__init__()
        self.num_flows, self.hidden = int(num_flows), int(hidden)

    def setup(self, latent_dim: int) -> "IAFPosterior":
        self.flows = nn.ModuleList(
            [T.affine_autoregressive(latent_dim, hidden_dims=[self.hidden]) for _ in range(self.num_flows)]
        )
        return self

    def forward(self, loc, scale) -> dist.TorchDistribution:
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), list(self.flows))


class VAE(nn.Module):
    """A VAE as a Pyro program. ``VAE((784,), 10, prior=MixtureOfGaussiansPrior(k=10))``.

    Args:
        data_shape: shape of one datum, e.g. ``(784,)`` or ``(1, 28, 28)``.
        latent_dim: size of z.
        prior, likelihood: objects, registered names, or (prior) a distribution; defaults N(0, I) and Bernoulli.
        encoder, decoder: ``nn.Module``s meeting the contract in ``ppl_vae.nets``; default MLPs with ``hidden``.
        posterior: "diagonal" (default), "iaf", or a module mapping (loc, scale) to a distribution.
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int = 10, prior=None, likelihood=None,
                 encoder: Optional[nn.Module] = None, decoder: Optional[nn.Module] = None,
                 posterior="diagonal", hidden: Sequence[int] = (256,)):
        super().__init__()
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
        self.data_shape, self.latent_dim = tuple(int(s) for s in data_shape), int(latent_dim)
        self.likelihood = as_likelihood(likelihood).setup(self.data_shape)
        out_shape = self.likelihood.decoder_output_shape(self.data_shape)
        self.encoder = encoder if encoder is not None else MLPEncoder(self.data_shape, latent_dim, hidden)
        self.decoder = decoder if decoder is not None else MLPDecoder(latent_dim, out_shape, tuple(reversed(hidden)))
        check_encoder(self.encoder, self.data_shape, latent_dim)
        check_decoder(self.decoder, latent_dim, out_shape)
        self.prior = as_prior(prior).setup(latent_dim, encoder=self.encoder, data_shape=self.data_shape)
        posterior = GUIDES.build(posterior) if isinstance(posterior, str) else posterior
        self.posterior = posterior.setup(latent_dim) if hasattr(posterior, "setup") else posterior
        self.pyro_name = f"vae{next(_ids)}"
        self.use_param_store = False  # set True to train with pyro's SVI + pyro.optim

    # ---- the Pyro program -------------------------------------------------------------------
    def model(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, beta: float = 1.0):
        """p(x, z) = p(z) p(x | decoder(z)); ``beta`` scales the latent site (with the guide)."""
        if self.use_param_store:
            pyro.module(self.pyro_name, self)
        x = self.likelihood.fill_missing(x, mask)
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z), mask), obs=x)
        return z

    def guide(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, beta: float = 1.0):
        """q(z | x): the encoder's amortized posterior."""
        if self.use_param_store:
            pyro.module(self.pyro_name, self)
        with pyro.plate("data", x.shape[0], dim=-1):
            with poutine.scale(scale=beta):
                return pyro.sample("z", self.encode(x, mask))

    # ---- conveniences for evaluation and plots ----------------------------------------------
    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dist.TorchDistribution:
        return self.posterior(*self.encoder(self.likelihood.fill_missing(x, mask)))

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        return self.likelihood(self.decoder(z))

    def reconstruct(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Point reconstruction from the posterior mean of z (for flows: the base mean pushed through)."""
        loc, scale = self.encoder(self.likelihood.fill_missing(x, mask))
        z = self._posterior_mean(loc, scale)
        return self.likelihood.reconstruct(self.decoder(z))

    def embed(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The representation used by plots and metrics: the posterior mean of z."""
        loc, scale = self.encoder(self.likelihood.fill_missing(x, mask))
        return self._posterior_mean(loc, scale)

    def _posterior_mean(self, loc, scale):
        return _flow_point(self.posterior(loc, scale), loc)

    def generate(self, n: int, mean: bool = True) -> torch.Tensor:
        """n new data: z from the prior, then the likelihood's point prediction (or a sample)."""
        z = self.prior().sample((n,))
        params = self.decoder(z)
        return self.likelihood.reconstruct(params) if mean else self.likelihood(params).sample()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def _flow_point(q, loc):
    """The location of q's base pushed through its flows (just loc for a Gaussian)."""
    if isinstance(q, dist.TransformedDistribution):
        for t in q.transforms:
            loc = t(loc)
    return loc
