"""Likelihoods p(x | decoder output).

The decoder returns a tensor whose trailing shape is ``likelihood.decoder_output_shape(data_shape)``:
``(k * C, *rest)`` for data of shape ``(C, *rest)``, where ``k = likelihood.n_params`` is the number
of parameters per entry (1 for Bernoulli logits, 2 for a Normal with predicted scale, 256 for a
categorical over grey levels). The likelihood reshapes it, builds an element-wise distribution, masks
the unobserved entries (so they contribute nothing: imputation), and returns a distribution whose
event shape is the datum's shape.

Each likelihood knows its support: ``check_support(x, mask)`` raises a one-line ``DataSupportError``
that says what is wrong and which likelihood or preprocessing would fit.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional, Sequence, Tuple, Union

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from ppl_vae.registry import LIKELIHOODS, ConfigError


class DataSupportError(ConfigError):
    """Data outside the likelihood's support."""


def is_integer(x: torch.Tensor) -> torch.Tensor:
    return x == torch.round(x)


class Likelihood(nn.Module):
    """Base class: subclasses set ``n_params`` and implement ``elementwise`` and ``in_support``."""

    n_params = 1
    discrete = False  # log p(x) is a log probability mass (bits/dim need no dequantization term)
    support_text = "real numbers"
    suggestion = ""
    fill_value = 0.0  # stands in for unobserved entries; must lie in the support

    @classmethod
    def data_defaults(cls, meta: dict) -> dict:
        """Constructor arguments taken from the data's metadata when a recipe does not give them
        (a table's column types, say); none by default."""
        return {}

    def setup(self, data_shape: Sequence[int]) -> "Likelihood":
        self.data_shape = tuple(int(s) for s in data_shape)
        self._build()
        return self

    def _build(self) -> None:
        pass

    @property
    def name(self) -> str:
        return type(self).__name__

    def decoder_output_shape(self, data_shape: Optional[Sequence[int]] = None) -> tuple:
        shape = tuple(data_shape or self.data_shape)
        return (self.n_params * shape[0],) + shape[1:]

    def split(self, params: torch.Tensor) -> list:
        """Decoder output -> list of ``n_params`` tensors, each shaped batch + data_shape."""
        nd = len(self.data_shape)
        batch = params.shape[:-nd]
        if self.n_params == 1:  # a view: no unbind, whose backward would copy the whole output
            return [params.reshape(*batch, *self.data_shape)]
        return list(params.reshape(*batch, self.n_params, *self.data_shape).unbind(-nd - 1))

    def elementwise(self, params: list) -> dist.TorchDistribution:
        raise NotImplementedError

    def forward(self, params: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dist.TorchDistribution:
        d = self.elementwise(self.split(params))
        if mask is not None:
            d = d.mask(mask)
        return d.to_event(len(self.data_shape))

    def reconstruct(self, params: torch.Tensor) -> torch.Tensor:
        """A point prediction in data space (the mean, or the mode where the mean is not a datum)."""
        return self.elementwise(self.split(params)).mean

    # ---- support ---------------------------------------------------------------------------
    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x, dtype=torch.bool)

    def init_from_data(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Start learned parameters from the training data (called by ``fit`` on a model's first step); default: nothing."""

    def fill_missing(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Replace unobserved entries by a value in the support (NaN there would poison gradients)."""
        if mask is None:
            return x
        return torch.where(mask, x, torch.full_like(x, self.fill_value))

    def check_support(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        observed = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.bool().expand_as(x)
        finite = torch.isfinite(x)
        n_bad = int((observed & ~finite).sum())
        if n_bad:
            raise DataSupportError(
                f"data contain {n_bad} NaN/inf values at observed entries; remove them, or mark them "
                f"missing with a mask (tables: leave the cell empty)"
            )
        x = torch.where(observed, x, torch.full_like(x, self.fill_value))
        bad = observed & ~self.in_support(x)
        if bool(bad.any()):
            example = float(x[bad].flatten()[0])
            hint = f"; {self.suggestion}" if self.suggestion else ""
            raise DataSupportError(
                f"{self.name} needs {self.support_text}, but {int(bad.sum())} entries are not (e.g. {example:g}){hint}"
            )


class _BernoulliEvent(dist.Independent):
    """Independent Bernoulli(logits) whose log_prob negates after summing over the event, not before:
    the same value as ``Bernoulli(logits).to_event(n)`` with one fewer full-size op forward and backward."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, target = torch.broadcast_tensors(self.base_dist.logits, value)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return -bce.sum(tuple(range(-self.reinterpreted_batch_ndims, 0)))


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli on binary data, parameterized by logits."""

    discrete = True
    support_text = "binary data (0 or 1)"
    suggestion = (
        "binarize the data (data.preprocess = 'binarize' or 'binarize-fixed') or use "
        "'continuous-bernoulli' or 'categorical256' for grey levels"
    )

    def elementwise(self, params: list) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=params[0], validate_args=False)

    def forward(self, params: torch.Tensor, mask: Optional[torch.Tensor] = None) -> dist.TorchDistribution:
        if mask is not None:
            return super().forward(params, mask)
        return _BernoulliEvent(self.elementwise(self.split(params)), len(self.data_shape))

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x == 0) | (x == 1)


@LIKELIHOODS.register("continuous-bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019): a proper density on [0, 1]."""

    support_text = "values in [0, 1]"
    suggestion = "scale the data to [0, 1] (data.preprocess = 'scale')"
    fill_value = 0.5

    def elementwise(self, params: list) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=params[0], validate_args=False)

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x >= 0) & (x <= 1)


class _LocScaleLikelihood(Likelihood):
    """Shared scale handling: a fixed number, 'shared' (one learned), 'feature' (one per entry), 'decoder'."""

    family: ClassVar[Any] = None  # a pyro.distributions class called as family(loc, scale); set by subclasses
    scale_modes = ("shared", "feature", "decoder")
    fixed_scale: torch.Tensor  # a buffer, registered by _build for a fixed numeric scale

    def __init__(self, scale: Union[str, float] = "feature", min_scale: float = 1e-3) -> None:
        super().__init__()
        if not isinstance(scale, (int, float)) and scale not in self.scale_modes:
            raise ConfigError(f"{type(self).__name__} scale must be a positive number or one of {self.scale_modes}, got {scale!r}")
        if isinstance(scale, (int, float)) and scale <= 0:
            raise ConfigError(f"{type(self).__name__} scale must be positive, got {scale}")
        self.scale_mode = scale
        self.min_scale = float(min_scale)
        self.n_params = 2 if scale == "decoder" else 1

    def _build(self) -> None:
        if self.scale_mode == "shared":
            self.log_scale = nn.Parameter(torch.zeros(()))
        elif self.scale_mode == "feature":
            self.log_scale = nn.Parameter(torch.zeros(self.data_shape))
        elif isinstance(self.scale_mode, (int, float)):
            self.register_buffer("fixed_scale", torch.tensor(float(self.scale_mode)))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """A learned scale ('shared' or 'feature') that still holds its initial value starts at the data's
        spread (``spread``: the scale that fits the data best about their centre), not at 1, which is far
        too wide for data in [0, 1]. Entries that never vary get a floor of 1% of the overall spread."""
        log_scale = getattr(self, "log_scale", None)
        if log_scale is None or bool(log_scale.ne(0).any()):  # fixed, predicted, or already trained
            return
        observed = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.bool().expand_as(x)
        values = torch.where(observed, x, torch.nan)
        overall = self.spread(values.flatten()[None]).squeeze(0)
        per = overall if self.scale_mode == "shared" else self.spread(values.flatten(1).T).reshape(self.data_shape)
        floor = torch.clamp(0.01 * overall, min=2 * self.min_scale)
        target = torch.nan_to_num(per, nan=float(floor)).clamp(min=floor)
        log_scale.copy_((target - self.min_scale).log().to(log_scale.dtype).expand_as(log_scale))

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """Per row of ``values`` (NaN = missing): the maximum-likelihood scale about the centre (Normal: the SD)."""
        centre = values.nanmean(-1, keepdim=True)
        return (values - centre).pow(2).nanmean(-1).sqrt()

    def scale(self, params: list) -> torch.Tensor:
        if self.scale_mode == "decoder":
            return F.softplus(params[1]) + self.min_scale
        if isinstance(self.scale_mode, (int, float)):
            return self.fixed_scale.expand_as(params[0])
        return (self.log_scale.exp() + self.min_scale).expand_as(params[0])

    def elementwise(self, params: list) -> dist.TorchDistribution:
        return self.family(params[0], self.scale(params), validate_args=False)

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(x)


@LIKELIHOODS.register("normal", "gaussian")
class NormalLikelihood(_LocScaleLikelihood):
    """Normal with decoder mean; scale fixed, learned (shared or per feature) or predicted."""

    family = dist.Normal


@LIKELIHOODS.register("laplace")
class LaplaceLikelihood(_LocScaleLikelihood):
    """Laplace with decoder location: robust to outliers."""

    family = dist.Laplace

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """The Laplace scale's maximum-likelihood estimate: the mean absolute deviation from the median."""
        centre = values.nanmedian(-1, keepdim=True).values
        return (values - centre).abs().nanmean(-1)


@LIKELIHOODS.register("student-t")
class StudentTLikelihood(_LocScaleLikelihood):
    """Student-t with fixed degrees of freedom: heavy tails."""

    def __init__(self, df: float = 3.0, scale: Union[str, float] = "feature", min_scale: float = 1e-3) -> None:
        super().__init__(scale=scale, min_scale=min_scale)
        self.df = float(df)

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """The Student-t scale whose variance matches the data's (df > 2), else the Normal one."""
        sd = super().spread(values)
        return sd * math.sqrt((self.df - 2) / self.df) if self.df > 2 else sd

    def elementwise(self, params: list) -> dist.TorchDistribution:
        loc = params[0]
        return dist.StudentT(torch.full_like(loc, self.df), loc, self.scale(params), validate_args=False)


@LIKELIHOODS.register("beta")
class BetaLikelihood(Likelihood):
    """Beta on (0, 1) with both concentrations from the decoder."""

    n_params = 2
    support_text = "values strictly inside (0, 1)"
    suggestion = "squeeze the data away from 0 and 1 (data.preprocess = 'squeeze') or use 'continuous-bernoulli'"
    fill_value = 0.5

    def elementwise(self, params: list) -> dist.TorchDistribution:
        return dist.Beta(F.softplus(params[0]) + 1e-3, F.softplus(params[1]) + 1e-3, validate_args=False)

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0) & (x < 1)


