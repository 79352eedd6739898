"""Training objectives: a Pyro ELBO plus a beta schedule; subclasses add batch-level penalties.

``Objective.loss(vae, x, mask, step)`` returns a differentiable loss summed over the batch. The
model and guide never change: beta is passed to both as an argument and applied there with
``poutine.scale`` on the latent site (model-only scaling is wrong under Trace_ELBO).

The default ELBO is Trace_ELBO's estimator. When every guide site is reparameterized (the VAE's
Gaussian, IAF and point-mass guides) it is computed by ``reparam_elbo_loss`` from the same Pyro
traces but without Trace_ELBO's per-step ``.item()`` on the surrogate loss (a device-to-host sync
on a GPU): same value and gradients (tests/test_objectives.py). Other guides go through Trace_ELBO.
"""
from __future__ import annotations

from typing import Callable, Union

import contextlib

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample

from .importance import log_importance_weights, log_mean_exp
from .registry import OBJECTIVES, ConfigError


def reparam_elbo_loss(model, guide, *args, num_particles: int = 1, **kwargs):
    """-ELBO from one guide trace replayed through the model (particles vectorized in a plate at dim -2,
    outside the data plate), or None when a guide site cannot be reparameterized."""
    plate = pyro.plate("particles", num_particles, dim=-2) if num_particles > 1 else contextlib.nullcontext()
    with plate:
        guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        if any(site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
               and not getattr(site["fn"], "has_rsample", False) for site in guide_tr.nodes.values()):
            return None
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
    return (guide_tr.log_prob_sum() - model_tr.log_prob_sum()) / num_particles


# ---- beta schedules: step -> beta ------------------------------------------------------------
class ConstantBeta:
    def __init__(self, beta: float = 1.0):
        if beta <= 0:
            raise ConfigError(f"beta must be > 0 (poutine.scale(0) is rejected), got {beta}")
        self.beta = float(beta)

    def __call__(self, step: int) -> float:
        return self.beta


class LinearWarmup(ConstantBeta):
    """beta rises linearly from ``start`` (> 0) to ``beta`` over ``warmup_steps``, then stays."""

    def __init__(self, beta: float = 1.0, warmup_steps: int = 1000, start: float = 1e-3):
        super().__init__(beta)
        if start <= 0:
            raise ConfigError(f"a warm-up must start above 0, got start={start}")
        self.warmup_steps, self.start = max(int(warmup_steps), 1), float(start)

    def __call__(self, step: int) -> float:
        t = min(step / self.warmup_steps, 1.0)
        return self.start + t * (self.beta - self.start)


class CyclicalBeta(LinearWarmup):
    """Cyclical annealing (Fu et al. 2019): each period rises for ``ratio`` of it, then holds beta."""

    def __init__(self, beta: float = 1.0, period: int = 1000, ratio: float = 0.5, start: float = 1e-3):
        super().__init__(beta, max(int(period * ratio), 1), start)
        self.period = max(int(period), 1)

    def __call__(self, step: int) -> float:
        return super().__call__(step % self.period)


SCHEDULES = {"constant": ConstantBeta, "linear": LinearWarmup, "cyclical": CyclicalBeta}


def make_schedule(beta: Union[float, Callable[[int], float]] = 1.0, schedule: str = "constant", **kwargs):
    if callable(beta):
        return beta
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown beta schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[schedule](beta, **kwargs)


# ---- objectives -----------------------------------------------------------------------------
@OBJECTIVES.register("elbo")
class Objective:
    """The (beta-)ELBO estimated by a Pyro ELBO (``Trace_ELBO`` unless ``analytic_kl``).

    ``loss_at(vae, x, mask, beta)`` is the loss as a function of beta alone; ``loss`` evaluates it at
    the schedule's beta. Objectives of that form are ``traceable`` (see ``ppl_vae.tracing``).
    """

    traceable = True

    def __init__(self, num_particles: int = 1, beta=1.0, schedule: str = "constant", analytic_kl: bool = False,
                 pyro_elbo: bool = False, **schedule_args):
        if num_particles < 1:
            raise ConfigError(f"num_particles must be >= 1, got {num_particles}")
        cls = TraceMeanField_ELBO if analytic_kl else Trace_ELBO
        self.elbo = cls(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
        self.num_particles = int(num_particles)
        self.fast = not analytic_kl and not pyro_elbo  # pyro_elbo=True: always through Trace_ELBO itself
        self.beta = make_schedule(beta, schedule, **schedule_args)

    def _elbo_loss(self, vae, x, mask, beta) -> torch.Tensor:
        if self.fast:
            loss = reparam_elbo_loss(vae.model, vae.guide, x, mask, beta=beta, num_particles=self.num_particles)
            if loss is not None:
                return loss
        return self.elbo.differentiable_loss(vae.model, vae.guide, x, mask, beta=beta)

    def loss_at(self, vae, x, mask, beta) -> torch.Tensor:
        """The loss at a given beta (a float or a 0-dim tensor), summed over the batch."""
        return self._elbo_loss(vae, x, mask, beta)

    def loss(self, vae, x, mask=None, step: int = 0) -> torch.Tensor:
        """The training loss, summed over the batch."""
        return self.loss_at(vae, x, mask, self.beta(step))

    def eval_loss(self, vae, x, mask=None) -> torch.Tensor:
        """The negative bound itself (beta = 1, no penalties), summed over the batch: for validation."""
        return self._elbo_loss(vae, x, mask, 1.0)


@OBJECTIVES.register("meanfield")
class MeanFieldObjective(Objective):
    """The ELBO with the KL term in closed form where Pyro knows it (TraceMeanField_ELBO)."""

    def __init__(self, num_particles: int = 1, beta=1.0, schedule: str = "constant", **schedule_args):
        super().__init__(num_particles, beta, schedule, analytic_kl=True, **schedule_args)


@OBJECTIVES.register("iwae")
class IWAEObjective(Objective):
    """The importance-weighted bound (Burda et al. 2016) with K particles per datum."""

    def __init__(self, num_particles: int = 5, beta=1.0, schedule: str = "constant", **schedule_args):
        super().__init__(1, beta, schedule, **schedule_args)
        self.k = int(num_particles)

    def loss_at(self, vae, x, mask, beta):
        log_w = log_importance_weights(vae.model, vae.guide, x, mask, beta=beta, num_samples=self.k)
        return -log_mean_exp(log_w, 0).sum()

    def eval_loss(self, vae, x, mask=None):
        return self.loss_at(vae, x, mask, 1.0)


def as_objective(objective) -> Objective:
    """An Objective from an Objective, a registered name, None (the ELBO), or any object with
    ``loss(vae, x, mask, step)`` and ``eval_loss(vae, x, mask)`` (summed over the batch)."""
    if callable(getattr(objective, "loss", None)) and callable(getattr(objective, "eval_loss", None)):
        return objective
    return OBJECTIVES.resolve(objective, Objective, Objective)
