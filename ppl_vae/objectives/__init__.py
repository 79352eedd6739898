"""Training objectives: one interface (``base.Objective``) and the registered implementations.

* ``elbo``, ``meanfield``, ``iwae`` (``elbo.py``): the (beta-)ELBO and the importance-weighted bound.
* ``capacity``, ``beta-tcvae``, ``factor-vae``, ``dip-vae`` (``disentangled.py``).
* ``semi-supervised``, ``conditional`` (``labelled.py``): the objectives of the label-aware kinds.
* beta schedules (``schedules.py``).
"""

from __future__ import annotations

from typing import Any

from ppl_vae.objectives.base import Objective
from ppl_vae.objectives.disentangled import CapacityObjective, DIPVAEObjective, FactorVAEObjective, TCVAEObjective
from ppl_vae.objectives.elbo import ELBOObjective, IWAEObjective, MeanFieldObjective, reparam_elbo_loss
from ppl_vae.objectives.labelled import ConditionalObjective, SemiSupervisedObjective
from ppl_vae.objectives.schedules import ConstantBeta, CyclicalBeta, LinearWarmup, make_schedule
from ppl_vae.registry import OBJECTIVES, ConfigError


def as_objective(objective: Any = None) -> Objective:
    """An ``Objective`` from an instance, a registered name (built with its defaults), or None (the ELBO)."""
    if objective is None:
        return ELBOObjective()
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        return OBJECTIVES.build(objective)
    raise ConfigError(
        f"cannot use {type(objective).__name__} as an objective: pass a registered name "
        f"({', '.join(OBJECTIVES.names())}) or a subclass of ppl_vae.objectives.Objective"
    )


__all__ = [
    "Objective",
    "ELBOObjective",
    "MeanFieldObjective",
    "IWAEObjective",
    "CapacityObjective",
    "TCVAEObjective",
    "FactorVAEObjective",
    "DIPVAEObjective",
    "SemiSupervisedObjective",
    "ConditionalObjective",
    "ConstantBeta",
    "LinearWarmup",
    "CyclicalBeta",
    "make_schedule",
    "reparam_elbo_loss",
    "as_objective",
]
