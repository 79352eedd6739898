"""ArviZ ``InferenceData`` for a trained VAE on a data set.

Groups: ``posterior`` (guide draws of z, dims chain, draw, <obs>, latent), ``posterior_predictive``,
``prior_predictive`` and ``observed_data`` (per-datum statistics for every datum, raw values for a
small subset under the dimension ``raw_<obs>``), ``sample_stats`` (the per-datum importance
diagnostics on the data dimension, and the log importance ratios when kept) and ``constant_data``
(labels, when the data have them). ``<obs>`` is "image" for images and "row" for tables; its
coordinates are the data's indices in their split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from ppl_vae.diagnostics import arviz_adapter as adapter

if TYPE_CHECKING:
    from arviz import InferenceData
    from numpy.typing import ArrayLike

    from ppl_vae.diagnostics.psis import ImportanceDiagnostics


@torch.no_grad()
def to_inference_data(
    vae: Any,
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    labels: Optional[ArrayLike] = None,
    index: Optional[ArrayLike] = None,
    diagnostics: Optional[ImportanceDiagnostics] = None,
    predictive: Optional[dict] = None,
    num_draws: int = 100,
    n_raw: int = 16,
    obs_dim: str = "image",
    attrs: Optional[dict] = None,
) -> InferenceData:
    n = len(x)
    index = np.arange(n) if index is None else np.asarray(index)
    z = vae.encode(x, mask).sample((num_draws,)).cpu().numpy()[None]  # (1, D, n, Z)
    coords = {obs_dim: index, "latent": [f"z{d}" for d in range(vae.latent_dim)]}
    dims = {"z": [obs_dim, "latent"]}
    raw_dim = f"raw_{obs_dim}"
    k = min(n_raw, n)
    coords.update({raw_dim: index[:k], "feature": np.arange(int(np.prod(vae.data_shape)))})
    observed, post_pred, prior_pred = {}, {}, {}
    if predictive is not None:
        observed.update(predictive["observed"])
        post_pred.update(predictive["posterior_predictive"])
        prior_pred.update(predictive["prior_predictive"])
        dims.update({name: [obs_dim] for name in predictive["observed"]})
    if k:
        xs, ms = x[:k], None if mask is None else mask[:k]
        z_raw = vae.encode(xs, ms).sample((min(num_draws, 20),))
        rep = vae.likelihood(vae.decoder(z_raw)).sample().reshape(len(z_raw), k, -1)
        observed["x"] = vae.likelihood.fill_missing(xs, ms).reshape(k, -1).cpu().numpy()
        post_pred["x"] = rep.cpu().numpy()[None]
        dims["x"] = [raw_dim, "feature"]
    sample_stats, per_datum = None, None
    if diagnostics is not None:
        per_datum = {
            "khat": diagnostics.khat,
            "ess": diagnostics.ess,
            "elbo": diagnostics.elbo,
            "log_px": diagnostics.log_px,
            "gap": diagnostics.gap,
            "flagged": diagnostics.flagged,
        }
        if diagnostics.log_weights is not None:
            sample_stats = {"log_importance_ratio": diagnostics.log_weights.T[None]}  # (1, S, n)
            dims["log_importance_ratio"] = [obs_dim]
    constant = None
    if labels is not None:
        constant = {"label": np.asarray(labels)}
        dims["label"] = [obs_dim]
    return adapter.inference_data(
        {"z": z},
        posterior_predictive=post_pred or None,
        prior_predictive=prior_pred or None,
        observed_data=observed or None,
        sample_stats=sample_stats,
        per_datum=per_datum,
        constant_data=constant,
        coords=coords,
        dims=dims,
        attrs=attrs,
    )
