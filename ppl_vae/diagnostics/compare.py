"""Model comparison on held-out data by per-datum importance-weighted log-likelihoods.

``az.loo`` / ``az.compare`` are the wrong tools for VAEs: their pointwise log-likelihoods would be
log p(x_i | z_i) over per-datum latents, and PSIS-LOO over them turns into a harmonic-mean estimate of
p(x_i), with unbounded variance. Held-out data need no leave-one-out: every model scores the same
test points with the IWAE estimate of log p(x_i), and the paired differences (same points) have a
standard error sd(diff) * sqrt(N) on the summed scale, sd(diff) / sqrt(N) per datum.
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np


def compare_log_likelihoods(log_px: Dict[str, np.ndarray]) -> list:
    """Rows sorted best first: mean log p(x) per datum and its standard error, and the paired
    difference to the best model with its standard error (per datum, nats)."""
    if len(log_px) < 2:
        raise ValueError("model comparison needs at least two models")
    sizes = {len(v) for v in log_px.values()}
    if len(sizes) != 1:
        raise ValueError(f"the models were scored on different numbers of data: {sorted(sizes)}")
    n = sizes.pop()
    ranked = sorted(log_px, key=lambda k: -float(np.mean(log_px[k])))
    best = np.asarray(log_px[ranked[0]], dtype=np.float64)
    rows = []
    for name in ranked:
        v = np.asarray(log_px[name], dtype=np.float64)
        diff = v - best
        rows.append(
            {
                "model": name,
                "log_px": float(v.mean()),
                "se": float(v.std(ddof=1) / math.sqrt(n)),
                "diff": float(diff.mean()),
                "diff_se": float(diff.std(ddof=1) / math.sqrt(n)) if name != ranked[0] else 0.0,
                "n": n,
            }
        )
    return rows


def comparison_table(rows: list) -> str:
    """A Markdown table of ``compare_log_likelihoods`` rows."""
    lines = ["| model | log p(x) per datum | paired difference to best |", "|---|---|---|"]
    for r in rows:
        diff = "best" if r["diff"] == 0 and r["diff_se"] == 0 else f"{r['diff']:.3f} ± {r['diff_se']:.3f}"
        lines.append(f"| {r['model']} | {r['log_px']:.3f} ± {r['se']:.3f} | {diff} |")
    return "\n".join(lines)
