"""Matplotlib figures for a trained model: samples, reconstructions, interpolations, latent
traversals, the latent map, and loss curves. Each function returns a Figure and asks of the model
only the methods it uses (``generate``, ``reconstruct``, ``embed``, ``decoder``, ``likelihood``).
Which figures a run draws is its kind's choice (``ModelKind.figures``); ``save_figures`` writes them.

Importing this module leaves matplotlib's backend alone (figures show in Jupyter); the command
line picks a non-interactive backend itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ppl_vae.data.base import ArrayDataset


def _as_images(x: torch.Tensor, image_shape: Sequence[int]) -> np.ndarray:
    arr = x.detach().float().cpu().reshape(len(x), *image_shape).numpy()
    return arr[:, 0] if arr.shape[1] == 1 else np.moveaxis(arr, 1, -1)


def image_grid(
    x: torch.Tensor, image_shape: Sequence[int], nrow: int, title: str = "", row_labels: Optional[List[str]] = None
) -> Figure:
    """A grid of images, ``nrow`` per row, one shared grey scale."""
    imgs = _as_images(x, image_shape)
    ncol = nrow
    rows = math.ceil(len(imgs) / ncol)
    fig, axes = plt.subplots(rows, ncol, figsize=(ncol * 0.9, rows * 0.9 + (0.4 if title else 0)), squeeze=False)
    vmin, vmax = float(imgs.min()), float(imgs.max())
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < len(imgs):
            ax.imshow(imgs[i], cmap="gray", vmin=vmin, vmax=vmax)
    if row_labels:
        for r, label in enumerate(row_labels[:rows]):
            axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def samples_figure(vae: Any, image_shape: Sequence[int], n: int = 64) -> Figure:
    """A grid of ``n`` data generated from the prior (the decoder's mean)."""
    return image_grid(vae.generate(n), image_shape, int(math.sqrt(n)), "samples from the prior (decoder mean)")


@torch.no_grad()
def reconstructions_figure(vae: Any, x: torch.Tensor, image_shape: Sequence[int], n: int = 12) -> Figure:
    x = x[:n].to(vae.device)
    both = torch.cat([x, vae.reconstruct(x)])
    return image_grid(both, image_shape, len(x), "inputs (top) and reconstructions (bottom)")


@torch.no_grad()
def interpolation_figure(vae: Any, x: torch.Tensor, image_shape: Sequence[int], pairs: int = 4, steps: int = 10) -> Figure:
    x = x[: 2 * pairs].to(vae.device)
    z = vae.embed(x)
    t = torch.linspace(0, 1, steps, device=z.device)[:, None]
    rows = [(1 - t) * z[2 * i] + t * z[2 * i + 1] for i in range(len(z) // 2)]
    decoded = vae.likelihood.reconstruct(vae.decoder(torch.cat(rows)))
    return image_grid(decoded, image_shape, steps, "linear interpolation between posterior means")


@torch.no_grad()
def traversal_figure(
    vae: Any,
    x: torch.Tensor,
    image_shape: Sequence[int],
    dims: Optional[List[int]] = None,
    steps: int = 9,
    span: float = 3.0,
    labels: Optional[List[str]] = None,
    title: str = "",
) -> Figure:
    """Each row moves one latent dimension from -span to +span around a datum's posterior mean."""
    z0 = vae.embed(x[:1].to(vae.device))[0]
    dims = list(range(min(vae.latent_dim, 10))) if dims is None else dims
    values = torch.linspace(-span, span, steps, device=z0.device)
    zs = z0.repeat(len(dims) * steps, 1)
    for r, d in enumerate(dims):
        zs[r * steps : (r + 1) * steps, d] = values
    decoded = vae.likelihood.reconstruct(vae.decoder(zs))
    return image_grid(
        decoded,
        image_shape,
        steps,
        title or f"latent traversals ({-span:g} to {span:g})",
        row_labels=labels or [f"z{d}" for d in dims],
    )


@torch.no_grad()
def latent_map_figure(vae: Any, data: ArrayDataset, max_points: int = 2000) -> Figure:
    """Posterior means in 2-D (a PCA projection when the latent has more dimensions), coloured by label."""
    x = data.x[:max_points].to(vae.device)
    mask = None if data.mask is None else data.mask[:max_points].to(vae.device)
    z = vae.embed(x, mask).cpu().numpy()
    label = "z"
    if z.shape[1] > 2:
        from sklearn.decomposition import PCA

        z = PCA(2).fit_transform(z)
        label = "PCA"
    elif z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    c = None if data.y is None else data.y[:max_points].cpu().numpy()
    sc = ax.scatter(z[:, 0], z[:, 1], c=c, cmap="tab10" if c is not None else None, s=6, alpha=0.8)
    if c is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(f"{label} 1"), ax.set_ylabel(f"{label} 2")
    ax.set_title("latent map (posterior means)")
    fig.tight_layout()
    return fig


def loss_curves_figure(history: List[dict]) -> Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [-h["train_loss"] for h in history], label="train (objective)")
    if history and "val_elbo" in history[0]:
        ax.plot(epochs, [h["val_elbo"] for h in history], label="validation ELBO")
    ax.set_xlabel("epoch"), ax.set_ylabel("nats per datum"), ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title("training curves")
    fig.tight_layout()
    return fig


def save_figures(figs: Dict[str, Figure], out_dir: Union[str, Path]) -> List[str]:
    """Write each figure as ``out_dir/NAME.png`` (atomically) and close it; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        tmp = out / f".{name}.png.tmp"
        try:
            fig.savefig(tmp, dpi=100, format="png")
            tmp.replace(path)
        finally:
            plt.close(fig)
            tmp.unlink(missing_ok=True)
        written.append(str(path))
    return written
