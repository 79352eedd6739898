"""beta schedules: ``step -> beta`` for the KL term (constant, linear warm-up, cyclical).

beta multiplies the latent site in model and guide alike (``poutine.scale``); it must stay above 0
(``poutine.scale(0)`` is rejected).
"""

from __future__ import annotations

from typing import Any, Callable, Union

from ppl_vae.registry import ConfigError
from ppl_vae.schema import PositiveFloat, PositiveInt, UnitInterval, check_arguments, checked


class ConstantBeta:
    """beta at every step (> 0: ``poutine.scale(0)`` is rejected)."""

    @checked
    def __init__(self, beta: PositiveFloat = 1.0) -> None:
        self.beta = float(beta)

    def __call__(self, step: int) -> float:
        return self.beta


class LinearWarmup(ConstantBeta):
    """beta rises linearly from ``start`` (> 0) to ``beta`` over ``warmup_steps``, then stays."""

    @checked
    def __init__(self, beta: PositiveFloat = 1.0, warmup_steps: PositiveInt = 1000, start: PositiveFloat = 1e-3) -> None:
        super().__init__(beta)
        self.warmup_steps, self.start = int(warmup_steps), float(start)

    def __call__(self, step: int) -> float:
        t = min(step / self.warmup_steps, 1.0)
        return self.start + t * (self.beta - self.start)


class CyclicalBeta(LinearWarmup):
    """Cyclical annealing (Fu et al. 2019): each period rises for ``ratio`` of it, then holds beta."""

    @checked
    def __init__(
        self, beta: PositiveFloat = 1.0, period: PositiveInt = 1000, ratio: UnitInterval = 0.5, start: PositiveFloat = 1e-3
    ) -> None:
        super().__init__(beta, max(int(period * ratio), 1), start)
        self.period = max(int(period), 1)

    def __call__(self, step: int) -> float:
        return super().__call__(step % self.period)


SCHEDULES = {"constant": ConstantBeta, "linear": LinearWarmup, "cyclical": CyclicalBeta}


def make_schedule(
    beta: Union[float, Callable[[int], float]] = 1.0, schedule: str = "constant", **kwargs: Any
) -> Callable[[int], float]:
    if callable(beta):
        return beta
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown beta schedule '{schedule}'; choose one of: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[schedule]
    return cls(beta, **check_arguments(f"objective schedule '{schedule}'", cls, kwargs))
