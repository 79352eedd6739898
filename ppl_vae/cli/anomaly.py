"""``ppl-vae anomaly RUN INPUT``: per-datum anomaly scores of a table (.csv) or an array of images (.npy/.npz).

``ppl_vae.apps.anomaly`` owns the scores; this module reads the input the way the run read its
training data (a table through the run's schema; an array through the run's preprocessing), the
labels (a file, a column of the table, or an array of the .npz), and writes the scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ppl_vae.registry import ConfigError
from ppl_vae.schema import Rule, positive_int, seed

_TRUE = {"1", "1.0", "true", "yes", "y", "t", "anomaly", "anomalous", "outlier"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", "normal", "inlier"}


def register(sub: Any, number: Callable[[Rule], Callable[[str], Any]]) -> None:
    p = sub.add_parser(
        "anomaly",
        help="anomaly scores (-log p(x), typicality, complexity ratio) of a table or an image array",
        description=(
            "Score every row of INPUT (.csv with the run's columns, or .npy/.npz data like the run's) by its IWAE "
            "log-likelihood: score = -log p(x) (higher = more anomalous), typicality = |log p(x) - mean| / sd over the "
            "run's training data, and for images complexity = -log2 p(x) - zlib bits. With --labels (1 = anomaly): ROC AUC "
            "and average precision."
        ),
    )
    p.add_argument("run_dir")
    p.add_argument("input", nargs="?", help="a .csv table, a .npy/.npz array, or a folder of images")
    p.add_argument(
        "--labels",
        metavar="PATH_OR_COLUMN",
        help="0/1 labels (1 = anomaly): a .npy/.csv/.txt file, a column of INPUT, an array of the .npz, "
        "or (a folder INPUT) the sub-folder holding the anomalies",
    )
    p.add_argument("--out", help="write the scores to this .csv file")
    p.add_argument("--json", action="store_true", help="print JSON: scores, roc_auc and average_precision")
    p.add_argument(
        "--samples", type=number(positive_int(100000)), default=100, metavar="K", help="importance samples per datum (default 100)"
    )
    p.add_argument("--seed", type=number(seed()), default=0)
    p.set_defaults(handler=run_anomaly)


def _as_labels(values: Any, what: str) -> np.ndarray:
    out = []
    for i, v in enumerate(list(values)):
        text = str(v).strip().lower()
        if text in _TRUE:
            out.append(1)
        elif text in _FALSE:
            out.append(0)
        else:
            raise ConfigError(f"{what}: row {i} holds '{v}', not a 0/1 label (1 = anomaly)")
    return np.array(out, dtype=int)


def _labels_file(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return _as_labels(np.load(path, allow_pickle=False).ravel(), str(path))
    lines = [ln.split(",")[0] for ln in path.read_text().split()]
    if lines and lines[0].strip().lower() not in _TRUE | _FALSE:  # a header row
        lines = lines[1:]
    return _as_labels(lines, str(path))


def read_table(path: str, run: Any, labels: Optional[str]) -> Tuple[Any, Optional[np.ndarray], None]:
    from ppl_vae.data.base import ArrayDataset
    from ppl_vae.data.tables import encode, read_csv, schema_of

    schema = schema_of(run.spec.meta)
    frame = read_csv(path)
    y = None
    if labels and labels in frame.columns and labels not in [c["name"] for c in schema]:
        y = _as_labels(frame[labels], f"column '{labels}'")
        frame = frame.drop(columns=[labels])
    x = encode(frame, schema, path)
    mask = ~np.isnan(x)
    import torch

    data = ArrayDataset(torch.from_numpy(np.nan_to_num(x)), None, None if mask.all() else torch.from_numpy(mask), meta=run.spec.meta)
    return data, y, None


def read_images(path: str, run: Any, labels: Optional[str], seed_: int) -> Tuple[Any, Optional[np.ndarray], np.ndarray]:
    """The array in the run's preprocessing, its labels if asked for, and the data as grey levels 0..255."""
    from types import SimpleNamespace

    import torch

    from ppl_vae.data import _preprocess
    from ppl_vae.data.base import ArrayDataset
    from ppl_vae.data.sources import load_array_raw

    folder = Path(path).is_dir()
    if folder:  # a folder of images, read at the run's size and colour mode
        from ppl_vae.data.images import load_image_folder_raw

        options = {k: v for k, v in run.config.data.options.items() if k in ("size", "mode")}
        raw = load_image_folder_raw(path, **options)
    else:
        raw = load_array_raw(path)
    spec = run.spec
    max_level = spec.meta.get("max_level") or raw.max_level
    x = raw.train_x
    if int(np.prod(x.shape[1:])) != int(np.prod(spec.shape)):
        raise ConfigError(f"'{path}' holds data of shape {tuple(x.shape[1:])}; the run was trained on shape {tuple(spec.shape)}")
    stats = {k: np.asarray(v, dtype=np.float32) for k, v in (spec.meta.get("standardize") or {}).items()}
    px = _preprocess(x, SimpleNamespace(max_level=max_level), spec.preprocess, stats).reshape(len(x), *spec.shape)
    data = ArrayDataset(torch.from_numpy(np.ascontiguousarray(px, dtype=np.float32)), meta=spec.meta)
    if spec.preprocess in ("binarize", "binarize-fixed"):
        data = data.fixed_binarized(seed_)
    y = None
    if labels:
        names = list(raw.meta.get("class_names") or [])
        if folder and labels in names and raw.train_y is not None:  # the images of sub-folder LABELS are the anomalies
            y = (raw.train_y == names.index(labels)).astype(int)
        elif raw.train_y is not None and labels == "y":
            y = _as_labels(raw.train_y, f"'{path}' array y")
        elif path.endswith(".npz") and labels in np.load(path).files:
            y = _as_labels(np.load(path)[labels].ravel(), f"'{path}' array {labels}")
    levels = x * (255.0 / max_level) if max_level else x
    return data, y, levels.reshape(len(x), -1)


