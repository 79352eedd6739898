"""The ``image-folder`` data source: a directory of PNG/JPEG files read with Pillow.

Images directly in the folder are unlabelled; images in sub-folders are labelled by the sub-folder's
name (classes in sorted order, ``meta["class_names"]``). Every image is converted to grey (``L``) or
RGB and resized to ``size`` x ``size`` (``data.options = {size = 28, mode = "grey"}``), then kept as
grey levels 0..255, so the images' usual preprocessing (``scale``, ``binarize``) applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ppl_vae.data.sources import Raw
from ppl_vae.registry import DATASETS, ConfigError

SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {"grey": "L", "gray": "L", "rgb": "RGB"}


def image_files(folder: Path) -> Tuple[List[Path], List[Optional[str]]]:
    """The image files under ``folder`` (top level and one level of sub-folders), sorted, and each one's label."""
    files: List[Path] = []
    labels: List[Optional[str]] = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in SUFFIXES:
            files.append(p)
            labels.append(None)
        elif p.is_dir():
            for q in sorted(p.iterdir()):
                if q.is_file() and q.suffix.lower() in SUFFIXES:
                    files.append(q)
                    labels.append(p.name)
    return files, labels


def read_image(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 (channels, size, size); a one-line error naming the file if Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            a = np.asarray(opened.convert(MODES[mode]).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(f"cannot read image '{path}': {err}") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


@DATASETS.register("image-folder")
def load_image_folder_raw(
    path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0, size: int = 28, mode: str = "grey"
) -> Raw:
    """Every PNG/JPEG in ``path`` and its sub-folders, resized to ``size`` x ``size``, grey or RGB."""
    folder = Path(path)
    if not path or not folder.is_dir():
        raise ConfigError(f"image folder '{path}' not found; set data.path (or --data) to a directory of PNG/JPEG files")
    if not isinstance(size, int) or not 2 <= size <= 1024:
        raise ConfigError(f"data.options.size must be an integer in 2..1024, got {size!r}")
    if mode not in MODES:
        raise ConfigError(f"data.options.mode must be one of: {', '.join(MODES)}; got {mode!r}")
    files, labels = image_files(folder)
    if not files:
        raise ConfigError(f"no .png, .jpg or .jpeg files in '{path}' or its sub-folders")
    if limit:
        keep = np.random.default_rng(0).permutation(len(files))[: int(limit / 0.8) + 1]
        files, labels = [files[i] for i in sorted(keep)], [labels[i] for i in sorted(keep)]
    x = np.stack([read_image(f, size, mode) for f in files]).astype(np.float32)
    meta: dict = {"image_shape": tuple(x.shape[1:])}
    y = None
    if all(lab is not None for lab in labels):
        names = sorted({str(lab) for lab in labels})
        y = np.array([names.index(str(lab)) for lab in labels], dtype=np.int64)
        meta.update(n_classes=len(names), class_names=names)
    return Raw(x, y, None, None, 255.0, meta)
