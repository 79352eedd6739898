"""Figures of the diagnostics: k-hat per datum, the worst data with their reconstructions, SBC rank
ECDFs, predictive checks, and guide-vs-NUTS marginals. Each returns a matplotlib Figure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch

from ppl_vae.plots import image_grid, plt
from ppl_vae.diagnostics import arviz_adapter as adapter

if TYPE_CHECKING:
    from arviz import InferenceData
    from matplotlib.figure import Figure

    from ppl_vae.diagnostics.psis import ImportanceDiagnostics
    from ppl_vae.diagnostics.sbc import SBCResult


def khat_figure(diag: ImportanceDiagnostics) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3))
    adapter.plot_khat(diag.khat, diag.threshold, ax=ax)
    ax.set_title(
        f"Pareto k-hat per datum (S={diag.num_samples}); dashed: threshold {diag.threshold:.2f}, "
        f"{int(diag.flagged.sum())} of {len(diag.khat)} flagged",
        fontsize=9,
    )
    ax.set_xlabel("datum")
    fig.tight_layout()
    return fig


@torch.no_grad()
def worst_figure(
    vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], diag: ImportanceDiagnostics, image_shape: Sequence[int], n: int = 8
) -> Figure:
    """The ``n`` data with the highest k-hat (top row) above their reconstructions (bottom row)."""
    order = np.argsort(-np.where(np.isfinite(diag.khat), diag.khat, -np.inf))[:n]
    xs = x[torch.as_tensor(order, device=x.device)]
    ms = None if mask is None else mask[torch.as_tensor(order, device=x.device)]
    fig = image_grid(
        torch.cat([vae.likelihood.fill_missing(xs, ms), vae.reconstruct(xs, ms)]),
        image_shape,
        len(order),
        "highest k-hat: data (top), reconstructions (bottom)",
    )
    for ax, i in zip(fig.axes[: len(order)], order):
        ax.set_title(f"#{i}\nk={diag.khat[i]:.2f}", fontsize=7)
    return fig


def sbc_figure(sbc: SBCResult, max_dims: int = 10) -> Figure:
    dims = min(sbc.ranks.shape[1], max_dims)
    cols = min(dims, 5)
    rows = math.ceil(dims / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    fractions = sbc.fractions
    for d, ax in enumerate(axes.flat):
        if d >= dims:
            ax.set_visible(False)
            continue
        adapter.plot_rank_ecdf(fractions[:, d], ax=ax)
        ax.set_title(f"z{d}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"amortized SBC: ECDF - uniform of ranks (M={len(sbc.ranks)}, S={sbc.num_samples}), 95% bands", fontsize=9)
    fig.tight_layout()
    return fig


def ppc_figure(idata: InferenceData, names: Sequence[str]) -> Figure:
    names = list(names)[:6]
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5), squeeze=False)
    for row, group in enumerate(("posterior", "prior")):
        adapter.plot_ppc(idata, names, group=group, axes=axes[row])
        for ax in axes[row]:
            ax.set_title(f"{ax.get_title()} ({group} predictive)", fontsize=8)
            if ax.get_legend():
                ax.get_legend().set_visible(row == 0 and ax is axes[row][0])
    fig.tight_layout()
    return fig


@torch.no_grad()
def disagreement(reference: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """Per latent dimension: the 1-Wasserstein distance between the NUTS and the guide marginals, in
    units of the NUTS marginal's standard deviation (0 when they agree; about |shift| / sd for a shift)."""
    from scipy.stats import wasserstein_distance

    sd = reference.std(0) + 1e-12
    return np.array([wasserstein_distance(reference[:, d], guide[:, d]) / sd[d] for d in range(reference.shape[1])])


def nuts_figure(vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], draws: np.ndarray, index: int, max_dims: int = 6) -> Figure:
    """Marginals of p(z_d | x) from NUTS (histogram) against the guide's q(z_d | x) (line), for the
    ``max_dims`` latent dimensions where the two disagree most (``disagreement``), worst first."""
    ref = draws.reshape(-1, draws.shape[-1])
    q = vae.encode(x, mask).sample((4000,)).reshape(4000, -1).cpu().numpy()
    gaps = disagreement(ref, q)
    order = np.argsort(-gaps, kind="stable")[: min(draws.shape[-1], max_dims)]
    fig, axes = plt.subplots(1, len(order), figsize=(2.4 * len(order), 2.2), squeeze=False)
    for d, ax in zip(order, axes[0]):
        ax.hist(ref[:, d], bins=40, density=True, color="0.75", label="NUTS")
        ax.hist(q[:, d], bins=40, density=True, histtype="step", color="C0", linewidth=1.5, label="guide")
        ax.set_title(f"z{d}: W1/sd = {gaps[d]:.2f}", fontsize=8)
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"datum #{index}: p(z | x) by NUTS vs the amortized guide", fontsize=9)
    fig.tight_layout()
    return fig
