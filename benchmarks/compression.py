"""Bits-back compression (``ppl_vae.compress``) against the model's negative ELBO and generic compressors.

For each row it trains a run once (``python -m ppl_vae train RECIPE --set ...`` into ``--runs``; kept
and reused), takes the run's test split as an array, and reports in bits per dimension: the .ppz
file (header and initial bits included), its payload alone (without the one-off header and initial bits), the model's
negative ELBO (16 guide draws per datum), and gzip / bz2 / lzma (Python's standard library, highest
levels; for binary data the better of bytes and packed bits) and PNG (Pillow, optimize=True, all
images tiled into one mosaic: the kindest setting for PNG). It times compress and decompress on the
CPU (MB/s of the input's uint8 bytes) and the share of that time in the networks (and their
probability tables) versus the entropy coder.

    python benchmarks/compression.py                       # every row (about 15 min on 2 busy cores)
    python benchmarks/compression.py --rows digits-binary --sweep-bits 6,8,10,12
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

FMNIST = "apt-get install dataset-fashion-mnist, or --set data.path=DIR"
ROWS: Dict[str, List[str]] = {
    "digits-binary": ["vae-digits"],
    "digits-17-categorical": ["categorical-vae-digits"],
    "digits-17-dlogistic": [
        "vae-digits",
        "--set", "data.preprocess=levels",
        "--set", 'model.likelihood={name="discretized-logistic", components=3, levels=17}',
        "--set", "train.epochs=48",
    ],
    "fmnist-binary": ["vae-fashion-mnist", "--set", "train.epochs=1"],
    "fmnist-8bit-dlogistic": [
        "vae-fashion-mnist",
        "--set", "data.preprocess=levels",
        "--set", 'model.likelihood={name="discretized-logistic", components=3}',
        "--set", "train.epochs=20",
    ],
}  # fmt: skip


def train(name: str, runs: Path) -> Path:
    out = runs / name
    if not (out / "metrics.json").is_file():  # written when training has finished
        cmd = [sys.executable, "-m", "ppl_vae", "train", *ROWS[name], "--set", "eval.iwae_samples=10", "--set", "eval.n_test=100"]
        cmd += ["--out", str(out), "--no-figures", "--no-progress"]
        print("$", " ".join(cmd), flush=True)
        t = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"  trained in {time.time() - t:.0f} s", flush=True)
    return out


def generic(x: np.ndarray, image_shape: tuple) -> Dict[str, float]:
    """Bits per dimension of gzip, bz2, lzma and a PNG mosaic on the uint8 array ``x``."""
    from PIL import Image

    dims = x.size
    binary = bool(np.isin(x, (0, 1)).all())
    raws = [x.tobytes()] + ([np.packbits(x.reshape(-1)).tobytes()] if binary else [])
    out = {
        "gzip": min(len(gzip.compress(r, 9)) for r in raws),
        "bz2": min(len(bz2.compress(r, 9)) for r in raws),
        "lzma": min(len(lzma.compress(r, preset=9 | lzma.PRESET_EXTREME)) for r in raws),
    }
    h, w = image_shape[-2:]
    n = len(x)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    mosaic = np.zeros((rows * h, cols * w), dtype=np.uint8)
    for i, img in enumerate(x.reshape(n, h, w)):
        r, c = divmod(i, cols)
        mosaic[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    buffer = io.BytesIO()
    if binary:
        Image.fromarray(mosaic.astype(bool)).save(buffer, format="PNG", optimize=True)
    else:
        Image.fromarray(mosaic, mode="L").save(buffer, format="PNG", optimize=True)
    out["png"] = len(buffer.getvalue())
    return {k: 8 * v / dims for k, v in out.items()}


def measure(name: str, runs: Path, n: int, latent_bits: List[int]) -> List[dict]:
    import torch

    import ppl_vae
    from ppl_vae.apps.compression import compress_with_stats, decompress_with_stats
    from ppl_vae.data.base import ArrayDataset
    from ppl_vae.runs import load_run

    loaded = load_run(train(name, runs), "cpu")
    test = loaded.split("test")
    x = test.x[:n] if n else test.x
    arr = x.numpy().astype(np.uint8)
    torch.manual_seed(0)
    est = ppl_vae.iwae_log_likelihood(loaded.module, ArrayDataset(x), num_samples=16)
    neg_elbo = float(-est["elbo"].mean()) / (math.log(2) * arr[0].size)
    base = generic(arr, loaded.spec.image_shape or (1, 1, arr.shape[1]))
    results = []
    for bits in latent_bits:
        data, rep = compress_with_stats(loaded.module, arr, bits)
        back, drep = decompress_with_stats(loaded.module, data)
        assert np.array_equal(back, arr) and back.dtype == arr.dtype
        mb = arr.nbytes / 1e6
        row = {
            "row": name,
            "n": len(arr),
            "dims": int(arr.size),
            "latent_bits": bits,
            "ppz_bpd": rep["bits_per_dim"],
            "ppz_payload_bpd": rep["payload_bits_per_dim"],  # without the header and the initial bits
            "initial_bits": rep["initial_bits"],
            "neg_elbo_bpd": neg_elbo,
            **{f"{k}_bpd": v for k, v in base.items()},
            "compress_MBps": mb / rep["seconds"],
            "decompress_MBps": mb / drep["seconds"],
            "compress_network_share": rep["network_seconds"] / rep["seconds"],
            "decompress_network_share": drep["network_seconds"] / drep["seconds"],
            "compress_coder_share": rep["coder_seconds"] / rep["seconds"],
            "decompress_coder_share": drep["coder_seconds"] / drep["seconds"],
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def table(results: List[dict]) -> str:
    head = "| data | n | .ppz | payload | -ELBO | gzip | bz2 | lzma | PNG | compress MB/s | decompress MB/s | network share (c/d) |"
    lines = [head, "|" + "---|" * 12]
    for r in results:
        lines.append(
            f"| {r['row']} (B={r['latent_bits']}) | {r['n']} | **{r['ppz_bpd']:.3f}** | {r['ppz_payload_bpd']:.3f} | "
            f"{r['neg_elbo_bpd']:.3f} | {r['gzip_bpd']:.3f} | {r['bz2_bpd']:.3f} | {r['lzma_bpd']:.3f} | {r['png_bpd']:.3f} | "
            f"{r['compress_MBps']:.3f} | {r['decompress_MBps']:.3f} | "
            f"{r['compress_network_share']:.0%} / {r['decompress_network_share']:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = [r for r in ROWS if r != "digits-17-categorical"]  # 256 logits per pixel: slow to train on a CPU
    p.add_argument(
        "--rows", default=",".join(default), help=f"comma-separated rows of: {', '.join(ROWS)} (default: {', '.join(default)})"
    )
    p.add_argument("--runs", default="runs/bench-compression", help="where the trained runs are kept (reused)")
    p.add_argument("--n", type=int, default=0, help="code the first N test data (0 = all)")
    p.add_argument("--latent-bits", type=int, default=12)
    p.add_argument("--sweep-bits", default="", help="comma-separated latent bits to compare instead of --latent-bits")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args()
    bits = [int(b) for b in args.sweep_bits.split(",")] if args.sweep_bits else [args.latent_bits]
    results: List[dict] = []
    for name in args.rows.split(","):
        if name not in ROWS:
            sys.exit(f"unknown row '{name}'; choose from {', '.join(ROWS)}")
        if name.startswith("fmnist") and not Path("/usr/share/datasets/fashion-mnist").is_dir():
            print(f"skipping {name}: Fashion-MNIST is not installed ({FMNIST})")
            continue
        results += measure(name, Path(args.runs), args.n, bits)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
