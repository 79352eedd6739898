"""Gold-standard references for single data points: NUTS on one datum's z, and a guide re-optimized
for that datum alone.

With the decoder fixed, p(z | x_i) is a small, smooth posterior that NUTS samples well. Comparing it
with q(z | x_i) says how far the amortized guide is from the truth; comparing ELBOs splits the gap
log p(x_i) - ELBO into the amortization gap (amortized vs per-datum optimal guide of the same family)
and the approximation gap (per-datum optimal guide vs the true posterior), as in Cremer et al. 2018.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS, Trace_ELBO

from ppl_vae.evaluation.likelihood import per_datum_log_weights
from ppl_vae.evaluation.importance_weights import ModelGuide
from ppl_vae.diagnostics import arviz_adapter as adapter


def log_joint(vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """z -> log p(z) + log p(x | z) for one datum x of shape (1, *data_shape); z of shape (..., Z)."""
    x = vae.likelihood.fill_missing(x, mask)

    def fn(z: torch.Tensor) -> torch.Tensor:
        return vae.prior().log_prob(z) + vae.likelihood(vae.decoder(z), mask).log_prob(x)

    return fn


def nuts_posterior(
    vae: Any,
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    num_samples: int = 500,
    warmup: int = 500,
    num_chains: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Draws (chain, draw, Z) from p(z | x) for one datum, chains run one after the other from
    dispersed starts around the guide's mean (no multiprocessing; the decoder's weights stay fixed)."""
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    try:
        fn = log_joint(vae, x, mask)
        q = vae.encode(x, mask)
        chains = []
        for c in range(num_chains):
            pyro.set_rng_seed(seed + c)
            start = q.sample().reshape(1, -1) + 0.5 * torch.randn(1, vae.latent_dim, device=x.device)
            kernel = NUTS(potential_fn=lambda params: -fn(params["z"]).sum(), adapt_step_size=True, full_mass=False)
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup, initial_params={"z": start}, disable_progbar=True)
            mcmc.run()
            chains.append(mcmc.get_samples()["z"].reshape(num_samples, -1).cpu().numpy())
        return np.stack(chains)
    finally:
        for p in vae.parameters():
            p.requires_grad_(True)


def reoptimized_elbo(
    vae: Any,
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    steps: int = 500,
    particles: int = 64,
    lr: float = 0.05,
    eval_samples: int = 1000,
) -> Tuple[float, float]:
    """(ELBO, importance-weighted log p(x)) of a diagonal Gaussian fitted to this one datum (started
    from the encoder's output), both from ``eval_samples`` fresh draws of the fitted guide."""
    vae.eval()
    loc0, scale0 = vae.encoder(vae.likelihood.fill_missing(x, mask))
    loc = loc0.detach().clone().requires_grad_(True)
    log_scale = scale0.detach().log().clone().requires_grad_(True)

    def local_guide(x: torch.Tensor, mask: Optional[torch.Tensor] = None, beta: float = 1.0) -> None:
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    opt = torch.optim.Adam([loc, log_scale], lr=lr)
    for p in vae.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            opt.zero_grad()
            elbo.differentiable_loss(vae.model, local_guide, x, mask).backward()
            opt.step()
        with torch.no_grad():
            pair = ModelGuide(vae.model, local_guide, vae.likelihood)
            log_w = torch.cat(list(per_datum_log_weights(pair, x, mask, eval_samples)), 0)
        return float(log_w.mean()), float(torch.logsumexp(log_w[:, 0], 0) - math.log(eval_samples))
    finally:
        for p in vae.parameters():
            p.requires_grad_(True)


@torch.no_grad()
def compare_with_reference(
    vae: Any, x: torch.Tensor, draws: np.ndarray, mask: Optional[torch.Tensor] = None, num_samples: int = 5000
) -> dict:
    """Guide vs NUTS for one datum: mean differences in posterior sds, sd ratios, R-hat, ESS, and
    the ELBO / log p(x) of the amortized guide."""
    q_draws = vae.encode(x, mask).sample((num_samples,)).reshape(num_samples, -1).cpu().numpy()
    ref = draws.reshape(-1, draws.shape[-1])
    sd = ref.std(0)
    log_w = torch.cat(list(per_datum_log_weights(vae, x, mask, num_samples)), 0)[:, 0]
    return {
        "rhat_max": float(adapter.rhat(draws).max()),
        "ess_bulk_min": float(adapter.ess(draws).min()),
        "mean_diff_in_sd": ((q_draws.mean(0) - ref.mean(0)) / sd).tolist(),
        "sd_ratio": (q_draws.std(0) / sd).tolist(),
        "log_px": float(torch.logsumexp(log_w, 0) - math.log(num_samples)),
        "elbo_amortized": float(log_w.mean()),
    }


def reference_report(
    vae: Any,
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    num_samples: int = 500,
    warmup: int = 500,
    num_chains: int = 4,
    reopt_steps: int = 500,
    seed: int = 0,
) -> Tuple[dict, np.ndarray]:
    """Everything above for one datum; returns (report dict, NUTS draws)."""
    draws = nuts_posterior(vae, x, mask, num_samples, warmup, num_chains, seed)
    report = compare_with_reference(vae, x, draws, mask)
    report["elbo_reoptimized"], log_px_reopt = reoptimized_elbo(vae, x, mask, steps=reopt_steps)
    # both log p(x) estimates are stochastic lower bounds; the better proposal gives the tighter one
    report["log_px_amortized_proposal"], report["log_px_reoptimized_proposal"] = report["log_px"], log_px_reopt
    report["log_px"] = max(report["log_px"], log_px_reopt)
    report["amortization_gap"] = report["elbo_reoptimized"] - report["elbo_amortized"]
    report["approximation_gap"] = report["log_px"] - report["elbo_reoptimized"]
    return report, draws
