"""Priors p(z): modules whose call returns a Pyro distribution with event shape (latent_dim,).

A prior is built without knowing the latent size (``MixtureOfGaussiansPrior(k=10)``);
the VAE calls ``setup(latent_dim, encoder=..., data_shape=...)`` once, which creates
any learned parameters. ``as_prior`` also accepts a plain ``pyro.distributions``
object or a callable returning one, so a user's own prior swaps in with one line.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Union, cast

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn

from ppl_vae.registry import PRIORS, ConfigError


class Prior(nn.Module):
    """Base class. Subclasses implement ``_build`` (parameters) and ``forward`` (the distribution)."""

    latent_dim: Optional[int] = None
    _anchor: torch.Tensor  # a buffer registered by the subclasses that call _zeros()

    def setup(self, latent_dim: int, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> "Prior":
        self.latent_dim = int(latent_dim)
        self._build(encoder=encoder, data_shape=data_shape)
        return self

    def _build(self, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> None:
        pass

    def _zeros(self) -> torch.Tensor:
        # A tensor on the module's device (buffers follow .to()).
        if self.latent_dim is None:
            raise ConfigError(f"{type(self).__name__} has no latent size yet: call setup(latent_dim) first")
        return self._anchor.new_zeros(self.latent_dim)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class _Anchored(Prior):
    """A prior without parameters still needs to know its device: keep an empty buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)


@PRIORS.register("standard-normal", "normal")
class StandardNormalPrior(_Anchored):
    """N(0, I)."""

    def forward(self) -> dist.Distribution:
        zero = self._zeros()
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)


