"""``ppl-vae compress`` and ``ppl-vae decompress``: a data array to a .ppz file under a trained run, and back.

``ppl_vae.apps.compression`` owns the coding and ``ppl_vae.apps.ppz`` the file format; this module
reads and writes the files (.npy / .npz arrays in, atomically written outputs) and checks the input
against the run's data specification.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ppl_vae.data.base import load_numpy
from ppl_vae.registry import ConfigError
from ppl_vae.schema import Rule


def register(sub: Any, number: Callable[[Rule], Callable[[str], Any]]) -> None:
    from ppl_vae.apps.compression import coding_likelihoods

    c = sub.add_parser(
        "compress",
        help="compress a data array losslessly under a trained run (bits-back ANS) into a .ppz file",
        description=(
            "Compress INPUT (.npy, or .npz holding 'x' or one array; shaped (n, ...) in the run's data format, e.g. "
            "binary for a Bernoulli run) with bits-back coding. The run's likelihood must be discrete: "
            f"{', '.join(coding_likelihoods())}."
        ),
    )
    c.add_argument("run_dir")
    c.add_argument("input", help="a .npy or .npz array of data in the run's format, or a folder of images (as the run read them)")
    c.add_argument("--out", required=True, help="the .ppz file to write")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(handler=run_compress)

    d = sub.add_parser("decompress", help="decompress a .ppz file made by 'ppl-vae compress' with the same run")
    d.add_argument("run_dir")
    d.add_argument("file", help="the .ppz file")
    d.add_argument("--out", required=True, help="the .npz (array 'x') or .npy file to write")
    d.set_defaults(handler=run_decompress)


def read_input(path: str, data: Any) -> np.ndarray:
    """A .npy/.npz array, or a folder of PNG/JPEG files read as the run's ``image-folder`` source reads
    them (``data.options`` size and mode), as uint8 levels shaped (n, channels, size, size)."""
    folder = Path(path)
    if not folder.is_dir():
        return read_array(path)
    from ppl_vae.data.images import image_files, read_image

    files, _ = image_files(folder)
    if not files:
        raise ConfigError(f"no .png, .jpg or .jpeg files in '{path}' or its sub-folders")
    options = dict(getattr(data, "options", None) or {})
    return np.stack([read_image(f, int(options.get("size", 28)), str(options.get("mode", "grey"))) for f in files])


def read_array(path: str) -> np.ndarray:
    """The data array of a .npy file, or of a .npz file (its 'x', or its only array); one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"input file '{path}' not found")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise ConfigError(f"input '{path}' must be a .npy or .npz numpy file")
    loaded = load_numpy(path, "input file")
    if isinstance(loaded, np.ndarray):
        return loaded
    keys = list(loaded.keys())
    if "x" in keys:
        return loaded["x"]
    if len(keys) != 1:
        raise ConfigError(f"'{path}' holds arrays {keys}; name the data 'x' (np.savez(file, x=data))")
    return loaded[keys[0]]


def _check_spec(x: np.ndarray, spec: Any, path: str) -> None:
    """The input's shape against the run's datum shape (the values are checked by the likelihood)."""
    size = math.prod(spec.shape)
    shapes = [tuple(spec.shape)] + ([tuple(spec.image_shape)] if spec.image_shape else [])
    if x.ndim < 2 or len(x) == 0 or math.prod(x.shape[1:]) != size:
        allowed = " or ".join(f"(n, {', '.join(map(str, s))})" for s in shapes)
        raise ConfigError(f"'{path}' holds an array of shape {x.shape}; this run's data are shaped {allowed}")


def _write(path: Path, data: bytes) -> None:
    from ppl_vae.training.checkpoint import atomic_write

    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as err:
        raise ConfigError(f"cannot write '{path}': {err.strerror or err}") from None


def run_compress(args: argparse.Namespace) -> int:
    from ppl_vae.apps.compression import compress_with_stats
    from ppl_vae.kinds import require
    from ppl_vae.runs import load_run

    out = Path(args.out)
    if out.suffix.lower() != ".ppz":
        raise ConfigError(f"--out must name a .ppz file, got '{out}'")
    loaded = load_run(args.run_dir, "cpu")
    require(loaded.config.model.kind, "compress", "'compress'")
    x = read_input(args.input, loaded.config.data)
    _check_spec(x, loaded.spec, args.input)
    data, report = compress_with_stats(loaded.module, x)
    _write(out, data)
    report["file"] = str(out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{args.input}: {report['input_bytes']} bytes -> {out}: {report['output_bytes']} bytes "
            f"({report['bits_per_dim']:.4f} bits/dim, of which initial bits {report['initial_bits'] / report['dims']:.4f}; "
            f"{report['seconds']:.2f} s)"
        )
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from ppl_vae.apps.compression import decompress
    from ppl_vae.kinds import require
    from ppl_vae.runs import load_run

    out = Path(args.out)
    if out.suffix.lower() not in (".npz", ".npy"):
        raise ConfigError(f"--out must name a .npz or .npy file, got '{out}'")
    source = Path(args.file)
    if not source.is_file():
        raise ConfigError(f"compressed file '{source}' not found")
    loaded = load_run(args.run_dir, "cpu")
    require(loaded.config.model.kind, "compress", "'decompress'")
    x = decompress(loaded.module, source.read_bytes())
    buffer = io.BytesIO()
    if out.suffix.lower() == ".npz":
        np.savez(buffer, x=x)
    else:
        np.save(buffer, x)
    _write(out, buffer.getvalue())
    print(f"{source} -> {out}: {x.dtype} array of shape {x.shape}")
    return 0