@LIKELIHOODS.register("categorical256", "categorical")
class Categorical256Likelihood(Likelihood):
    """A categorical over the 256 grey levels of 8-bit data (integers 0..255)."""

    discrete = True
    levels = 256
    n_params = 256
    support_text = "integer grey levels 0..255"
    suggestion = "keep 8-bit levels (data.preprocess = 'levels')"

    def split(self, params: torch.Tensor) -> list:
        nd = len(self.data_shape)
        batch = params.shape[:-nd]
        # (.., 256 * C, H, W) -> (.., C, H, W, 256): the levels become the categorical's last axis.
        return [params.reshape(*batch, self.levels, *self.data_shape).movedim(-nd - 1, -1)]

    def elementwise(self, params: list) -> dist.TorchDistribution:
        return dist.Categorical(logits=params[0], validate_args=False)

    def reconstruct(self, params: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.split(params)[0], -1)
        return (probs * torch.arange(self.levels, device=probs.device, dtype=probs.dtype)).sum(-1)

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return is_integer(x) & (x >= 0) & (x < self.levels)


class _CountLikelihood(Likelihood):
    discrete = True
    support_text = "non-negative integer counts"
    suggestion = "round or count the data first; for real values use 'normal'"

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return is_integer(x) & (x >= 0)