@PRIORS.register("learned-normal", "diagonal-gaussian")
class DiagonalGaussianPrior(Prior):
    """N(mu, diag(sigma^2)) with learned mu and sigma."""

    def _build(self, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> None:
        assert self.latent_dim is not None  # set by setup(), the only caller
        self.loc = nn.Parameter(torch.zeros(self.latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


@PRIORS.register("mixture", "mog")
class MixtureOfGaussiansPrior(Prior):
    """A mixture of K learned diagonal Gaussians with learned weights."""

    def __init__(self, k: int = 10, init_spread: float = 1.0) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"MixtureOfGaussiansPrior needs k >= 1 components, got {k}")
        self.k, self.init_spread = int(k), float(init_spread)

    def _build(self, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> None:
        assert self.latent_dim is not None  # set by setup(), the only caller
        self.logits = nn.Parameter(torch.zeros(self.k))
        self.locs = nn.Parameter(self.init_spread * torch.randn(self.k, self.latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(self.k, self.latent_dim))

    def forward(self) -> dist.Distribution:
        components = dist.Normal(self.locs, self.log_scales.exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), components)


@PRIORS.register("vamp", "vampprior")
class VampPrior(Prior):
    """VampPrior (Tomczak & Welling 2018): a uniform mixture of q(z | u_k) over learned pseudo-inputs u_k."""

    encoder: nn.Module  # kept in __dict__ by _build, not registered as a submodule

    def __init__(self, n_pseudo: int = 50) -> None:
        super().__init__()
        self.n_pseudo = int(n_pseudo)

    def _build(self, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> None:
        if encoder is None or data_shape is None:
            raise ConfigError("VampPrior needs the VAE's encoder and data shape: build it through VAE(prior=VampPrior())")
        # Stored as a plain attribute (not a submodule) so the encoder's parameters belong
        # to the VAE once, not twice.
        self.__dict__["encoder"] = encoder
        self.pseudo_inputs = nn.Parameter(0.5 + 0.05 * torch.randn(self.n_pseudo, *data_shape))

    def forward(self) -> dist.Distribution:
        loc, scale = self.encoder(self.pseudo_inputs)
        weights = loc.new_zeros(self.n_pseudo)
        return dist.MixtureSameFamily(dist.Categorical(logits=weights), dist.Normal(loc, scale).to_event(1))


@PRIORS.register("flow")
class FlowPrior(Prior):
    """A normalizing-flow prior: N(0, I) pushed through learned Pyro transforms.

    ``kind`` is "spline" (neural spline coupling, default) or "affine" (affine autoregressive).
    """

    def __init__(self, num_flows: int = 2, kind: str = "spline", hidden: int = 64) -> None:
        super().__init__()
        if kind not in ("spline", "affine"):
            raise ConfigError(f"FlowPrior kind must be 'spline' or 'affine', got '{kind}'")
        self.num_flows, self.kind, self.hidden = int(num_flows), kind, int(hidden)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def _build(self, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> None:
        d = self.latent_dim
        assert d is not None  # set by setup(), the only caller
        if self.kind == "spline" and d < 2:
            raise ConfigError("FlowPrior(kind='spline') couples dimensions and needs latent_dim >= 2; use kind='affine'")
        make = (
            (lambda: T.spline_coupling(d, hidden_dims=[self.hidden]))
            if self.kind == "spline"
            else (lambda: T.affine_autoregressive(d, hidden_dims=[self.hidden]))
        )
        self.transforms = nn.ModuleList([make() for _ in range(self.num_flows)])
        # Reverse the order between flows so every dimension gets transformed.
        self._perm = torch.arange(d - 1, -1, -1)

    def forward(self) -> dist.Distribution:
        zero = self._zeros()
        base = dist.Normal(zero, torch.ones_like(zero)).to_event(1)
        parts: List[Any] = []  # Pyro transforms (the flows are also modules)
        for i, t in enumerate(self.transforms):
            parts.append(t)
            if i < len(self.transforms) - 1:
                parts.append(T.Permute(self._perm.to(zero.device)))
        return dist.TransformedDistribution(base, parts)


@PRIORS.register("student-t")
class StudentTPrior(_Anchored):
    """Independent Student-t(df) latents: a heavy-tailed prior."""

    def __init__(self, df: float = 3.0) -> None:
        super().__init__()
        if df <= 0:
            raise ConfigError(f"StudentTPrior needs df > 0, got {df}")
        self.df = float(df)

    def forward(self) -> dist.Distribution:
        zero = self._zeros()
        return dist.StudentT(torch.full_like(zero, self.df), zero, torch.ones_like(zero)).to_event(1)


@PRIORS.register("laplace")
class LaplacePrior(_Anchored):
    """Independent Laplace(0, b) latents with b = 1/sqrt(2) (unit variance)."""

    def forward(self) -> dist.Distribution:
        zero = self._zeros()
        return dist.Laplace(zero, torch.full_like(zero, 1 / math.sqrt(2))).to_event(1)


class CallablePrior(Prior):
    """Wraps a user's distribution, or a callable returning one, as a prior."""

    def __init__(self, fn: Union[dist.Distribution, Callable[[], dist.Distribution]]) -> None:
        super().__init__()
        self.fn = fn

    def _build(self, encoder: Optional[nn.Module] = None, data_shape: Optional[Sequence[int]] = None) -> None:
        d = cast(dist.TorchDistribution, self.forward())  # event_shape: a pyro distribution is a torch one
        if tuple(d.event_shape) != (self.latent_dim,):
            raise ConfigError(
                f"the prior's distribution has event_shape {tuple(d.event_shape)} but the VAE expects "
                f"({self.latent_dim},); use .to_event(1) on a batch of {self.latent_dim} independent parts"
            )

    def forward(self) -> dist.Distribution:
        return self.fn() if callable(self.fn) and not isinstance(self.fn, dist.Distribution) else self.fn


def as_prior(prior: Any) -> Prior:
    """A Prior from a Prior, a registered name, None (N(0, I)), a distribution, or a callable returning one."""
    if isinstance(prior, dist.Distribution) or (callable(prior) and not isinstance(prior, (Prior, str))):
        return CallablePrior(prior)
    return PRIORS.resolve(prior, Prior, StandardNormalPrior)
