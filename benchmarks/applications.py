"""Imputation, anomaly scores and synthetic tables (``ppl_vae.apps``) against standard baselines.

* Imputation, on the Fair affairs table bundled with statsmodels (6366 rows; integer, numeric and
  categorical columns, as in ``models/tabular-vae.toml``) with 20% of the cells masked at random:
  RMSE of numeric and integer columns in units of each column's standard deviation (mean over
  columns) and accuracy of the categorical columns, for ``ppl_vae.impute`` (trained on the masked
  table; a 5-component and a 1-component Gaussian per number), the column mean / mode,
  scikit-learn's KNNImputer (k = 5) and IterativeImputer (numbers standardized, categories one-hot).
* Anomaly ROC AUC: scikit-learn digits (train on 0-8 of a 70% split, score the other 30%; 9 is the
  anomaly) and Fashion-MNIST (train on 6000 images of the other classes, score 2000 test images with
  one class held out), for the VAE's -log p(x) (IWAE), its typicality and complexity-ratio
  corrections, IsolationForest, PCA reconstruction error, a one-class SVM and the mean distance to
  the k = 5 nearest training images. VAE: discretized logistic likelihood on
  digits' 17 grey levels, continuous Bernoulli on Fashion-MNIST scaled to [0, 1].
* Synthetic tables on Fair: SDMetrics quality against the held-out rows and the DCR ratio (median
  distance of synthetic rows to the closest training row over that of held-out rows), for
  ``ppl_vae.synthesize``, independent marginals, a Gaussian copula with empirical marginals and SDV's
  TVAE (``pip install 'ppl-vae[bench]'``; metadata detected from the same training rows, trained on
  them for ``--tvae-epochs``; skipped with a note when SDV is not installed).

    python benchmarks/applications.py --out benchmarks/applications.md     # about 20 min on 2 busy cores
    python benchmarks/applications.py --parts anomaly --epochs 5            # a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

import ppl_vae
from ppl_vae.runs import load_config, train_run

FAIR_TYPES = '{occupation = "categorical", occupation_husb = "categorical"}'


def train(recipe: str, out: Path, overrides: List[str]) -> Any:
    cfg = load_config(recipe, overrides)
    t = time.time()
    train_run(cfg, out, progress=False, figures=False)
    print(f"  trained {recipe} {' '.join(overrides)} in {time.time() - t:.0f} s", file=sys.stderr)
    return ppl_vae.load(out)


# ---- imputation -----------------------------------------------------------------------------
def fair() -> Any:
    from statsmodels.datasets import fair as fair_data

    return fair_data.load_pandas().data


def _design(frame: Any, schema: List[dict]) -> np.ndarray:
    """Numbers standardized, categories one-hot (NaN over the whole block when missing)."""
    from ppl_vae.data.tables import encode

    x = encode(frame, schema)
    cols = []
    for j, c in enumerate(schema):
        if c["type"] == "categorical":
            k = len(c["categories"])
            block = np.full((len(x), k), np.nan)
            ok = ~np.isnan(x[:, j])
            block[ok] = 0.0
            block[np.flatnonzero(ok), x[ok, j].astype(int)] = 1.0
            cols.append(block)
        else:
            cols.append(x[:, j : j + 1].astype(float))
    return np.concatenate(cols, 1)


def _undesign(z: np.ndarray, schema: List[dict]) -> np.ndarray:
    """Back to model space: numbers as they are, categories by the largest entry of their block."""
    out, at = [], 0
    for c in schema:
        if c["type"] == "categorical":
            k = len(c["categories"])
            out.append(z[:, at : at + k].argmax(1).astype(float))
            at += k
        else:
            out.append(z[:, at])
            at += 1
    return np.stack(out, 1)


def imputation(work: Path, epochs: int, seed: int = 0) -> List[Dict[str, Any]]:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer

    from ppl_vae.apps.tabular import decode_rows
    from ppl_vae.data.tables import encode, infer_schema

    full = fair()
    schema = infer_schema(full, {"occupation": "categorical", "occupation_husb": "categorical"})
    rng = np.random.default_rng(seed)
    hide = rng.random(full.shape) < 0.2
    masked = full.mask(hide)
    masked.to_csv(work / "fair-masked.csv", index=False)
    truth = encode(full, schema)

    def score(name: str, filled: np.ndarray, seconds: float) -> Dict[str, Any]:
        decoded = decode_rows(filled, schema)  # integers rounded into range, categories by name
        back = encode(decoded, schema)
        rmse, acc = [], []
        for j, c in enumerate(schema):
            rows = hide[:, j]
            if c["type"] == "categorical":
                acc.append(float(np.mean(back[rows, j] == truth[rows, j])))
            else:
                sd = float(np.std(full.iloc[:, j]))
                err = (back[rows, j] - truth[rows, j]) * c["std"] / sd
                rmse.append(float(np.sqrt(np.mean(err**2))))
        return {"method": name, "rmse_sd": float(np.mean(rmse)), "accuracy": float(np.mean(acc)), "seconds": round(seconds, 1)}

    x = encode(masked, schema)
    rows = []
    t = time.time()
    mean_fill = np.where(np.isnan(x), 0.0, x)  # numbers: the (observed) mean is 0 after standardizing
    for j, c in enumerate(schema):
        if c["type"] == "categorical":
            codes = x[~np.isnan(x[:, j]), j].astype(int)
            mean_fill[np.isnan(x[:, j]), j] = np.bincount(codes).argmax()
    rows.append(score("column mean / mode", mean_fill, time.time() - t))
    design = _design(masked, schema)
    for name, imputer in (
        ("KNNImputer (k=5)", KNNImputer(n_neighbors=5)),
        ("IterativeImputer", IterativeImputer(max_iter=10, random_state=seed)),
    ):
        t = time.time()
        filled = _undesign(imputer.fit_transform(design), schema)
        rows.append(score(name, np.where(np.isnan(x), filled, x), time.time() - t))
    for modes in (5, 1):
        overrides = [f"data.path={work / 'fair-masked.csv'}", f"data.options.types={FAIR_TYPES}", f"data.options.modes={modes}"]
        run = train(
            "tabular-vae", work / f"impute-{modes}", overrides + [f"train.epochs={epochs}", "train.device=cpu", "eval.iwae_samples=10"]
        )
        t = time.time()
        out = ppl_vae.impute(run, masked, seed=seed)
        label = f"ppl_vae.impute ({modes} Gaussian{'s' if modes > 1 else ''} per number)"
        rows.append(score(label, encode(out, schema), time.time() - t))
    return rows


# ---- anomaly --------------------------------------------------------------------------------
def baselines(train_x: np.ndarray, test_x: np.ndarray, seed: int = 0) -> Dict[str, np.ndarray]:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors
    from sklearn.svm import OneClassSVM

    pca = PCA(n_components=0.9, random_state=seed).fit(train_x)
    recon = pca.inverse_transform(pca.transform(test_x))
    return {
        "IsolationForest": -IsolationForest(random_state=seed).fit(train_x).score_samples(test_x),
        "PCA reconstruction error (90% variance)": ((test_x - recon) ** 2).sum(1),
        "one-class SVM (RBF, nu=0.1)": -OneClassSVM(gamma="scale", nu=0.1).fit(train_x).decision_function(test_x),
        "kNN mean distance (k=5)": NearestNeighbors(n_neighbors=5).fit(train_x).kneighbors(test_x)[0].mean(1),
    }


def anomaly_case(
    work: Path, name: str, x: np.ndarray, y: np.ndarray, levels: int, recipe: str, epochs: int, dlogistic: bool = True
) -> List[Dict[str, Any]]:
    """x: (n, 1, H, W) uint8 levels 0..levels-1 split already as ``y`` in {0, 1} for test, -1 for training."""
    from ppl_vae.apps.anomaly import anomaly_scores, evaluate_scores
    from ppl_vae.data.base import ArrayDataset

    tr, te = y < 0, y >= 0
    slug = "".join(ch if ch.isalnum() else "-" for ch in name)
    np.savez(work / f"{slug}-train.npz", x=x[tr])
    if dlogistic:  # a likelihood of the grey levels themselves
        model = ["data.preprocess=levels", f'model.likelihood={{name="discretized-logistic", components=3, levels={levels}}}']
    else:  # grey levels scaled to [0, 1] with a continuous Bernoulli: one parameter per pixel, cheaper on 784 pixels
        model = ["data.preprocess=scale", 'model.likelihood={name="continuous-bernoulli"}']
    overrides = ["data.name=array", f"data.path={work / f'{slug}-train.npz'}", "data.options={}", *model]
    run = train(recipe, work / f"anomaly-{slug}", overrides + [f"train.epochs={epochs}", "train.device=cpu", "eval.iwae_samples=10"])
    test_x = x[te].reshape(int(te.sum()), -1).astype(np.float32) / (1.0 if dlogistic else levels - 1)
    test = ArrayDataset(torch.from_numpy(test_x))
    ref = run.split("train").subset(slice(0, 1000))
    t = time.time()
    scores = anomaly_scores(run, test, reference=ref, raw_levels=x[te].astype(float) * 255 / (levels - 1), num_samples=100)
    vae_seconds = time.time() - t
    labels = y[te]
    rows = [
        {"case": name, "method": f"VAE {k}", **evaluate_scores(v, labels), "seconds": round(vae_seconds, 1)}
        for k, v in (("-log p(x)", scores["score"]), ("typicality", scores["typicality"]), ("complexity ratio", scores["complexity"]))
    ]
    scale = float(levels - 1)
    t = time.time()
    for k, v in baselines(x[tr].reshape(int(tr.sum()), -1) / scale, x[te].reshape(int(te.sum()), -1) / scale).items():
        rows.append({"case": name, "method": k, **evaluate_scores(v, labels), "seconds": round(time.time() - t, 1)})
        t = time.time()
    return rows


def anomaly(work: Path, epochs: int, fmnist_class: int) -> List[Dict[str, Any]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    x, t = d.images.astype(np.uint8)[perm][:, None], d.target[perm]
    cut = int(0.7 * len(t))
    y = np.where(np.arange(len(t)) < cut, -1, (t == 9).astype(int))
    keep = (y >= 0) | (t != 9)  # the training part holds 0-8 only
    rows = anomaly_case(work, "digits (9 held out)", x[keep], y[keep], 17, "vae-digits", epochs)
    from ppl_vae.data.sources import FASHION_MNIST_DIR, load_fashion_mnist_raw

    if Path(FASHION_MNIST_DIR).is_dir():
        raw = load_fashion_mnist_raw()
        rng = np.random.default_rng(1)
        normal = np.flatnonzero(raw.train_y != fmnist_class)
        tr = rng.choice(normal, 6000, replace=False)
        te = rng.choice(len(raw.test_y), 2000, replace=False)
        fx = np.concatenate([raw.train_x[tr], raw.test_x[te]]).astype(np.uint8)
        fy = np.concatenate([np.full(len(tr), -1), (raw.test_y[te] == fmnist_class).astype(int)])
        name = f"Fashion-MNIST ({raw.meta['class_names'][fmnist_class]} held out)"
        rows += anomaly_case(work, name, fx, fy, 256, "vae-fashion-mnist", max(1, epochs // 4), dlogistic=False)
    return rows


# ---- synthesis ------------------------------------------------------------------------------
def gaussian_copula(train: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows with each column's empirical marginal and the training rows' normal-score correlations."""
    from scipy.stats import norm, rankdata

    scores = np.stack([norm.ppf(rankdata(c) / (len(c) + 1)) for c in train.T], 1)
    corr = np.corrcoef(scores, rowvar=False)
    u = norm.cdf(rng.multivariate_normal(np.zeros(len(corr)), corr, n))
    return np.stack([np.quantile(c, q, method="inverted_cdf") for c, q in zip(train.T, u.T)], 1)


