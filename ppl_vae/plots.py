"""Matplotlib figures for a trained VAE: samples, reconstructions, interpolations, latent
traversals, the latent map, and loss curves. Each function returns a Figure; ``save_run_figures``
writes the standard set as PNGs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _as_images(x: torch.Tensor, image_shape) -> np.ndarray:
    x = x.detach().float().cpu().reshape(len(x), *image_shape).numpy()
    return x[:, 0] if x.shape[1] == 1 else np.moveaxis(x, 1, -1)


def image_grid(x: torch.Tensor, image_shape, nrow: int, title: str = "", row_labels: Optional[List[str]] = None):
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
def samples_figure(vae, image_shape, n: int = 64):
    if hasattr(vae, "generate_grid"):  # label-aware: one row per class
        return conditional_generation_figure(vae, image_shape, max(1, n // vae.n_classes))
    return image_grid(vae.generate(n), image_shape, int(math.sqrt(n)), "samples from the prior (decoder mean)")


@torch.no_grad()
def conditional_generation_figure(vae, image_shape, n_styles: int = 8):
    """One row per class, one column per style z drawn from the prior (shared down each column)."""
    return image_grid(vae.generate_grid(n_styles), image_shape, n_styles,
                      "conditional generation: rows are classes, columns share z",
                      row_labels=[str(c) for c in range(vae.n_classes)])


@torch.no_grad()
def style_transfer_figure(vae, x, y, image_shape, n: int = 6):
    """Each row: z encoded from one image (left, with its own label), decoded with every class."""
    x, y = x[:n].to(vae.device), y[:n].to(vae.device)
    grid = torch.cat([torch.cat([x[i:i + 1], out]) for i, out in
                      enumerate(vae.style_transfer(x, y).reshape(len(x), vae.n_classes, *x.shape[1:]))])
    return image_grid(grid, image_shape, vae.n_classes + 1, f"style transfer: input, then its z with classes 0..{vae.n_classes - 1}")


@torch.no_grad()
def reconstructions_figure(vae, x, image_shape, n: int = 12):
    x = x[:n].to(vae.device)
    both = torch.cat([x, vae.reconstruct(x)])
    return image_grid(both, image_shape, len(x), "inputs (top) and reconstructions (bottom)")


@torch.no_grad()
def interpolation_figure(vae, x, image_shape, pairs: int = 4, steps: int = 10):
    x = x[: 2 * pairs].to(vae.device)
    z = vae.embed(x)
    t = torch.linspace(0, 1, steps, device=z.device)[:, None]
    rows = [(1 - t) * z[2 * i] + t * z[2 * i + 1] for i in range(len(z) // 2)]
    decoded = vae.likelihood.reconstruct(vae.decoder(torch.cat(rows)))
    return image_grid(decoded, image_shape, steps, "linear interpolation between posterior means")


@torch.no_grad()
def traversal_figure(vae, x, image_shape, dims: Optional[List[int]] = None, steps: int = 9, span: float = 3.0,
                     labels: Optional[List[str]] = None, title: str = ""):
    """Each row moves one latent dimension from -span to +span around a datum's posterior mean."""
    z0 = vae.embed(x[:1].to(vae.device))[0]
    dims = list(range(min(vae.latent_dim, 10))) if dims is None else dims
    values = torch.linspace(-span, span, steps, device=z0.device)
    zs = z0.repeat(len(dims) * steps, 1)
    for r, d in enumerate(dims):
        zs[r * steps:(r + 1) * steps, d] = values
    decoded = vae.likelihood.reconstruct(vae.decoder(zs))
    return image_grid(decoded, image_shape, steps, title or f"latent traversals ({-span:g} to {span:g})",
                      row_labels=labels or [f"z{d}" for d in dims])


@torch.no_grad()
def latent_map_figure(vae, data, max_points: int = 2000):
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


def loss_curves_figure(history: List[dict]):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [-h["train_loss"] for h in history], label="train (objective)")
    if history and "val_elbo" in history[0]:
        ax.plot(epochs, [h["val_elbo"] for h in history], label="validation ELBO")
    ax.set_xlabel("epoch"), ax.set_ylabel("nats per datum"), ax.legend(), ax.grid(alpha=0.3)
    ax.set_title("training curves")
    fig.tight_layout()
    return fig


def save_run_figures(vae, splits, history, out_dir) -> List[str]:
    """Write the standard figures of a run; image figures only when the data are images."""
    shape = splits.meta.get("image_shape")
    if hasattr(vae, "generate_grid"):  # label-aware VAEs
        figs = {"loss_curves": loss_curves_figure(history)}
        if shape is not None and not splits.meta.get("tabular"):
            figs["conditional_generation"] = conditional_generation_figure(vae, shape)
            figs["style_transfer"] = style_transfer_figure(vae, splits.test.x, splits.test.y, shape)
        return _save_all(figs, out_dir)
    figs = {"loss_curves": loss_curves_figure(history), "latent_map": latent_map_figure(vae, splits.test)}
    if shape is not None and not splits.meta.get("tabular"):
        x = splits.test.x
        figs.update(samples=samples_figure(vae, shape), reconstructions=reconstructions_figure(vae, x, shape),
                    interpolations=interpolation_figure(vae, x, shape), traversals=traversal_figure(vae, x, shape))
    return _save_all(figs, out_dir)


def _save_all(figs: dict, out_dir) -> List[str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written
