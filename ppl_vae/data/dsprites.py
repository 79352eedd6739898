"""A dSprites-like data set with known factors, generated procedurally (no download).

Factors (DESIGN.md section 5): shape (square, ellipse, heart), scale (6 values in 0.5..1), orientation
(40 values in linspace(0, 2 pi, 40)), posX and posY (32 values each in linspace(0, 1, 32)); images are
64x64 and binary, indexed row-major with posY fastest (index bases [245760, 40960, 1024, 32, 1]), as in
the original. The original's exact pixel geometry was never published, so this is "dSprites-like":
a shape's centre is at (0.2 + 0.6 * pos) * 64 pixels, its half-size at scale 1 is 0.12 * 64 pixels,
the ellipse's minor axis is half its major axis (so its orientation is visible), and the heart is
the curve (x^2 + y^2 - 1)^3 = x^2 y^3, point down. Orientation rotates counter-clockwise on screen.

``GroundTruthData`` is the interface the disentanglement metrics use: ``factor_sizes``,
``sample_factors(n, rng)`` and ``sample_observations_from_factors(factors, rng)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ppl_vae.registry import ConfigError

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FULL_SIZES = (3, 6, 40, 32, 32)
IMAGE = 64
CENTRE_LO, CENTRE_SPAN, HALF_SIZE = 0.2, 0.6, 0.12
HEART_EXTENT = 1.25  # the heart curve spans about [-1.14, 1.14] x [-1, 1.25]: fit it in the unit box


class GroundTruthData:
    """Data whose observations are rendered from discrete factors (the metrics' interface)."""

    factor_sizes: Sequence[int]
    factor_names: Sequence[str]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, n_factors) integer factor indices, uniform over the grid."""
        return np.stack([rng.integers(0, k, n) for k in self.factor_sizes], 1)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class DSpritesLike(GroundTruthData):
    """The procedural dSprites. ``sizes`` picks a reduced grid for fast tests, e.g. (3, 2, 4, 8, 8):
    values are then spread over the same ranges (scale 0.5..1, orientation 0..2 pi, position 0..1)."""

    factor_names = FACTOR_NAMES

    def __init__(self, sizes: Sequence[int] = FULL_SIZES) -> None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) != 5 or sizes[0] not in (1, 2, 3) or min(sizes) < 1:
            raise ConfigError(f"dSprites sizes are (shapes <= 3, scales, orientations, posX, posY), got {sizes}")
        self.factor_sizes = sizes
        self.values = [
            np.arange(sizes[0]),
            np.linspace(0.5, 1.0, sizes[1]),
            np.linspace(0, 2 * np.pi, sizes[2]),
            np.linspace(0, 1, sizes[3]),
            np.linspace(0, 1, sizes[4]),
        ]
        self.bases = np.cumprod((sizes[1:] + (1,))[::-1])[::-1]  # [245760, 40960, 1024, 32, 1] for the full grid

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        return np.asarray(factors) @ self.bases

    def factors_of(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index)
        return np.stack([(index // b) % k for b, k in zip(self.bases, self.factor_sizes)], -1)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        return self.render(factors)

    def render(self, factors: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Binary images (n, 1, 64, 64) as float32 for integer factor indices (n, 5)."""
        factors = np.atleast_2d(np.asarray(factors))
        return np.concatenate([self._render(factors[i : i + chunk]) for i in range(0, len(factors), chunk)])

    def _render(self, f: np.ndarray) -> np.ndarray:
        shape = f[:, 0]
        scale = self.values[1][f[:, 1]].astype(np.float32)
        theta = self.values[2][f[:, 2]].astype(np.float32)
        cx = ((CENTRE_LO + CENTRE_SPAN * self.values[3][f[:, 3]]) * IMAGE).astype(np.float32)
        cy = ((CENTRE_LO + CENTRE_SPAN * self.values[4][f[:, 4]]) * IMAGE).astype(np.float32)
        pix = np.arange(IMAGE, dtype=np.float32) + 0.5
        out = np.zeros((len(f), 1, IMAGE, IMAGE), np.float32)
        for k, inside in enumerate((_square, _ellipse, _heart)):
            sel = np.flatnonzero(shape == k)
            if not len(sel):
                continue
            dx = pix[None, None, :] - cx[sel, None, None]  # x: columns, to the right
            dy = -(pix[None, :, None] - cy[sel, None, None])  # y: up on screen (rows grow downwards)
            c, s = np.cos(theta[sel])[:, None, None], np.sin(theta[sel])[:, None, None]
            r = (HALF_SIZE * IMAGE * scale[sel])[:, None, None]
            u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r  # the shape's own frame, rotated by -theta
            out[sel, 0] = inside(u, v)
        return out

    def dataset(self, n: Optional[int] = None, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """(images, factors) for the whole grid, or ``n`` random points of it."""
        if n is None:
            factors = self.factors_of(np.arange(len(self)))
        else:
            factors = self.sample_factors(n, np.random.default_rng(seed))
        return self.render(factors), factors


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 1


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + (2 * v) ** 2 <= 1


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, point down, scaled into the unit box."""
    x, y = u * HEART_EXTENT, v * HEART_EXTENT + 0.1
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


class DSpritesFile(GroundTruthData):
    """The original ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` when a user has it."""

    factor_names = FACTOR_NAMES
    factor_sizes = FULL_SIZES

    def __init__(self, path: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"dSprites file '{path}' not found (the original .npz); leave data.path empty to "
                "generate the dSprites-like data instead"
            )
        with np.load(p, allow_pickle=False) as z:
            if "imgs" not in z or "latents_classes" not in z:
                raise ConfigError(f"'{path}' is not the dSprites .npz (needs arrays 'imgs' and 'latents_classes')")
            self.images = z["imgs"]
            self.classes = z["latents_classes"][:, 1:]  # drop the constant colour factor
        self.bases = DSpritesLike().bases

    def sample_observations_from_factors(self, factors: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        return self.images[np.asarray(factors) @ self.bases][:, None].astype(np.float32)
