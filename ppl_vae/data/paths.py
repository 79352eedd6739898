"""Which data source reads a path: what ``ppl-vae train --data PATH`` sets ``data.name`` to."""

from __future__ import annotations

from pathlib import Path

from ppl_vae.registry import ConfigError

BY_SUFFIX = {".csv": "table", ".npy": "array", ".npz": "array", ".txt": "text"}


def source_for_path(path: str) -> str:
    """The registered source for ``path``: ``.csv`` a table, ``.npy``/``.npz`` an array, ``.txt`` text,
    a folder of images ``image-folder``; a one-line error for anything else."""
    p = Path(path)
    if p.is_dir():
        return "image-folder"
    if not p.exists():
        raise ConfigError(f"--data '{path}' not found")
    source = BY_SUFFIX.get(p.suffix.lower())
    if source is None:
        raise ConfigError(
            f"--data '{path}': cannot tell its source from the suffix '{p.suffix}'; use a .csv, .npy, .npz or .txt file or a "
            "folder of images (or --set data.name=... data.path=...)"
        )
    return source
