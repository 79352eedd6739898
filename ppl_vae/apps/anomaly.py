"""Anomaly scores from a trained VAE, for images (arrays) and tables: ``anomaly_scores``.

The score of a datum is its negative IWAE log-likelihood, -log p(x) in nats (K importance samples;
higher = more anomalous). Likelihoods alone have a known failure: a VAE can give simpler
out-of-distribution data (blank images, constant rows) a higher likelihood than its training data
(Nalisnick et al., ICLR 2019). Two corrections are reported beside it:

* ``typicality``: |log p(x) - mean| / sd, the mean and sd of log p over reference data (the run's
  training split): atypically *high* likelihood is anomalous too (Nalisnick et al., 2019; Morningstar
  et al., 2021, in its simplest, one-statistic form).
* ``complexity`` (arrays of grey levels only): the likelihood ratio against a generic compressor,
  -log2 p(x) - L(x) with L(x) the zlib size of the datum's bytes in bits (Serrà et al., ICLR 2020):
  what the model explains beyond what any compressor finds simple.

``evaluate_scores`` turns scores and 0/1 labels (1 = anomaly) into ROC AUC and average precision.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Dict, Optional

import numpy as np
import torch

from ppl_vae.apps.tabular import trained
from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.data.tables import encode
from ppl_vae.evaluation.likelihood import iwae_log_likelihood
from ppl_vae.registry import ConfigError

SAMPLES = 100  # importance samples per datum


def log_likelihoods(module: Any, data: ArrayDataset, num_samples: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """Per-datum IWAE log p(x) in nats (masked cells of tables count for nothing)."""
    torch.manual_seed(seed)
    return iwae_log_likelihood(module, data, num_samples)["log_px"].double().numpy()


def complexity_bits(raw: np.ndarray) -> np.ndarray:
    """zlib-compressed size in bits of each datum's bytes (grey levels as uint8), level 9."""
    flat = np.clip(np.round(raw), 0, 255).astype(np.uint8).reshape(len(raw), -1)
    return np.array([8.0 * len(zlib.compress(row.tobytes(), 9)) for row in flat])


def anomaly_scores(
    model: Any,
    data: Any,
    *,
    reference: Optional[ArrayDataset] = None,
    raw_levels: Optional[np.ndarray] = None,
    num_samples: int = SAMPLES,
    seed: int = 0,
    spec: Any = None,
) -> Dict[str, np.ndarray]:
    """Scores per datum of ``data`` (an ``ArrayDataset`` or tensor in the run's data format, or for a table a
    pandas DataFrame with its columns): ``score`` (-log p(x), nats), and with ``reference`` data
    ``typicality``, with ``raw_levels`` (the data as grey levels 0..255) ``complexity``."""
    t = trained(model, "anomaly", "anomaly scoring", spec)
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # a DataFrame: rows of the run's table
        x = encode(data, t.schema)
        observed = ~np.isnan(x)
        data = ArrayDataset(torch.from_numpy(np.nan_to_num(x)), mask=None if observed.all() else torch.from_numpy(observed))
    data = as_dataset(data)
    log_px = log_likelihoods(t.module, data, num_samples, seed)
    out = {"score": -log_px}
    if reference is not None:
        ref = log_likelihoods(t.module, reference, num_samples, seed + 1)
        out["typicality"] = np.abs(log_px - ref.mean()) / max(float(ref.std()), 1e-12)
    if raw_levels is not None:
        if len(raw_levels) != len(data):
            raise ConfigError(f"raw_levels holds {len(raw_levels)} data but data holds {len(data)}")
        out["complexity"] = -log_px / math.log(2) - complexity_bits(raw_levels)
    return out


def evaluate_scores(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """ROC AUC and average precision of ``scores`` (higher = more anomalous) for 0/1 ``labels`` (1 = anomaly)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels).astype(int)
    if labels.shape != scores.shape:
        raise ConfigError(f"{len(labels)} labels for {len(scores)} scored data")
    if set(np.unique(labels)) != {0, 1}:
        raise ConfigError("labels must hold both 0 (normal) and 1 (anomaly) to compute ROC AUC and average precision")
    return {"roc_auc": float(roc_auc_score(labels, scores)), "average_precision": float(average_precision_score(labels, scores))}