def tvae(train: Any, n: int, epochs: int, seed: int = 0) -> Any:
    """SDV's TVAESynthesizer (Xu et al., 2019), its metadata detected from ``train``, fitted on it; ``n`` rows."""
    import warnings

    from sdv.metadata import Metadata
    from sdv.single_table import TVAESynthesizer

    torch.manual_seed(seed)
    np.random.seed(seed)
    with warnings.catch_warnings():  # SDV warns about detected metadata and the CPU
        warnings.simplefilter("ignore")
        metadata = Metadata.detect_from_dataframes({"fair": train})
        model = TVAESynthesizer(metadata, epochs=epochs, enable_gpu=False)
        t = time.time()
        model.fit({"fair": train})
        print(f"  trained SDV TVAE for {epochs} epochs in {time.time() - t:.0f} s", file=sys.stderr)
        out = model.sample(n)
    return out["fair"] if isinstance(out, dict) else out  # SDV 2 takes and gives {table name: frame}


def synthesis(work: Path, epochs: int, seed: int = 0, tvae_epochs: int = 300) -> List[Dict[str, Any]]:
    from ppl_vae.apps.synthesize import features, features_of_codes, privacy_report, quality_report
    from ppl_vae.apps.tabular import decode_rows

    common = [f"train.epochs={epochs}", "train.device=cpu", "eval.iwae_samples=10"]
    run = train("tabular-vae", work / "synth", common)
    run1 = train("tabular-vae", work / "synth-1", common + ["data.options.modes=1"])
    schema = run.spec.meta["schema"]
    train_x, hold_x = run.split("train").x.numpy().astype(float), run.split("test").x.numpy().astype(float)
    hold = decode_rows(hold_x, schema)
    rng = np.random.default_rng(seed)
    n = len(train_x)
    candidates = {
        "ppl_vae.synthesize (5 Gaussians per number)": lambda: ppl_vae.synthesize(run, n, seed=seed),
        "ppl_vae.synthesize (1 Gaussian per number)": lambda: ppl_vae.synthesize(run1, n, seed=seed),
        "independent marginals": lambda: decode_rows(np.stack([rng.choice(c, n) for c in train_x.T], 1), schema),
        "Gaussian copula (empirical marginals)": lambda: decode_rows(gaussian_copula(train_x, n, rng), schema),
    }
    if importlib.util.find_spec("sdv") is None:
        print("  SDV's TVAE skipped: SDV is not installed (pip install 'ppl-vae[bench]')", file=sys.stderr)
    else:  # the training rows the VAE saw, as a table in the schema's types
        candidates[f"SDV TVAE ({tvae_epochs} epochs)"] = lambda: tvae(decode_rows(train_x, schema), n, tvae_epochs, seed)
    rows = []
    for name, make in candidates.items():
        t = time.time()
        synth = make()
        seconds = time.time() - t
        q = quality_report(hold, synth, schema)
        p = privacy_report(features(synth, schema), features_of_codes(train_x, schema), features_of_codes(hold_x, schema), seed)
        rows.append(
            {
                "method": name,
                **{k: q[k] for k in ("quality_score", "column_shapes", "column_pair_trends")},
                **p,
                "seconds": round(seconds, 1),
            }
        )
    return rows


