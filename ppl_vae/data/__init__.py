"""Datasets: a source (``sources.py``) plus the shared splitting and preprocessing.

``load_data(DataConfig)`` returns ``Splits(train, val, test)`` of ``ArrayDataset``s and a ``DataSpec``
(source, preprocessing, datum shape, image shape, classes, table columns, quantization bin width).
Nothing here knows about models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np
import torch

from ppl_vae.config import PREPROCESS
from ppl_vae.registry import DATASETS, ConfigError
from ppl_vae.data.base import ArrayDataset, as_dataset  # noqa: F401
from ppl_vae.data.labelled import balanced_labelled_split
from ppl_vae.data.sources import Raw  # noqa: F401  (registers the sources)
from ppl_vae.data import text as _text  # noqa: F401  (registers the text source)
from ppl_vae.data import sequences  # noqa: F401  (registers the sequence sources)
from ppl_vae.data import tables  # noqa: F401  (registers the table source)
from ppl_vae.data import images  # noqa: F401  (registers the image-folder source)
from ppl_vae.data.paths import source_for_path  # noqa: F401
from ppl_vae.data.spec import DataSpec

if TYPE_CHECKING:
    from ppl_vae.config import DataConfig


@dataclass
class Splits:
    train: ArrayDataset
    val: Optional[ArrayDataset]
    test: ArrayDataset
    spec: DataSpec
    labelled: Optional[ArrayDataset] = None  # semi-supervised: the labelled subset (train holds the rest)

    @property
    def meta(self) -> dict:
        """The source's metadata (``spec.meta``)."""
        return self.spec.meta


def _split_indices(n: int, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(n * fraction))
    return perm[k:], perm[:k]


def _scale(x, raw, preprocess):
    if raw.max_level is None:
        raise ConfigError(
            f"data.preprocess = '{preprocess}' needs integer grey levels (images); these data are "
            "real-valued: use 'standardize' or 'none'"
        )
    return x / raw.max_level


def _preprocess(x: np.ndarray, raw, how: str, stats: dict) -> np.ndarray:
    if how in ("scale", "binarize", "binarize-fixed"):
        return _scale(x, raw, how)
    if how == "threshold":
        return (_scale(x, raw, how) > 0.5).astype(np.float32)
    if how == "levels":
        if raw.max_level is None:
            raise ConfigError("data.preprocess = 'levels' needs integer grey levels; these data are real-valued")
        return x
    if how == "squeeze":
        return (_scale(x, raw, how) * raw.max_level + 0.5) / (raw.max_level + 1)
    if how == "standardize":
        return (x - stats["mean"]) / stats["std"]
    return x


def _standardize_stats(x: np.ndarray, meta: dict) -> dict:
    mean = np.nanmean(x, 0)
    std = np.nanstd(x, 0)
    std = np.where(std > 0, std, 1.0)
    if meta.get("tabular"):  # only numeric columns are standardized
        numeric = np.array([c == "numeric" for c in meta["columns"]])
        mean, std = np.where(numeric, mean, 0.0), np.where(numeric, std, 1.0)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def load_data(cfg: DataConfig) -> Splits:
    """Load, split (train / val / test) and preprocess the dataset a ``DataConfig`` names."""
    if cfg.preprocess not in PREPROCESS:
        raise ConfigError(f"unknown data.preprocess '{cfg.preprocess}'; choose one of: {', '.join(PREPROCESS)}")
    if not 0 <= cfg.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {cfg.val_fraction}")
    args = {"path": cfg.path, "columns": cfg.columns, "limit": cfg.limit}
    # data.options: the source's own keyword arguments (checked by name and rule: one-line errors)
    raw = DATASETS.build_at("data.options", cfg.name, {**args, **cfg.options}) if cfg.options else DATASETS.get(cfg.name)(**args)
    x, y = raw.train_x, raw.train_y
    if raw.test_x is None:  # the source has no test split: hold out 20%
        keep, test = _split_indices(len(x), 0.2, cfg.seed)
        test_x, test_y = x[test], None if y is None else y[test]
        x, y = x[keep], None if y is None else y[keep]
    else:
        test_x, test_y = raw.test_x, raw.test_y
    keep, val = _split_indices(len(x), cfg.val_fraction, cfg.seed + 1)
    parts: Dict[str, Tuple[Any, ...]]  # split name -> (x, y or None)
    parts = {
        "train": (x[keep], None if y is None else y[keep]),
        "val": (x[val], None if y is None else y[val]),
        "test": (test_x, test_y),
    }
    if cfg.limit:
        parts["train"] = tuple(None if a is None else a[: cfg.limit] for a in parts["train"])
    meta = dict(raw.meta)
    stats = _standardize_stats(parts["train"][0], meta) if cfg.preprocess == "standardize" else {}
    out: Dict[str, Any] = {}  # split name -> ArrayDataset (val: None when empty)
    for i, (name, (px, py)) in enumerate(parts.items()):
        if name == "val" and len(px) == 0:
            out[name] = None
            continue
        mask = ~np.isnan(px) if (meta.get("tabular") or meta.get("padded")) and np.isnan(px).any() else None
        px = _preprocess(px, raw, cfg.preprocess, stats)
        if cfg.flatten and px.ndim > 2:
            px = px.reshape(len(px), -1)
            mask = None if mask is None else mask.reshape(len(px), -1)
        ds = ArrayDataset(
            torch.from_numpy(np.ascontiguousarray(px, dtype=np.float32)),
            None if py is None else torch.from_numpy(py),
            None if mask is None else torch.from_numpy(mask),
            meta=meta,
        )
        if cfg.preprocess == "binarize-fixed" or (cfg.preprocess == "binarize" and name != "train"):
            ds = ds.fixed_binarized(cfg.seed + 10 * i)
        elif cfg.preprocess == "binarize":
            ds.binarize = True
        out[name] = ds
    if raw.max_level:
        meta["max_level"] = raw.max_level  # read new data the same way (ppl_vae.apps.anomaly)
        meta["bin_width"] = {"scale": 1 / raw.max_level, "squeeze": 1 / (raw.max_level + 1)}.get(cfg.preprocess, 1.0)
    meta["standardize"] = {k: v.tolist() for k, v in stats.items()}
    labelled = None
    if cfg.labels:
        out["train"], labelled = _labelled_subset(out["train"], cfg, meta)
    sizes = {name: len(part) for name, part in out.items() if part is not None}
    if labelled is not None:
        sizes["labelled"] = len(labelled)
    spec = DataSpec(cfg.name, cfg.path, cfg.preprocess, tuple(out["train"].shape), meta, sizes)
    return Splits(out["train"], out["val"], out["test"], spec, labelled)


def _labelled_subset(train: ArrayDataset, cfg: DataConfig, meta: dict) -> Tuple[ArrayDataset, ArrayDataset]:
    """(unlabelled rest, class-balanced labelled subset of size ``cfg.labels``) of the training data."""
    if train.y is None or not meta.get("n_classes"):
        raise ConfigError(f"data.labels needs labelled data; '{cfg.name}' has no labels")
    lab, rest = balanced_labelled_split(train.y.numpy(), cfg.labels, meta["n_classes"], cfg.seed + 2)
    return train.subset(torch.from_numpy(rest)), train.subset(torch.from_numpy(lab))