def run_anomaly(args: argparse.Namespace) -> int:
    from ppl_vae.apps.anomaly import anomaly_scores, evaluate_scores
    from ppl_vae.kinds import require
    from ppl_vae.runs import load_run

    run = load_run(args.run_dir, "auto")
    if not args.input:
        raise ConfigError("anomaly needs the data to score: ppl-vae anomaly RUN INPUT (.csv, .npy or .npz)")
    suffix = Path(args.input).suffix.lower()
    if suffix not in (".csv", ".npy", ".npz") and not Path(args.input).is_dir():
        raise ConfigError(f"INPUT must be a .csv table, a .npy/.npz array or a folder of images, got '{args.input}'")
    if not Path(args.input).exists():
        raise ConfigError(f"input file '{args.input}' not found")
    out = Path(args.out) if args.out else None
    if out is not None and (out.suffix.lower() != ".csv" or not out.parent.is_dir()):
        raise ConfigError(f"--out must name a .csv file in an existing folder, got '{out}'")
    require(run.config.model.kind, "anomaly", "anomaly scoring")
    if suffix == ".csv":
        data, y, levels = read_table(args.input, run, args.labels)
    else:
        data, y, levels = read_images(args.input, run, args.labels, args.seed)
    if args.labels and y is None:
        path = Path(args.labels)
        if not path.is_file():
            raise ConfigError(f"--labels '{args.labels}' is neither a file nor a column/array of '{args.input}'")
        y = _labels_file(path)
    try:  # typicality needs the run's training data; a run whose data have moved is scored without it
        reference = run.split("train").subset(slice(0, 1000))
    except ConfigError:
        reference = None
    scores = anomaly_scores(run, data, reference=reference, raw_levels=levels, num_samples=args.samples, seed=args.seed)
    report: Dict[str, Any] = {"n": len(data), "iwae_samples": args.samples, "scores": [round(float(s), 6) for s in scores["score"]]}
    for name, values in scores.items():
        if name != "score":
            report[f"{name}_scores"] = [round(float(s), 6) for s in values]
    if y is not None:
        report.update(evaluate_scores(scores["score"], y))
        for name, values in scores.items():
            if name != "score":
                report[name] = evaluate_scores(values, y)
    if out is not None:
        import pandas as pd

        from ppl_vae.cli.impute import write_csv

        table = pd.DataFrame({"row": np.arange(len(data)), **{k: v for k, v in scores.items()}})
        if y is not None:
            table["label"] = y
        write_csv(table, out)
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"scored {len(data)} data (-log p(x), K={args.samples}): mean {np.mean(scores['score']):.3f}, "
        f"max {np.max(scores['score']):.3f}"
    )
    if y is not None:
        print(f"{'score':<12} {'ROC AUC':>8} {'avg prec':>9}")
        print(f"{'-log p(x)':<12} {report['roc_auc']:>8.4f} {report['average_precision']:>9.4f}")
        for name in scores:
            if name != "score":
                print(f"{name:<12} {report[name]['roc_auc']:>8.4f} {report[name]['average_precision']:>9.4f}")
    if out is not None:
        print(f"scores: {out}")
    return 0
