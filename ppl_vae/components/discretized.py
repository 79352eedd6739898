"""The discretized logistic mixture likelihood for 8-bit (or any L-level) data, as in PixelCNN++.

Salimans et al. (2017): a level ``x`` in 0..L-1 is mapped to the centre ``c = 2x / (L - 1) - 1`` of a
bin of half-width ``h = 1 / (L - 1)`` in [-1, 1]; each mixture component is a logistic with location
``mu`` and scale ``s``, and the probability of ``x`` is the logistic mass of its bin,
``sigmoid((c + h - mu) / s) - sigmoid((c - h - mu) / s)``, with the edge bins stretched to -inf
(x = 0) and +inf (x = L - 1), so the L probabilities sum to one exactly. Two outputs per entry for
one component (``mu``, ``log s``), three per component for a mixture (weight logit, ``mu``, ``log s``),
instead of the L logits of ``categorical256``. Registered as ``discretized-logistic``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch.distributions import constraints

from ppl_vae.components.likelihoods import Likelihood, is_integer
from ppl_vae.registry import LIKELIHOODS, ConfigError


class DiscretizedLogisticMixture(dist.TorchDistribution):
    """A mixture of K discretized logistics over the levels 0..L-1; parameters shaped (*batch, K)."""

    arg_constraints: dict = {}
    has_enumerate_support = True

    def __init__(
        self, logits: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, levels: int = 256, validate_args: Optional[bool] = None
    ) -> None:
        self.logits, self.loc, self.log_scale = torch.broadcast_tensors(logits, loc, log_scale)
        self.levels = int(levels)
        super().__init__(self.loc.shape[:-1], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> Any:
        return constraints.integer_interval(0, self.levels - 1)

    def component_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log P(x = value) under each component: shape (*broadcast(value, batch), K)."""
        half = 1.0 / (self.levels - 1)
        centre = (value * (2.0 * half) - 1.0).unsqueeze(-1)
        inv_scale = torch.exp(-self.log_scale)
        upper = (centre + half - self.loc) * inv_scale  # a
        lower = (centre - half - self.loc) * inv_scale  # b
        # log(sigmoid(a) - sigmoid(b)) = logsigmoid(a) + logsigmoid(-b) + log(1 - exp(b - a)), stable in both tails
        middle = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-2.0 * half * inv_scale))
        first = F.logsigmoid(upper)  # x = 0: the bin reaches down to -inf
        last = F.logsigmoid(-lower)  # x = L - 1: the bin reaches up to +inf
        v = value.unsqueeze(-1)
        return torch.where(v <= 0, first, torch.where(v >= self.levels - 1, last, middle))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + self.component_log_prob(value), -1)

    def support_probs(self) -> torch.Tensor:
        """P(x = v) for every level v, shape (*batch, levels): differences of the mixture's CDF at the L - 1
        inner bin edges (one sigmoid per edge; what an entropy coder needs for all levels at once)."""
        half = 1.0 / (self.levels - 1)
        inf = torch.tensor([float("inf")], dtype=self.loc.dtype, device=self.loc.device)
        inner = torch.arange(self.levels - 1, dtype=self.loc.dtype, device=self.loc.device) * (2.0 * half) - 1.0 + half
        edges = torch.cat([-inf, inner, inf])  # the edge bins reach to -inf and +inf
        cdf = edges - self.loc.unsqueeze(-1)  # (*batch, K, L + 1), in place from here on
        cdf.mul_(torch.exp(-self.log_scale).unsqueeze(-1)).sigmoid_()
        probs = cdf.diff(dim=-1).mul_(torch.softmax(self.logits, -1).unsqueeze(-1))
        return probs.sum(-2)

    @property
    def mean(self) -> torch.Tensor:
        values = self.enumerate_support(expand=False)
        probs = self.log_prob(values).exp()
        return (probs * values).sum(0)

    @property
    def variance(self) -> torch.Tensor:
        values = self.enumerate_support(expand=False)
        probs = self.log_prob(values).exp()
        return (probs * (values - self.mean) ** 2).sum(0)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        values = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device)
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + tuple(self.batch_shape)) if expand else values

    def sample(self, sample_shape: Union[torch.Size, List[int], Tuple[int, ...]] = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape
            k = dist.Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            loc = torch.gather(self.loc.expand(shape + self.loc.shape[-1:]), -1, k)[..., 0]
            scale = torch.gather(self.log_scale.expand(shape + self.loc.shape[-1:]), -1, k)[..., 0].exp()
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            y = loc + scale * (torch.log(u) - torch.log1p(-u))  # a logistic draw on [-1, 1]'s scale
            return torch.round((y + 1.0) * (self.levels - 1) / 2.0).clamp(0, self.levels - 1)


@LIKELIHOODS.register("discretized-logistic", "dlogistic")
class DiscretizedLogisticLikelihood(Likelihood):
    """A mixture of ``components`` discretized logistics over integer levels 0..``levels``-1 (PixelCNN++)."""

    discrete = True
    support_text = "integer grey levels"
    suggestion = "keep integer levels (data.preprocess = 'levels') and set the likelihood's 'levels' to the number of levels"

    def __init__(self, components: int = 1, levels: int = 256, min_log_scale: float = -7.0) -> None:
        super().__init__()
        if int(components) < 1:
            raise ConfigError(f"discretized-logistic needs components >= 1, got {components}")
        if int(levels) < 2:
            raise ConfigError(f"discretized-logistic needs levels >= 2, got {levels}")
        self.components, self.levels, self.min_log_scale = int(components), int(levels), float(min_log_scale)
        self.n_params = 2 if self.components == 1 else 3 * self.components
        self.support_text = f"integer levels 0..{self.levels - 1}"

    def elementwise(self, params: list) -> dist.TorchDistribution:
        k = self.components
        if k == 1:
            loc, log_scale = params[0].unsqueeze(-1), params[1].unsqueeze(-1)
            logits = torch.zeros_like(loc)
        else:
            stack = torch.stack(params, -1)  # (*batch, 3K)
            logits, loc, log_scale = stack[..., :k], stack[..., k : 2 * k], stack[..., 2 * k :]
        return DiscretizedLogisticMixture(logits, loc, log_scale.clamp_min(self.min_log_scale), self.levels, validate_args=False)

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        return is_integer(x) & (x >= 0) & (x < self.levels)
