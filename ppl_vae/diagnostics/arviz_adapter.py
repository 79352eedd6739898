"""The one place ppl-vae calls ArviZ (0.23.x on Python 3.11).

Everything else in ``ppl_vae.diagnostics`` goes through these functions, so ArviZ 1.x (DataTree,
``plot_ppc_dist``, no ``from_pyro``) can be supported here without touching callers. Shapes follow
ArviZ's ``(chain, draw, ...)`` convention: callers pass explicit chain axes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np

from ppl_vae.registry import ConfigError

with warnings.catch_warnings():  # 0.23 announces its 1.x refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes


def version() -> str:
    return az.__version__


#: Flatness tolerance of ``psis_khat``, in float32 epsilons relative to the log weights' magnitude. Log weights are float32
#: sums of many terms, so equal weights reach PSIS a few float32 ulps apart (measured on exact guides: up to 6 eps32 * |log w|
#: at |log w| ~ 3000, 13 at |log w| ~ 5). 32 leaves a margin, and the flat band is then at least 32 ulps wide: past it, rounded
#: noise has enough distinct values that ties at the top do not leave ArviZ too short a tail (k = +inf) for S up to a few
#: thousand. It hides no tail worth flagging: a flat row's weights are within a factor exp(32 * eps32 * max |log w|) of each
#: other, 1.012 at |log w| = 3150 (the shortcut would hide a tail spanning ~3 nats only from |log w| ~ 8e5).
FLAT_EPS32 = 32


def psis_khat(log_weights: np.ndarray) -> np.ndarray:
    """Pareto k-hat per row of ``log_weights`` (N, S), from ArviZ's PSIS, in float64.

    Each row is shifted by its maximum (the k-hat does not depend on it), so PSIS works on log weights
    near 0 whatever their magnitude. A row is flat, equal weights up to float32 rounding (an exact
    guide), when its spread is within ``FLAT_EPS32`` float32 epsilons of its magnitude::

        ptp(log w) <= FLAT_EPS32 * eps32 * max(1, max |log w|)

    A flat row has no tail to fit: a Pareto fit to rounding noise is meaningless (rounding makes
    values tie, and ArviZ returns +inf when the top of the row is tied, as it is for exactly equal
    weights). Its k-hat is returned as -inf, "as reliable as it gets". The test is relative because
    float32 rounding is: at |log w| ~ 3150 one ulp is 2**-12, so an absolute cutoff (0.001 before)
    misread an exact guide's rounding noise as a heavy tail. Other rows, and rows with non-finite
    entries, go to PSIS unchanged but for the shift."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        top = np.max(log_weights, axis=-1, keepdims=True)
        shifted = log_weights - np.where(np.isfinite(top), top, 0.0)
        scale = np.max(np.abs(log_weights), axis=-1, where=np.isfinite(log_weights), initial=1.0)
        spread = np.ptp(shifted, axis=-1)
        flat = np.isfinite(spread) & (spread <= FLAT_EPS32 * float(np.finfo(np.float32).eps) * scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, khat = az.psislw(shifted)
    khat = np.asarray(khat, dtype=np.float64)
    return np.where(flat, -np.inf, khat)


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalized split R-hat per trailing dimension of ``draws`` (chain, draw, dim)."""
    return np.asarray(az.rhat(az.convert_to_dataset({"z": draws}))["z"].values)


def ess(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size per trailing dimension of ``draws`` (chain, draw, dim)."""
    return np.asarray(az.ess(az.convert_to_dataset({"z": draws}))["z"].values)


def inference_data(
    posterior: Dict[str, np.ndarray],
    *,
    posterior_predictive: Optional[Dict[str, np.ndarray]] = None,
    prior_predictive: Optional[Dict[str, np.ndarray]] = None,
    observed_data: Optional[Dict[str, np.ndarray]] = None,
    sample_stats: Optional[Dict[str, np.ndarray]] = None,
    per_datum: Optional[Dict[str, np.ndarray]] = None,
    constant_data: Optional[Dict[str, np.ndarray]] = None,
    coords: Optional[Dict[str, Any]] = None,
    dims: Optional[Dict[str, List[str]]] = None,
    attrs: Optional[Dict[str, Any]] = None,
) -> az.InferenceData:
    """An ``InferenceData`` from dicts of arrays. ``per_datum`` holds diagnostics shaped like the data
    axis only (N,); they are added to ``sample_stats`` with the data dimension alone."""
    import xarray as xr

    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive=posterior_predictive,
        prior_predictive=prior_predictive,
        observed_data=observed_data,
        sample_stats=sample_stats,
        constant_data=constant_data,
        coords=coords,
        dims=dims,
        attrs=attrs,
    )
    if per_datum:
        obs_dim = (dims or {}).get("z", ["obs"])[0]
        if coords is None:
            raise ConfigError(f"per-datum diagnostics need coords for the data dimension '{obs_dim}'")
        stats = idata.sample_stats if "sample_stats" in idata.groups() else None
        extra = xr.Dataset(
            {k: xr.DataArray(np.asarray(v), dims=[obs_dim], coords={obs_dim: coords[obs_dim]}) for k, v in per_datum.items()}
        )
        if stats is None:
            idata.add_groups(sample_stats=extra)
        else:
            idata.sample_stats = stats.merge(extra)
    return idata


def to_netcdf(idata: az.InferenceData, path: Union[str, Path]) -> None:
    idata.to_netcdf(str(path))


def from_netcdf(path: Union[str, Path]) -> az.InferenceData:
    return az.from_netcdf(str(path))


def plot_khat(khat: np.ndarray, threshold: float, ax: Optional[Axes] = None) -> Axes:
    """k-hat per datum with the reliability threshold (ArviZ's plot_khat)."""
    finite = np.where(np.isfinite(khat), khat, -0.5)
    with warnings.catch_warnings():  # 0.23 prefers ELPDData; plain arrays are what we have
        warnings.simplefilter("ignore", FutureWarning)
        ax = az.plot_khat(finite, ax=ax, show=False)
    ax.axhline(threshold, color="C3", linestyle="--", linewidth=1)
    return ax


def plot_rank_ecdf(fractions: np.ndarray, ax: Optional[Axes] = None) -> Axes:
    """ECDF minus the uniform CDF of (continuous) normalized ranks, with 95% simultaneous bands."""
    import scipy.stats as st

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return az.plot_ecdf(
            fractions,
            cdf=st.uniform().cdf,
            difference=True,
            confidence_bands=True,
            eval_points=np.linspace(0, 1, 101),
            random_state=0,
            ax=ax,
            show=False,
        )


def plot_ppc(idata: az.InferenceData, var_names: Sequence[str], group: str = "posterior", axes: Any = None) -> Any:
    """Observed per-datum statistics against their replicated distributions."""
    return az.plot_ppc(
        idata, var_names=list(var_names), group=group, observed=True, num_pp_samples=50, ax=axes, random_seed=0, show=False
    )
