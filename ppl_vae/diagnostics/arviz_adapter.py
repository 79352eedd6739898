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


def psis_khat(log_weights: np.ndarray) -> np.ndarray:
    """Pareto k-hat per row of ``log_weights`` (N, S), from ArviZ's PSIS.

    Rows whose weights are equal to within 0.1% (an exact posterior, up to float32 rounding of the
    log densities) have no tail to fit: a Pareto fit to rounding noise is meaningless, and ArviZ
    returns +inf for exactly equal weights. Their k-hat is returned as -inf, "as reliable as it gets"."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, khat = az.psislw(log_weights)
    khat = np.asarray(khat, dtype=np.float64)
    flat = np.ptp(log_weights, axis=-1) < 1e-3
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
