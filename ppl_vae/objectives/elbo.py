"""The ELBO objectives: a Pyro ELBO plus a beta schedule (``elbo``, ``meanfield``, ``iwae``).

``Objective.loss(vae, x, mask, step)`` returns a differentiable loss summed over the batch. The
model and guide never change: beta is passed to both as an argument and applied there with
``poutine.scale`` on the latent site (model-only scaling is wrong under Trace_ELBO).

The default ELBO is Trace_ELBO's estimator. When every guide site is reparameterized (the VAE's
Gaussian, IAF and point-mass guides) it is computed by ``reparam_elbo_loss`` from the same Pyro
traces but without Trace_ELBO's per-step ``.item()`` on the surrogate loss (a device-to-host sync
on a GPU): same value and gradients (tests/test_objectives.py). Other guides go through Trace_ELBO.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Union, cast

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample

from ppl_vae.evaluation.importance_weights import log_importance_weights, log_mean_exp
from ppl_vae.objectives.base import Objective
from ppl_vae.objectives.schedules import make_schedule
from ppl_vae.schema import PositiveInt, checked
from ppl_vae.registry import OBJECTIVES


def reparam_elbo_loss(
    model: Callable[..., Any], guide: Callable[..., Any], *args: Any, num_particles: int = 1, **kwargs: Any
) -> Optional[torch.Tensor]:
    """-ELBO from one guide trace replayed through the model (particles vectorized in a plate at dim -2,
    outside the data plate), or None when a guide site cannot be reparameterized."""
    plate = pyro.plate("particles", num_particles, dim=-2) if num_particles > 1 else contextlib.nullcontext()
    with plate:
        guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        if any(
            site["type"] == "sample"
            and not site["is_observed"]
            and not site_is_subsample(site)
            and not getattr(site["fn"], "has_rsample", False)
            for site in guide_tr.nodes.values()
        ):
            return None
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
    # log_prob_sum() is a float only for a trace without sample sites; the model always has x
    return cast(torch.Tensor, (guide_tr.log_prob_sum() - model_tr.log_prob_sum()) / num_particles)


@OBJECTIVES.register("elbo")
class ELBOObjective(Objective):
    """The (beta-)ELBO estimated by a Pyro ELBO (``Trace_ELBO`` unless ``analytic_kl``).

    ``loss_at(vae, x, mask, beta)`` is the loss as a function of beta alone; ``loss`` evaluates it at
    the schedule's beta. Objectives of that form are ``traceable`` (see ``ppl_vae.training.tracing``).
    """

    traceable = True

    @checked
    def __init__(
        self,
        num_particles: PositiveInt = 1,
        beta: Union[float, Callable[[int], float]] = 1.0,
        schedule: str = "constant",
        analytic_kl: bool = False,
        pyro_elbo: bool = False,
        **schedule_args: Any,
    ) -> None:
        cls = TraceMeanField_ELBO if analytic_kl else Trace_ELBO
        self.elbo = cls(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
        self.num_particles = int(num_particles)
        self.fast = not analytic_kl and not pyro_elbo  # pyro_elbo=True: always through Trace_ELBO itself
        self.beta = make_schedule(beta, schedule, **schedule_args)

    def _elbo_loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], beta: Union[float, torch.Tensor]) -> torch.Tensor:
        if self.fast:
            loss = reparam_elbo_loss(vae.model, vae.guide, x, mask, beta=beta, num_particles=self.num_particles)
            if loss is not None:
                return loss
        return self.elbo.differentiable_loss(vae.model, vae.guide, x, mask, beta=beta)

    def loss_at(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], beta: Union[float, torch.Tensor]) -> torch.Tensor:
        """The loss at a given beta (a float or a 0-dim tensor), summed over the batch."""
        return self._elbo_loss(vae, x, mask, beta)

    def loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        """The training loss, summed over the batch."""
        return self.loss_at(vae, x, mask, self.beta(step))

    def eval_loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The negative bound itself (beta = 1, no penalties), summed over the batch: for validation."""
        return self._elbo_loss(vae, x, mask, 1.0)


@OBJECTIVES.register("meanfield")
class MeanFieldObjective(ELBOObjective):
    """The ELBO with the KL term in closed form where Pyro knows it (TraceMeanField_ELBO)."""

    @checked
    def __init__(
        self,
        num_particles: PositiveInt = 1,
        beta: Union[float, Callable[[int], float]] = 1.0,
        schedule: str = "constant",
        **schedule_args: Any,
    ) -> None:
        super().__init__(num_particles, beta, schedule, analytic_kl=True, **schedule_args)


@OBJECTIVES.register("iwae")
class IWAEObjective(ELBOObjective):
    """The importance-weighted bound (Burda et al. 2016) with K particles per datum."""

    @checked
    def __init__(
        self,
        num_particles: PositiveInt = 5,
        beta: Union[float, Callable[[int], float]] = 1.0,
        schedule: str = "constant",
        **schedule_args: Any,
    ) -> None:
        super().__init__(1, beta, schedule, **schedule_args)
        self.k = int(num_particles)

    def loss_at(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], beta: Union[float, torch.Tensor]) -> torch.Tensor:
        log_w = log_importance_weights(vae.model, vae.guide, x, mask, beta=beta, num_samples=self.k)
        return -log_mean_exp(log_w, 0).sum()

    def eval_loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.loss_at(vae, x, mask, 1.0)
