"""Learning-rate schedules (torch's own schedulers, stepped once per epoch) and early stopping.

A recipe names a schedule in ``train.lr_schedule`` (``{name = "cosine"}``, ``{name = "step",
step_size = 10, gamma = 0.5}``, ...); its arguments are torch's, checked by name. ``plateau`` lowers
the rate when the validation ELBO stops rising. Early stopping and the best epoch are read off the
history, so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch

from ppl_vae.registry import ConfigError, accepted_arguments
from ppl_vae.errors import closest

SCHEDULES = {
    "step": torch.optim.lr_scheduler.StepLR,
    "multistep": torch.optim.lr_scheduler.MultiStepLR,
    "exponential": torch.optim.lr_scheduler.ExponentialLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
    "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}
_INTERNAL = {"optimizer", "last_epoch", "verbose"}


def make_lr_schedule(optimizer: torch.optim.Optimizer, table: Optional[Dict[str, Any]], epochs: int, has_val: bool) -> Any:
    """The torch scheduler a recipe's ``train.lr_schedule`` table names (None for ``{}``: a constant rate)."""
    if not table:
        return None
    args = dict(table)
    name = args.pop("name", None)
    if name not in SCHEDULES:
        hint = closest(str(name), SCHEDULES) if name else ""
        raise ConfigError(f"train.lr_schedule.name must be one of: {', '.join(SCHEDULES)}; got {name!r}{hint}")
    cls = SCHEDULES[name]
    accepted = [a for a in accepted_arguments(cls) or [] if a not in _INTERNAL]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        hint = closest(unknown[0], accepted)
        raise ConfigError(f"train.lr_schedule '{name}' has no argument '{unknown[0]}'{hint}; it accepts: {', '.join(accepted)}")
    if name == "cosine":
        args.setdefault("T_max", epochs)
    if name == "plateau":
        if not has_val:
            raise ConfigError("train.lr_schedule 'plateau' follows the validation ELBO: set data.val_fraction > 0")
        args.setdefault("mode", "max")  # the ELBO rises as the model improves
    try:
        return cls(optimizer, **args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"train.lr_schedule '{name}': {str(err).splitlines()[0]}") from None


def step_lr_schedule(schedule: Any, val_elbo: Optional[float]) -> None:
    """Advance ``schedule`` by one epoch (``plateau`` with the epoch's validation ELBO)."""
    if schedule is None:
        return
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        schedule.step(math.nan if val_elbo is None else val_elbo)
    else:
        schedule.step()


def best_epoch(history: List[dict], min_delta: float = 0.0) -> Optional[int]:
    """The epoch with the best validation ELBO: the first that rose more than ``min_delta`` above every
    earlier one (None without a validation split)."""
    best, epoch = -math.inf, None
    for record in history:
        value = record.get("val_elbo")
        if value is not None and math.isfinite(value) and (epoch is None or value > best + min_delta):
            best, epoch = value, record["epoch"]
    return epoch


def should_stop(history: List[dict], patience: int, min_delta: float = 0.0) -> bool:
    """Whether ``patience`` epochs have passed since the best validation ELBO (never for patience 0)."""
    if not patience or not history:
        return False
    best = best_epoch(history, min_delta)
    return best is not None and history[-1]["epoch"] - best >= patience
