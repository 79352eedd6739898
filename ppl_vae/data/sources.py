"""Raw data sources: each returns ``Raw(train_x, train_y, test_x, test_y, max_level, meta)``.

Every loader takes ``(path, columns, limit)``; ``limit`` (the number of training data that will be
kept) matters only to sources that generate their data, which then render no more than needed.

* ``digits``: scikit-learn's bundled 8x8 digits (levels 0..16), the embedded default.
* ``fashion-mnist`` / ``mnist``: the four IDX files (plain or .gz) from a directory.
* ``array``: a ``.npy`` (data only) or ``.npz`` (arrays ``x`` and optionally ``y``) file.
* ``csv``: a table with a header; numeric, binary and categorical columns, empty cells missing.
"""

from __future__ import annotations

import csv
import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, cast

import numpy as np

from ppl_vae.data.base import load_numpy
from ppl_vae.registry import DATASETS, ConfigError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class Raw:
    train_x: np.ndarray
    train_y: Optional[np.ndarray]
    test_x: Optional[np.ndarray]  # None: the loader splits a test set off itself
    test_y: Optional[np.ndarray]
    max_level: Optional[float] = None  # data are integer levels 0..max_level (images), else None
    meta: dict = field(default_factory=dict)


@DATASETS.register("digits")
def load_digits_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Raw(
        d.images.astype(np.float32)[:, None],
        d.target,
        None,
        None,
        16.0,
        {"image_shape": (1, 8, 8), "n_classes": 10, "class_names": [str(c) for c in range(10)]},
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format) as a numpy array; ``.gz`` files are read transparently."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as err:
        raise ConfigError(f"cannot read IDX file '{path}': {err}") from None


def _find(directory: Path, stem: str) -> Optional[Path]:
    for candidate in (directory / stem, directory / f"{stem}.gz", directory / stem.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(directory: str, what: str, how_to_get: str) -> Raw:
    d = Path(directory)
    paths = [_find(d, s) for s in IDX_FILES]
    if not d.is_dir() or None in paths:
        missing = [s for s, p in zip(IDX_FILES, paths) if p is None]
        raise ConfigError(f"{what} not found in '{d}' (missing {', '.join(missing)}[.gz]); {how_to_get}")
    tx, ty, sx, sy = (read_idx(cast(Path, p)) for p in paths)  # none is None: checked above
    if tx.ndim != 3 or len(tx) != len(ty) or len(sx) != len(sy):
        raise ConfigError(f"the IDX files in '{d}' do not hold images with matching labels")
    return Raw(
        tx[:, None].astype(np.float32),
        ty.astype(np.int64),
        sx[:, None].astype(np.float32),
        sy.astype(np.int64),
        255.0,
        {"image_shape": (1,) + tx.shape[1:], "n_classes": 10},
    )


@DATASETS.register("fashion-mnist")
def load_fashion_mnist_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    raw = load_idx_dir(
        path or FASHION_MNIST_DIR,
        "Fashion-MNIST",
        "install it with 'apt-get install -y dataset-fashion-mnist' or set data.path to a directory holding the four IDX files",
    )
    raw.meta["class_names"] = list(FASHION_MNIST_CLASSES)
    return raw


@DATASETS.register("mnist")
def load_mnist_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    if not path:
        raise ConfigError("the mnist dataset needs data.path: a directory holding the four MNIST IDX files")
    return load_idx_dir(path, "MNIST", "set data.path to a directory holding the four IDX files")


@DATASETS.register("array")
def load_array_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    loaded = load_numpy(path, "data file", "set data.path to a .npy or .npz file", "write it with numpy.save or numpy.savez")
    if isinstance(loaded, np.ndarray):
        x, y = loaded, None
    else:
        keys = list(loaded.keys())
        if not keys:
            raise ConfigError(f"'{path}' holds no arrays")
        x = loaded["x"] if "x" in keys else loaded[keys[0]]
        y = loaded["y"] if "y" in keys else None
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"'{path}' holds {x.dtype} data; numeric arrays are needed")
    if x.ndim < 2:
        raise ConfigError(f"'{path}' holds an array of shape {x.shape}; expected (n_data, *datum_shape)")
    if x.size == 0:
        raise ConfigError(f"'{path}' holds no data (an array of shape {x.shape}); expected at least one datum")
    is_int = x.dtype.kind in "biu"
    meta = {"image_shape": x.shape[1:]} if x.ndim == 4 else {"image_shape": (1,) + x.shape[1:]} if x.ndim == 3 else {}
    max_level = float(x.max()) if is_int and x.size and x.min() >= 0 else None
    if y is not None:
        if y.dtype.kind not in "biu" or y.shape != (len(x),) or (y.size and y.min() < 0):
            raise ConfigError(f"'{path}': labels 'y' must be non-negative integers, one per datum; got {y.dtype} of shape {y.shape}")
        meta["n_classes"] = int(y.max()) + 1 if y.size else 0
    return Raw(x.astype(np.float32), None if y is None else y.astype(np.int64), None, None, max_level, meta)


