"""Labelled subsets for semi-supervised learning: which training data keep their labels.

Generic over data sets: it needs integer labels and the class count, nothing about any model.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ppl_vae.registry import ConfigError


def balanced_labelled_split(y: np.ndarray, n_labels: int, n_classes: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(labelled indices, unlabelled indices): ``n_labels`` spread evenly over the classes."""
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ConfigError(f"labels must be integers in 0..{n_classes - 1}, found {int(y.min())}..{int(y.max())}")
    if not 0 < n_labels <= len(y):
        raise ConfigError(f"data.labels must be between 1 and the {len(y)} training data, got {n_labels}")
    if n_labels < n_classes:
        raise ConfigError(f"data.labels = {n_labels} cannot cover all {n_classes} classes; use at least {n_classes}")
    rng = np.random.default_rng(seed)
    per_class = [n_labels // n_classes + (c < n_labels % n_classes) for c in range(n_classes)]
    picked = []
    for c, k in enumerate(per_class):
        members = np.flatnonzero(y == c)
        if len(members) < k:
            raise ConfigError(f"class {c} has {len(members)} training data, fewer than the {k} labels asked for")
        picked.append(rng.choice(members, k, replace=False))
    labelled = np.sort(np.concatenate(picked))
    return labelled, np.setdiff1d(np.arange(len(y)), labelled)