@LIKELIHOODS.register("poisson")
class PoissonLikelihood(_CountLikelihood):
    """Poisson counts with log-rate from the decoder."""

    def elementwise(self, params: list) -> dist.TorchDistribution:
        return dist.Poisson(params[0].clamp(max=20).exp() + 1e-8, validate_args=False)


@LIKELIHOODS.register("negative-binomial", "nb")
class NegativeBinomialLikelihood(_CountLikelihood):
    """Negative binomial with log-mean from the decoder and a learned dispersion per feature."""

    def _build(self) -> None:
        self.log_dispersion = nn.Parameter(torch.zeros(self.data_shape))

    def _nb(self, log_mu: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        theta = self.log_dispersion.exp().expand_as(log_mu)
        # mean = theta * exp(logits) = mu  <=>  logits = log mu - log theta
        return theta, log_mu - self.log_dispersion

    def elementwise(self, params: list) -> dist.TorchDistribution:
        total, logits = self._nb(params[0])
        return dist.NegativeBinomial(total_count=total, logits=logits, validate_args=False)


@LIKELIHOODS.register("zinb", "zero-inflated-negative-binomial")
class ZeroInflatedNegativeBinomialLikelihood(NegativeBinomialLikelihood):
    """Zero-inflated negative binomial: decoder gives log-mean and the zero gate's logit."""

    n_params = 2

    def elementwise(self, params: list) -> dist.TorchDistribution:
        total, logits = self._nb(params[0])
        return dist.ZeroInflatedNegativeBinomial(total_count=total, logits=logits, gate_logits=params[1], validate_args=False)


def bits_per_dim(log_px: torch.Tensor, n_dims: float, discrete: bool, bin_width: float = 1 / 255) -> torch.Tensor:
    """-log2 p(x) per dimension. A density on quantized data (grey levels scaled by ``bin_width``)
    is turned into a probability of the quantization bin: add -log2(bin_width) per dimension (the
    usual dequantization convention). Discrete likelihoods need no correction."""
    bpd = -log_px / (n_dims * math.log(2))
    return bpd if discrete else bpd - math.log2(bin_width)


def as_likelihood(likelihood: Any) -> Likelihood:
    """A Likelihood from a Likelihood, a registered name, or None (Bernoulli)."""
    return LIKELIHOODS.resolve(likelihood, Likelihood, BernoulliLikelihood)


__all__ = [n for n in dir() if n.endswith("Likelihood")] + ["DataSupportError", "bits_per_dim", "as_likelihood"]
