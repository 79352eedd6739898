"""Per-datum importance diagnostics of an amortized guide (Yao et al. 2018, "Yes, but did it work?").

For every datum x_i, S draws z_s ~ q(z | x_i) give log ratios log p(x_i, z_s) - log q(z_s | x_i). From
them, per datum: the Pareto k-hat of PSIS, the importance-sampling effective sample size, the ELBO
(mean log ratio), the importance-weighted log p(x) (log-mean-exp), and their gap. A k-hat above
``min(1 - 1/log10(S), 0.7)`` means importance sampling from the guide cannot be trusted for that
datum: the guide misses posterior mass (too narrow or misplaced). k-hat does not catch a guide that
is too wide; the gap does (it is the KL from the guide to the true posterior, up to Monte Carlo).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.evaluation.likelihood import per_datum_log_weights
from ppl_vae.evaluation.importance_weights import model_device
from ppl_vae.diagnostics import arviz_adapter as adapter


def khat_threshold(num_samples: int) -> float:
    """The sample-size dependent k-hat threshold of Vehtari et al. (2024): min(1 - 1/log10(S), 0.7)."""
    return min(1.0 - 1.0 / math.log10(num_samples), 0.7)


@dataclass
class ImportanceDiagnostics:
    """Per-datum arrays of length N and the settings they were computed with."""

    khat: np.ndarray
    ess: np.ndarray  # importance-sampling ESS, between 1 and S
    elbo: np.ndarray
    log_px: np.ndarray
    num_samples: int
    log_weights: np.ndarray | None = None  # (N, S) when kept

    @property
    def gap(self) -> np.ndarray:
        return self.log_px - self.elbo

    @property
    def threshold(self) -> float:
        return khat_threshold(self.num_samples)

    @property
    def flagged(self) -> np.ndarray:
        return self.khat > self.threshold

    def summary(self) -> dict:
        k = self.khat[np.isfinite(self.khat)] if np.isfinite(self.khat).any() else np.zeros(1)
        return {
            "num_samples": self.num_samples,
            "n": int(len(self.khat)),
            "khat_threshold": round(self.threshold, 4),
            "khat_median": float(np.median(np.where(np.isfinite(self.khat), self.khat, -np.inf))),
            "khat_max": float(k.max()),
            "n_flagged": int(self.flagged.sum()),
            "fraction_flagged": float(self.flagged.mean()),
            "ess_median": float(np.median(self.ess)),
            "elbo_mean": float(self.elbo.mean()),
            "log_px_mean": float(self.log_px.mean()),
            "gap_mean": float(self.gap.mean()),
            "gap_max": float(self.gap.max()),
        }


def importance_ess(log_w: torch.Tensor) -> torch.Tensor:
    """(sum w)^2 / sum w^2 per column of ``log_w`` (S, N), computed stably in log space."""
    return torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0))


@torch.no_grad()
def importance_diagnostics(
    vae: Any,
    data: Union[ArrayDataset, torch.Tensor],
    num_samples: int = 1000,
    batch_size: int = 100,
    keep_weights: bool = False,
    progress: bool = False,
    max_elements: int = 2**25,
) -> ImportanceDiagnostics:
    """S = ``num_samples`` guide draws per datum, all kept for PSIS (memory: N x S floats)."""
    if num_samples < 10:
        raise ValueError(f"num_samples must be >= 10 for a Pareto fit, got {num_samples}")
    data = as_dataset(data).to(model_device(vae))
    vae.eval()
    rows = []
    bar = tqdm(total=len(data), disable=None if progress else True, desc=f"importance, S={num_samples}", unit="datum", leave=False)
    for xb, mb in data.batches(batch_size, shuffle=False):
        log_w = torch.cat(list(per_datum_log_weights(vae, xb, mb, num_samples, max_elements)), 0)
        rows.append(log_w.T.double().cpu())
        bar.update(len(xb))
    bar.close()
    log_w = torch.cat(rows, 0)  # (N, S)
    khat = adapter.psis_khat(log_w.numpy())
    lse = torch.logsumexp(log_w, 1)
    return ImportanceDiagnostics(
        khat=khat,
        ess=importance_ess(log_w.T).numpy(),
        elbo=log_w.mean(1).numpy(),
        log_px=(lse - math.log(num_samples)).numpy(),
        num_samples=num_samples,
        log_weights=log_w.float().numpy() if keep_weights else None,
    )
