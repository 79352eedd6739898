"""Prior and posterior predictive checks on per-datum test statistics.

Pixels are never handed to a density plot (10k images x 100 draws x 784 floats is 3 GB and a
meaningless density): each datum is summarized by a few statistics, for images the mean intensity
and the fraction of active pixels (> 0.5), for tables each column's value (its mean over rows is
what the plot compares). Replicated data come from x_rep ~ p(x | z) with z from the guide
(posterior predictive) or from the prior (prior predictive).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch


def image_statistics(x: torch.Tensor, datum_ndim: int) -> Dict[str, torch.Tensor]:
    flat = x.flatten(start_dim=x.dim() - datum_ndim)
    return {"mean_intensity": flat.mean(-1), "active_fraction": (flat > 0.5).to(x.dtype).mean(-1)}


def statistics(
    x: torch.Tensor, datum_ndim: int, mask: Optional[torch.Tensor] = None, columns: Optional[Sequence[str]] = None
) -> Dict[str, torch.Tensor]:
    """Per-datum statistics of ``x`` shaped (..., *datum_shape), with ``datum_ndim`` trailing datum dims."""
    if columns:
        return {
            f"column_{i}": (x[..., i] if mask is None else torch.where(mask[..., i], x[..., i], torch.nan))
            for i in range(len(columns))
        }
    return image_statistics(x, datum_ndim)


@torch.no_grad()
def predictive_statistics(
    vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, num_draws: int = 100, columns: Optional[Sequence[str]] = None
) -> dict:
    """{"observed", "posterior_predictive", "prior_predictive"}: dicts of numpy arrays shaped (n,),
    (1, D, n) and (1, D, n) for ``D = num_draws`` replicated data sets."""
    ndim = len(vae.data_shape)
    n = len(x)
    z_post = vae.encode(x, mask).sample((num_draws,))  # (D, n, Z)
    rep_post = vae.likelihood(vae.decoder(z_post)).sample()  # (D, n, *shape)
    z_prior = vae.prior().sample((num_draws, n))
    rep_prior = vae.likelihood(vae.decoder(z_prior)).sample()
    to_np = lambda d, lead: {k: v.cpu().numpy()[None] if lead else v.cpu().numpy() for k, v in d.items()}  # noqa: E731
    return {
        "observed": to_np(statistics(x, ndim, mask, columns), False),
        "posterior_predictive": to_np(statistics(rep_post, ndim, None, columns), True),
        "prior_predictive": to_np(statistics(rep_prior, ndim, None, columns), True),
    }


def ppc_pvalues(pred: dict, group: str = "posterior_predictive") -> Dict[str, float]:
    """Posterior (or prior) predictive p-value of the mean of each statistic over the data:
    P(mean of replicated >= mean of observed). Values near 0 or 1 point to misfit."""
    out = {}
    for name, obs in pred["observed"].items():
        rep = np.nanmean(pred[group][name][0], axis=-1)
        out[name] = float((rep >= np.nanmean(obs)).mean())
    return out
