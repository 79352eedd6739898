"""Can this amortized posterior be trusted, for which data, and how far is it from the truth?

- ``importance``: per-datum PSIS k-hat, importance ESS, ELBO, IWAE log p(x) and their gap;
- ``sbc``: amortized simulation-based calibration;
- ``reference``: NUTS on one datum's z and a guide re-optimized for it (amortization gap);
- ``predictive``: prior / posterior predictive checks on per-datum statistics;
- ``compare``: held-out model comparison by paired per-datum log-likelihoods;
- ``export``: ArviZ InferenceData; ``report.diagnose`` writes all of it as a report directory.
ArviZ is only called from ``arviz_adapter``.
"""

from ppl_vae.diagnostics.compare import compare_log_likelihoods, comparison_table
from ppl_vae.diagnostics.export import to_inference_data
from ppl_vae.diagnostics.psis import ImportanceDiagnostics, importance_diagnostics, khat_threshold
from ppl_vae.diagnostics.predictive import ppc_pvalues, predictive_statistics
from ppl_vae.diagnostics.reference import nuts_posterior, reference_report, reoptimized_elbo
from ppl_vae.diagnostics.report import diagnose
from ppl_vae.diagnostics.sbc import SBCResult, amortized_sbc

__all__ = [
    "ImportanceDiagnostics",
    "SBCResult",
    "amortized_sbc",
    "compare_log_likelihoods",
    "comparison_table",
    "diagnose",
    "importance_diagnostics",
    "khat_threshold",
    "nuts_posterior",
    "ppc_pvalues",
    "predictive_statistics",
    "reference_report",
    "reoptimized_elbo",
    "to_inference_data",
]
