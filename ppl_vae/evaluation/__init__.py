"""Estimators on a trained model; each works on any module with a ``model`` and ``guide``.

* ``importance_weights``: per-datum log importance weights (also what the IWAE objective uses).
* ``likelihood``: per-datum ELBO and IWAE log p(x), bits/dim, reconstruction error, active units.
* ``classification``: accuracy of a classifier q(y | x).
* ``disentanglement_metrics``: BetaVAE, FactorVAE, MIG, DCI, SAP, modularity and explicitness scores.
"""

from ppl_vae.evaluation.classification import accuracy
from ppl_vae.evaluation.importance_weights import ModelGuide, log_importance_weights, log_mean_exp
from ppl_vae.evaluation.likelihood import (
    bound_report,
    evaluate,
    iwae_log_likelihood,
    latent_statistics,
    per_datum_log_weights,
    reconstruction_error,
)

__all__ = [
    "accuracy",
    "ModelGuide",
    "log_importance_weights",
    "log_mean_exp",
    "bound_report",
    "evaluate",
    "iwae_log_likelihood",
    "latent_statistics",
    "per_datum_log_weights",
    "reconstruction_error",
]
