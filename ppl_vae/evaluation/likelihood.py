"""Evaluation of a trained VAE: per-datum ELBO and importance-weighted log p(x), bits/dim,
reconstruction error, KL per latent dimension and active units.

``iwae_log_likelihood`` is vectorized over particles and chunked over both data and particles, so
memory stays bounded for K = 5000: at most ``max_elements`` decoder outputs exist at once.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, Optional, Union

import torch
from tqdm.auto import tqdm

from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.evaluation.importance_weights import log_importance_weights, model_device
from ppl_vae.components.likelihoods import bits_per_dim


@torch.no_grad()
def per_datum_log_weights(
    vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, num_samples: int = 1000, max_elements: int = 2**25
) -> Iterator[torch.Tensor]:
    """Yield chunks of log importance weights (k_chunk, n) for one batch of data."""
    per_particle = len(x) * math.prod(vae.likelihood.decoder_output_shape())
    chunk = max(1, min(num_samples, max_elements // max(per_particle, 1)))
    done = 0
    while done < num_samples:
        k = min(chunk, num_samples - done)
        yield log_importance_weights(vae.model, vae.guide, x, mask, num_samples=k)
        done += k


@torch.no_grad()
def iwae_log_likelihood(
    vae: Any,
    data: Union[ArrayDataset, torch.Tensor],
    num_samples: int = 1000,
    batch_size: int = 100,
    progress: bool = False,
    max_elements: int = 2**25,
) -> dict:
    """Per-datum estimates from the same S = ``num_samples`` guide draws:
    ``log_px`` (importance-weighted, a stochastic lower bound that tightens as S grows) and
    ``elbo`` (the mean log weight). Returns tensors of shape (N,) on the CPU."""
    data = as_dataset(data).to(model_device(vae))
    vae.eval()
    log_px, elbo = [], []
    bar = tqdm(total=len(data), disable=None if progress else True, desc=f"log p(x), K={num_samples}", unit="img", leave=False)
    for xb, mb in data.batches(batch_size, shuffle=False):
        lse = torch.full((len(xb),), -math.inf, device=xb.device)
        total = torch.zeros(len(xb), device=xb.device)
        for log_w in per_datum_log_weights(vae, xb, mb, num_samples, max_elements):
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
            total += log_w.sum(0)
        log_px.append((lse - math.log(num_samples)).cpu())
        elbo.append((total / num_samples).cpu())
        bar.update(len(xb))
    bar.close()
    return {"log_px": torch.cat(log_px), "elbo": torch.cat(elbo)}


@torch.no_grad()
def latent_statistics(vae: Any, data: Union[ArrayDataset, torch.Tensor], batch_size: int = 1000) -> dict:
    """KL(q(z|x) || p(z)) per latent dimension (Monte Carlo unless both are Gaussian) and active units
    (Burda et al.: dimensions whose posterior mean varies across data, Cov_x E_q[z_d] > 0.01)."""
    data = as_dataset(data).to(vae.device)
    means, kls = [], []
    for xb, mb in data.batches(batch_size, shuffle=False):
        loc, scale = vae.encoder(vae.likelihood.fill_missing(xb, mb))
        means.append(vae.embed(xb, mb))
        kls.append(_kl_per_dim(vae, loc, scale))
    mu = torch.cat(means)
    variance = mu.var(0, unbiased=True) if len(mu) > 1 else torch.zeros(mu.shape[1], device=mu.device)
    kl = torch.cat(kls).mean(0)
    return {"kl_per_dim": kl.cpu(), "posterior_mean_variance": variance.cpu(), "active_units": int((variance > 0.01).sum())}


def _kl_per_dim(vae: Any, loc: torch.Tensor, scale: torch.Tensor, samples: int = 16) -> torch.Tensor:
    """Per-dimension KL for a diagonal Gaussian q against a factorized prior; the MC estimate of the
    per-dimension log-ratio otherwise (a mixture prior does not factorize: its KL is split evenly)."""
    prior = vae.prior()
    base = getattr(prior, "base_dist", None)
    q = torch.distributions.Normal(loc, scale)
    if isinstance(base, (torch.distributions.Normal,)) and not hasattr(prior, "transforms"):
        return torch.distributions.kl_divergence(q, base.expand(loc.shape))
    z = q.rsample((samples,))
    if base is not None and not hasattr(prior, "transforms"):
        return (q.log_prob(z) - base.log_prob(z)).mean(0)
    total = (q.log_prob(z).sum(-1) - prior.log_prob(z)).mean(0)
    return total.unsqueeze(-1).expand_as(loc) / loc.shape[-1]


@torch.no_grad()
def reconstruction_error(vae: Any, data: Union[ArrayDataset, torch.Tensor], batch_size: int = 1000) -> dict:
    """Mean squared and absolute error of the point reconstruction, over observed entries."""
    data = as_dataset(data).to(vae.device)
    se = ae = count = 0.0
    for xb, mb in data.batches(batch_size, shuffle=False):
        err = vae.reconstruct(xb, mb) - xb
        m = torch.ones_like(xb, dtype=torch.bool) if mb is None else mb
        se += float((err[m] ** 2).sum())
        ae += float(err[m].abs().sum())
        count += float(m.sum())
    return {"mse": se / count, "mae": ae / count}


def evaluate(
    vae: Any, data: ArrayDataset, num_samples: int = 1000, batch_size: int = 100, progress: bool = False, bin_width: float = 1 / 255
) -> dict:
    """The standard report: mean test ELBO and log p(x) (with standard errors), bits/dim,
    reconstruction error, KL per dimension and active units."""
    data = as_dataset(data)
    est = iwae_log_likelihood(vae, data, num_samples, batch_size, progress)
    stats = latent_statistics(vae, data)
    return {
        **bound_report(est, data, num_samples, vae.likelihood.discrete, bin_width),
        **reconstruction_error(vae, data),
        "active_units": stats["active_units"],
        "kl_per_dim": [round(float(v), 4) for v in stats["kl_per_dim"]],
    }


def bound_report(est: Dict[str, torch.Tensor], data: ArrayDataset, num_samples: int, discrete: bool, bin_width: float) -> dict:
    """Means and standard errors over data of per-datum ``log_px`` and ``elbo``, their gap and bits/dim."""
    lp, el = est["log_px"], est["elbo"]
    se = lambda t: float(t.std(unbiased=True) / math.sqrt(len(t))) if len(t) > 1 else float("nan")  # noqa: E731
    n_dims = math.prod(data.shape) if data.mask is None else float(data.mask.sum()) / len(data)
    report = {
        "n": len(data),
        "iwae_samples": num_samples,
        "elbo": float(el.mean()),
        "elbo_se": se(el),
        "log_px": float(lp.mean()),
        "log_px_se": se(lp),
        "gap": float((lp - el).mean()),
        "bits_per_dim": float(bits_per_dim(lp, n_dims, discrete, bin_width).mean()),
    }
    if data.meta.get("tabular"):  # a table's columns mix densities and probabilities: bits per column mean nothing
        del report["bits_per_dim"]
    return report