def markdown(results: Dict[str, List[Dict[str, Any]]], command: str) -> str:
    out = [f"Measured with `{command}` (CPU, 2 shared cores).", ""]
    if "imputation" in results:
        out += ["### Imputation: Fair (statsmodels), 20% of cells masked at random", ""]
        out += ["| method | RMSE (numbers, in SDs) | accuracy (categories) | seconds |", "|---|---|---|---|"]
        out += [f"| {r['method']} | {r['rmse_sd']:.3f} | {r['accuracy']:.3f} | {r['seconds']} |" for r in results["imputation"]]
        out.append("")
    if "anomaly" in results:
        out += ["### Anomaly detection: ROC AUC and average precision", ""]
        out += ["| data | method | ROC AUC | avg. precision |", "|---|---|---|---|"]
        out += [f"| {r['case']} | {r['method']} | {r['roc_auc']:.3f} | {r['average_precision']:.3f} |" for r in results["anomaly"]]
        out.append("")
    if "synthesis" in results:
        out += ["### Synthetic tables: Fair, compared with held-out rows", ""]
        out += ["| method | SDMetrics quality | column shapes | pair trends | DCR ratio (synthetic / held-out) | exact copies |"]
        out += ["|---|---|---|---|---|---|"]
        out += [
            f"| {r['method']} | {r['quality_score']:.3f} | {r['column_shapes']:.3f} | {r['column_pair_trends']:.3f} | "
            f"{r['dcr_ratio']:.3f} | {r['exact_copies']:.1%} (held-out {r['exact_copies_holdout']:.1%}) |"
            for r in results["synthesis"]
        ]
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="imputation,anomaly,synthesis")
    p.add_argument("--epochs", type=int, default=40, help="training epochs of the table and digits models (Fashion-MNIST: a quarter)")
    p.add_argument("--fmnist-class", type=int, default=0)
    p.add_argument("--tvae-epochs", type=int, default=300, help="training epochs of SDV's TVAE baseline (300: SDV's default)")
    p.add_argument("--out", help="write the Markdown tables here (and the numbers as JSON beside it)")
    p.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="ppl-vae-apps-"))
    work.mkdir(parents=True, exist_ok=True)
    results: Dict[str, List[Dict[str, Any]]] = {}
    parts = args.parts.split(",")
    if "imputation" in parts:
        (work / "results.json").write_text(json.dumps(results, indent=2))  # what is done so far
        results["imputation"] = imputation(work, args.epochs)
    if "anomaly" in parts:
        (work / "results.json").write_text(json.dumps(results, indent=2))  # what is done so far
        results["anomaly"] = anomaly(work, args.epochs, args.fmnist_class)
    if "synthesis" in parts:
        (work / "results.json").write_text(json.dumps(results, indent=2))  # what is done so far
        results["synthesis"] = synthesis(work, args.epochs, tvae_epochs=args.tvae_epochs)
    text = markdown(results, "python " + " ".join(sys.argv))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