_MISSING = {"", "na", "nan", "null", "none", "?"}


def _column_type(values: List[str]) -> str:
    present = [v for v in values if v.strip().lower() not in _MISSING]
    try:
        nums = [float(v) for v in present]
    except ValueError:
        return f"categorical:{max(len(set(present)), 2)}"
    return "binary" if nums and set(nums) <= {0.0, 1.0} else "numeric"


@DATASETS.register("csv")
def load_csv_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    """A CSV table. Column types are inferred (or given as data.columns); categorical values are
    coded 0..K-1 in sorted order; missing cells become NaN and are masked out."""
    p = Path(path)
    if not path or not p.is_file():
        raise ConfigError(f"CSV file '{path}' not found; set data.path to a .csv file with a header row")
    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ConfigError(f"'{path}' needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if any(len(r) != len(header) for r in body):
        bad = next(i for i, r in enumerate(body) if len(r) != len(header))
        raise ConfigError(f"'{path}' row {bad + 2} has {len(body[bad])} cells but the header has {len(header)}")
    cols = list(zip(*body))
    types = list(columns) if columns else [_column_type(list(c)) for c in cols]
    if len(types) != len(header):
        raise ConfigError(f"data.columns lists {len(types)} types but '{path}' has {len(header)} columns")
    x = np.full((len(body), len(header)), np.nan, np.float32)
    categories = {}
    for j, (t, values) in enumerate(zip(types, cols)):
        present = [(i, v.strip()) for i, v in enumerate(values) if v.strip().lower() not in _MISSING]
        if t.startswith("categorical"):
            levels = sorted({v for _, v in present})
            categories[header[j]] = levels
            k = max(len(levels), 2)
            types[j] = f"categorical:{k}" if ":" not in t else t
            for i, v in present:
                x[i, j] = levels.index(v)
        else:
            for i, v in present:
                try:
                    x[i, j] = float(v)
                except ValueError:
                    raise ConfigError(f"'{path}' column '{header[j]}' is {t} but row {i + 2} holds '{v}'") from None
    return Raw(x, None, None, None, None, {"columns": types, "column_names": header, "categories": categories, "tabular": True})


@DATASETS.register("dsprites")
def load_dsprites_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    """The original dSprites ``.npz`` when ``path`` names it (all 737,280 images), else ``limit``
    (default 30,000) random points of the procedural dSprites-like grid; a fifth becomes the test set."""
    from ppl_vae.data.dsprites import FACTOR_NAMES, FULL_SIZES, DSpritesFile, DSpritesLike

    meta = {
        "image_shape": (1, 64, 64),
        "factor_sizes": list(FULL_SIZES),
        "factor_names": list(FACTOR_NAMES),
        "ground_truth": "file" if path else "procedural",
    }
    if path:
        source = DSpritesFile(path)
        x = source.images[:, None]
    else:
        x, _ = DSpritesLike().dataset(int(limit / 0.8) if limit else 30000, seed=0)
    return Raw(x.astype(np.uint8), None, None, None, 1.0, meta)
