"""Synthetic tables from a trained VAE, and how good and how private they are.

``synthesize(model, n)``: z from the prior, every cell drawn from p(x | z) (a draw, not the mean: a
table of means would have no spread), decoded through the run's schema, so the rows have the
training table's columns, types and categories.

``quality_report(real, synthetic, schema)``: SDMetrics' quality report (the ``sdmetrics`` package):
the overall score with its two properties, column shapes (KS complement / TV complement per
column) and column-pair trends (correlation / contingency similarity per pair), and per column.

``privacy_report(synthetic, train, holdout, schema)``: the distance to the closest record (DCR) in
the training rows, of synthetic rows and of held-out real rows (rows the model never saw). A model
that generalises makes synthetic rows about as far from the training rows as new real rows are;
one that copies makes them closer (a ratio below 1, exact copies, many rows closer than the 5th
percentile of held-out rows). Distances are Euclidean over standardized numbers and one-hot
categories (a missing cell counts as the column's mean, or as no category).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ppl_vae.apps.tabular import decode_rows, trained
from ppl_vae.data.tables import encode
from ppl_vae.registry import ConfigError

MAX_ROWS = 10_000_000


@torch.no_grad()
def synthesize(model: Any, n: int, *, seed: int = 0, spec: Any = None) -> Any:
    """``n`` synthetic rows (a pandas DataFrame in the training table's schema); ``model`` is ``ppl_vae.load(RUN)``."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ROWS:
        raise ConfigError(f"the number of synthetic rows must be an integer in 1..{MAX_ROWS}, got {n!r}")
    t = trained(model, "synthesize", "synthesis", spec)
    schema = t.schema
    torch.manual_seed(int(seed))
    module = t.module
    rows = []
    for start in range(0, n, 65536):
        z = module.prior().sample((min(65536, n - start),))
        rows.append(module.likelihood(module.decoder(z)).sample().cpu().numpy())
    return decode_rows(np.concatenate(rows), schema)


def sdmetrics_metadata(schema: List[Dict[str, Any]]) -> Dict[str, Any]:
    """SDMetrics' single-table metadata for a schema."""
    sdtype = {"numeric": "numerical", "integer": "numerical", "categorical": "categorical", "boolean": "categorical"}
    return {"columns": {c["name"]: {"sdtype": sdtype[c["type"]]} for c in schema}}


def _typed(frame: Any, schema: List[Dict[str, Any]]) -> Any:
    """Numbers as floats and categories as strings, missing cells as NaN (what SDMetrics compares)."""
    import pandas as pd

    from ppl_vae.data.tables import _missing

    out = {}
    for col in schema:
        values = [None if _missing(v) else v for v in frame[col["name"]]]
        if col["type"] in ("numeric", "integer"):
            out[col["name"]] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype(float)
        else:
            out[col["name"]] = pd.Series([None if v is None else str(v).strip() for v in values], dtype=object)
    return pd.DataFrame(out)


def quality_report(real: Any, synthetic: Any, schema: List[Dict[str, Any]]) -> Dict[str, Any]:
    """SDMetrics' quality score (0..1) with its column-shapes and column-pair-trends properties and per-column scores."""
    import warnings

    try:
        with warnings.catch_warnings():  # 0.32 deprecates this import for its multi-table form; same report for one table
            warnings.simplefilter("ignore", FutureWarning)
            from sdmetrics.reports.single_table import QualityReport
    except ImportError:
        raise ConfigError("the fidelity report needs the 'sdmetrics' package: pip install 'ppl-vae[apps]'") from None

    real_t, synth_t = _typed(real, schema), _typed(synthetic, schema)
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real_t, synth_t, sdmetrics_metadata(schema), verbose=False)
        props = report.get_properties()
        shapes = report.get_details("Column Shapes")
    by_name = dict(zip(props["Property"], props["Score"]))
    return {
        "quality_score": float(report.get_score()),
        "column_shapes": float(by_name.get("Column Shapes", float("nan"))),
        "column_pair_trends": float(by_name.get("Column Pair Trends", float("nan"))),
        "columns": {str(r["Column"]): float(r["Score"]) for _, r in shapes.iterrows()},
    }


def features(frame: Any, schema: List[Dict[str, Any]]) -> np.ndarray:
    """Rows as distance features: standardized numbers (missing: 0, the mean) and one-hot categories."""
    x = encode(frame, schema)
    return features_of_codes(x, schema)


def features_of_codes(x: np.ndarray, schema: List[Dict[str, Any]]) -> np.ndarray:
    """``features`` of rows already in model space (codes and standardized numbers, NaN where missing)."""
    cols = []
    for j, col in enumerate(schema):
        v = x[:, j]
        if col["type"] in ("categorical", "boolean"):
            k = len(col["categories"])
            onehot = np.zeros((len(x), k))
            ok = ~np.isnan(v)
            onehot[np.flatnonzero(ok), v[ok].astype(int)] = 1.0
            cols.append(onehot / np.sqrt(2.0))  # two differing categories are at distance 1, like one standard deviation
        else:
            cols.append(np.nan_to_num(v)[:, None])
    return np.concatenate(cols, 1)


def privacy_report(synthetic: np.ndarray, train: np.ndarray, holdout: np.ndarray, seed: int = 0) -> Dict[str, float]:
    """DCR to the training rows (all three as ``features``): medians for synthetic and held-out rows, their
    ratio, the share of exact copies and of synthetic rows closer than the 5th percentile of held-out DCRs.
    The synthetic rows are subsampled to as many as the held-out rows, so the two are compared like for like."""
    from sklearn.neighbors import NearestNeighbors

    if len(train) == 0 or len(holdout) == 0 or len(synthetic) == 0:
        raise ConfigError("the privacy check needs training, held-out and synthetic rows")
    rng = np.random.default_rng(seed)
    if len(synthetic) > len(holdout):
        synthetic = synthetic[rng.choice(len(synthetic), len(holdout), replace=False)]
    nn = NearestNeighbors(n_neighbors=1).fit(train)
    d_syn = nn.kneighbors(synthetic)[0][:, 0]
    d_hold = nn.kneighbors(holdout)[0][:, 0]
    p5 = float(np.percentile(d_hold, 5))
    return {
        "dcr_synthetic_median": float(np.median(d_syn)),
        "dcr_holdout_median": float(np.median(d_hold)),
        "dcr_ratio": float(np.median(d_syn) / max(np.median(d_hold), 1e-12)),
        "exact_copies": float(np.mean(d_syn < 1e-6)),
        "exact_copies_holdout": float(np.mean(d_hold < 1e-6)),
        "closer_than_holdout_p5": float(np.mean(d_syn < p5)),
        "n_compared": int(len(d_syn)),
    }


def synthesis_report(
    synthetic: Any, real: Any, schema: List[Dict[str, Any]], train: np.ndarray, holdout: Optional[np.ndarray], seed: int = 0
) -> Dict[str, Any]:
    """The quality report against ``real`` and (with held-out rows, model space) the privacy check."""
    out: Dict[str, Any] = {"quality": quality_report(real, synthetic, schema)}
    if holdout is not None:
        syn = features(synthetic, schema)
        out["privacy"] = privacy_report(syn, features_of_codes(train, schema), features_of_codes(holdout, schema), seed)
    return out
