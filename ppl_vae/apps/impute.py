"""Missing-value imputation for tables with a trained VAE: ``impute`` and ``impute_multiple``.

The missing cells of a row are drawn from p(x_miss | x_obs) with the Metropolis-within-Gibbs
sampler of Mattei and Frellsen (ICML 2018), run for all rows at once: with the row completed by the
current x_miss, (1) propose z' from the encoder q(z | x_obs, x_miss) and accept it with probability
min(1, p(x, z') q(z | x) / (p(x, z) q(z' | x))) (the full row, observed and current missing cells);
(2) draw x_miss from p(x_miss | z). The chain starts from the encoder's posterior given the observed
cells (missing ones filled with the likelihood's fill value).

Single imputation averages the predictive distribution over the kept draws of z (after
``burn_in``): the posterior-predictive mean of a numeric column, the most probable category of a
categorical or boolean one. Multiple imputation returns M completed tables, x_miss drawn at M
iterations spaced ``thin`` apart. Observed cells are never changed; filled values are decoded
through the run's schema (categories seen in training, integers rounded into the observed range).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
import torch

from ppl_vae.apps.tabular import Trained, fill_frame, point_codes, predictive, trained
from ppl_vae.data.tables import encode
from ppl_vae.registry import ConfigError

ITERATIONS, BURN_IN, THIN, BATCH = 100, 20, 5, 4096


def impute(model: Any, frame: Any, *, seed: int = 0, iterations: int = ITERATIONS, burn_in: int = BURN_IN, spec: Any = None) -> Any:
    """``frame`` (a pandas DataFrame with the run's columns) with every missing cell filled: the same
    columns and rows in the same order, observed cells unchanged. ``model`` is ``ppl_vae.load(RUN)``."""
    t = trained(model, "impute", "imputation", spec)
    x, missing = _encoded(frame, t)
    if not missing.any():
        return frame.copy()
    filled, _ = _run_chains(t, x, missing, seed, iterations, burn_in, draws=0)
    return fill_frame(frame, filled, missing, t.schema)


def impute_multiple(
    model: Any, frame: Any, m: int, *, seed: int = 0, burn_in: int = BURN_IN, thin: int = THIN, spec: Any = None
) -> List[Any]:
    """``m`` completed copies of ``frame`` whose missing cells are draws from p(x_miss | x_obs) (``m`` >= 1)."""
    if not isinstance(m, int) or m < 1:
        raise ConfigError(f"multiple imputation needs m >= 1 completed tables, got {m!r}")
    t = trained(model, "impute", "imputation", spec)
    x, missing = _encoded(frame, t)
    if not missing.any():
        return [frame.copy() for _ in range(m)]
    _, draws = _run_chains(t, x, missing, seed, burn_in + m * thin, burn_in, draws=m, thin=thin)
    return [fill_frame(frame, d, missing, t.schema) for d in draws]


def _encoded(frame: Any, t: Trained) -> Tuple[np.ndarray, np.ndarray]:
    x = encode(frame, t.schema)
    return x, np.isnan(x)


@torch.no_grad()
def _run_chains(
    t: Trained, x: np.ndarray, missing: np.ndarray, seed: int, iterations: int, burn_in: int, draws: int, thin: int = THIN
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """(single imputation, ``draws`` sampled completions), both (n, d) in model space, batch by batch of rows."""
    if iterations <= burn_in:
        raise ConfigError(f"imputation needs more iterations ({iterations}) than burn-in steps ({burn_in})")
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    point = np.array(x, copy=True)
    samples = [np.array(x, copy=True) for _ in range(draws)]
    rows = np.flatnonzero(missing.any(1))
    for start in range(0, len(rows), BATCH):
        idx = rows[start : start + BATCH]
        p, s = _chain(t, torch.from_numpy(x[idx]), torch.from_numpy(~missing[idx]), iterations, burn_in, draws, thin, gen)
        point[idx] = p
        for out, d in zip(samples, s):
            out[idx] = d
    return point, samples


def _chain(
    t: Trained, x: torch.Tensor, observed: torch.Tensor, iterations: int, burn_in: int, draws: int, thin: int, gen: torch.Generator
) -> Tuple[np.ndarray, List[np.ndarray]]:
    module, device = t.module, t.device
    x, observed = x.to(device), observed.to(device)
    lik = module.likelihood
    xc = lik.fill_missing(torch.nan_to_num(x), observed)
    prior = module.prior()
    q = module.encode(xc, observed)
    z = q.sample()
    params = module.decoder(z)
    xc = torch.where(observed, xc, lik(params).sample())
    total: Optional[List[Tuple[str, torch.Tensor]]] = None
    kept = 0
    out_draws: List[np.ndarray] = []
    for it in range(iterations):
        q = module.encode(xc)
        z_new = q.sample()
        params_new = module.decoder(z_new)
        log_ratio = (
            prior.log_prob(z_new)
            + lik(params_new).log_prob(xc)
            + _log_q(q, z)
            - prior.log_prob(z)
            - lik(params).log_prob(xc)
            - _log_q(q, z_new)
        )
        accept = (torch.rand(len(z), generator=gen).to(device).log() < log_ratio)[:, None]
        z, params = torch.where(accept, z_new, z), torch.where(accept, params_new, params)
        xc = torch.where(observed, xc, lik(params).sample())
        if it >= burn_in:
            summary = predictive(module, params)
            total = summary if total is None else [(k, a + b) for (k, a), (_, b) in zip(total, summary)]
            kept += 1
            if draws and (it - burn_in) % thin == thin - 1 and len(out_draws) < draws:
                out_draws.append(xc.cpu().numpy())
    assert total is not None  # iterations > burn_in
    point = point_codes([(k, s / kept) for k, s in total])
    return point, out_draws


def _log_q(q: Any, z: torch.Tensor) -> torch.Tensor:
    """log q(z | x), or zeros where the guide cannot score a point it did not sample (a pseudo-Gibbs step)."""
    try:
        return q.log_prob(z)
    except NotImplementedError:  # pragma: no cover - guides without a density at arbitrary points
        return torch.zeros(len(z), device=z.device)
