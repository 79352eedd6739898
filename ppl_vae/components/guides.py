"""Amortized posterior families: modules mapping the encoder's ``(loc, scale)`` to a distribution
q(z | x) with event shape ``(latent_dim,)``. Registered as guides ("diagonal", "iaf").
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import pyro.distributions.transforms as T
from torch import nn

from ppl_vae.registry import GUIDES


@GUIDES.register("diagonal")
class DiagonalGaussianPosterior(nn.Module):
    """q(z | x) = N(loc(x), diag(scale(x)^2))."""

    def setup(self, latent_dim: int) -> "DiagonalGaussianPosterior":
        return self

    def forward(self, loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(loc, scale).to_event(1)


@GUIDES.register("iaf")
class IAFPosterior(nn.Module):
    """The diagonal Gaussian followed by inverse autoregressive flows (Kingma et al. 2016)."""

    def __init__(self, num_flows: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.num_flows, self.hidden = int(num_flows), int(hidden)

    def setup(self, latent_dim: int) -> "IAFPosterior":
        self.flows = nn.ModuleList([T.affine_autoregressive(latent_dim, hidden_dims=[self.hidden]) for _ in range(self.num_flows)])
        return self

    def forward(self, loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), list(self.flows))


def posterior_point(q: dist.TorchDistribution, loc: torch.Tensor) -> torch.Tensor:
    """The location of q's base pushed through its flows (just loc for a Gaussian)."""
    if isinstance(q, dist.TransformedDistribution):
        for t in q.transforms:
            loc = t(loc)
    return loc
