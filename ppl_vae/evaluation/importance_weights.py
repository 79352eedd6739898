"""Per-datum importance weights log p(x_i, z_s) - log q(z_s | x_i) for any model/guide pair.

One vectorized pass draws S particles for every datum (a ``particles`` plate at dim -2 outside the
``data`` plate at dim -1) and returns weights shaped ``(S, N)``. Pyro's own
``vectorized_importance_weights`` sums over the data plate, which weights the whole batch jointly;
the IWAE objective, the evaluation and the diagnostics all need them per datum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pyro
import torch
from pyro import poutine
from torch import nn


def _sum_sites(trace: Any, include_observed: bool) -> torch.Tensor:
    total: Any = 0.0  # a tensor once a site's log_prob is added
    for site in trace.nodes.values():
        if site["type"] != "sample" or (site["is_observed"] and not include_observed):
            continue
        total = total + site["log_prob"]
    return total


def log_importance_weights(
    model: Callable[..., Any], guide: Callable[..., Any], *args: Any, num_samples: int = 1, **kwargs: Any
) -> torch.Tensor:
    """log w of shape (num_samples, batch) for a model and guide with one data plate at dim -1."""
    with pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    log_w = _sum_sites(model_trace, True) - _sum_sites(guide_trace, False)
    return log_w.expand(num_samples, -1) if log_w.dim() == 2 else log_w


@dataclass
class ModelGuide:
    """A model and guide over (x, mask) with the likelihood that scores x: what the per-datum
    estimators need, when the pair is not a VAE's own (a label held fixed, a re-fitted guide)."""

    model: Callable
    guide: Callable
    likelihood: object


def model_device(module: nn.Module) -> torch.device:
    """Where a model's parameters live (a ``device`` property if it has one, else its first parameter)."""
    device = getattr(module, "device", None)
    return device if device is not None else next(module.parameters()).device


def log_mean_exp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])
