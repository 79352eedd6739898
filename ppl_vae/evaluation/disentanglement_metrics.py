"""Disentanglement metrics with disentanglement_lib's definitions and default settings.

One signature for all: ``metric(ground_truth, represent, rng, **settings) -> dict``, where
``ground_truth`` has ``factor_sizes``, ``sample_factors(n, rng)`` and
``sample_observations_from_factors(factors, rng)`` (``ppl_vae.data.dsprites.GroundTruthData``), and
``represent(observations) -> (n, n_codes)`` numpy codes (for a VAE: the encoder mean). Every result
records its settings and the scikit-learn version (the scores depend on it). ``FAST`` holds
smaller settings for tests.

BetaVAE score (Higgins et al. 2017), FactorVAE score (Kim & Mnih 2018), MIG (Chen et al. 2018),
DCI (Eastwood & Williams 2018), SAP (Kumar et al. 2018), modularity and explicitness (Ridgeway &
Zemel 2018).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Tuple

import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

if TYPE_CHECKING:
    from ppl_vae.data.dsprites import GroundTruthData

FAST = {
    "beta_vae": dict(num_train=500, num_eval=250, batch_size=16),
    "factor_vae": dict(num_train=400, num_eval=200, num_variance_estimate=2000, batch_size=32),
    "mig": dict(num_train=2000),
    "dci": dict(num_train=300, num_test=150),
    "sap": dict(num_train=1000, num_test=500),
    "modularity_explicitness": dict(num_train=1000, num_test=500),
}


def _result(scores: dict, **settings: Any) -> dict:
    return {**scores, "settings": settings, "sklearn": sklearn.__version__}


def _codes_and_factors(
    gt: GroundTruthData, represent: Callable[[np.ndarray], Any], n: int, rng: np.random.Generator, batch_size: int = 100
) -> Tuple[np.ndarray, np.ndarray]:
    factors = gt.sample_factors(n, rng)
    codes = np.concatenate(
        [np.asarray(represent(gt.sample_observations_from_factors(factors[i : i + batch_size], rng))) for i in range(0, n, batch_size)]
    )
    return codes.reshape(n, -1), factors


# ---- MIG --------------------------------------------------------------------------------------------
def discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins per code dimension (disentanglement_lib's ``_histogram_discretize``)."""
    return np.stack([np.digitize(c, np.histogram(c, bins)[1][:-1]) for c in codes.T], 1)


def mutual_info_matrix(codes_discrete: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(n_codes, n_factors) mutual information in nats."""
    return np.array([[mutual_info_score(f, c) for f in factors.T] for c in codes_discrete.T])


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    return np.array([mutual_info_score(f, f) for f in factors.T])


def mig(
    gt: GroundTruthData,
    represent: Callable[[np.ndarray], Any],
    rng: np.random.Generator,
    num_train: int = 10000,
    num_bins: int = 20,
    batch_size: int = 16,
) -> dict:
    """Mean over factors of the gap between the two codes most informative about it, / H(factor)."""
    codes, factors = _codes_and_factors(gt, represent, num_train, rng)
    m = mutual_info_matrix(discretize(codes, num_bins), factors)
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros_like(top[0])
    h = factor_entropies(factors)
    per_factor = np.divide(top[0] - second, h, out=np.zeros_like(h), where=h > 0)
    return _result({"mig": float(per_factor.mean()), "mig_per_factor": per_factor.tolist()}, num_train=num_train, num_bins=num_bins)


# ---- DCI --------------------------------------------------------------------------------------------
def dci_from_importance(importance: np.ndarray) -> Dict[str, float]:
    """Disentanglement and completeness of an importance matrix R (n_codes, n_factors)."""
    r = np.abs(importance)
    k, d = r.shape[1], r.shape[0]

    def one_minus_entropy(p: np.ndarray, base: int) -> float:
        p = p / max(p.sum(), 1e-12)
        p = p[p > 0]
        return 1.0 + float((p * np.log(p)).sum() / np.log(base)) if base > 1 else 1.0

    per_code = np.array([one_minus_entropy(r[i], k) for i in range(d)])
    code_weight = r.sum(1) / max(r.sum(), 1e-12)
    per_factor = np.array([one_minus_entropy(r[:, j], d) for j in range(k)])
    factor_weight = r.sum(0) / max(r.sum(), 1e-12)
    return {"disentanglement": float((per_code * code_weight).sum()), "completeness": float((per_factor * factor_weight).sum())}


def dci(
    gt: GroundTruthData,
    represent: Callable[[np.ndarray], Any],
    rng: np.random.Generator,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
) -> dict:
    """Gradient-boosted trees per factor: importances -> disentanglement, completeness; test accuracy ->
    informativeness."""
    train_c, train_f = _codes_and_factors(gt, represent, num_train, rng)
    test_c, test_f = _codes_and_factors(gt, represent, num_test, rng)
    importance = np.zeros((train_c.shape[1], train_f.shape[1]))
    train_acc, test_acc = [], []
    for j in range(train_f.shape[1]):
        if len(np.unique(train_f[:, j])) < 2:  # a constant factor carries nothing to predict
            continue
        model = GradientBoostingClassifier(random_state=0).fit(train_c, train_f[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_acc.append(model.score(train_c, train_f[:, j]))
        test_acc.append(model.score(test_c, test_f[:, j]))
    scores = dci_from_importance(importance)
    scores.update(informativeness_train=float(np.mean(train_acc)), informativeness_test=float(np.mean(test_acc)))
    return _result(scores, num_train=num_train, num_test=num_test, model="GradientBoostingClassifier()")


# ---- SAP --------------------------------------------------------------------------------------------
def sap(
    gt: GroundTruthData,
    represent: Callable[[np.ndarray], Any],
    rng: np.random.Generator,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    continuous_factors: bool = False,
) -> dict:
    """Per factor, the gap between the two codes that best predict it alone: test accuracy of
    LinearSVC(C=0.01, class_weight="balanced") on one code (discrete factors, the dSprites study
    setting), or the squared correlation (``continuous_factors=True``). With discrete factors of more
    than two ordered values a single code cannot be split linearly into all of them, so even the
    factors themselves score about 0.5 (tests/test_disentanglement.py); the continuous form gives 1."""
    train_c, train_f = _codes_and_factors(gt, represent, num_train, rng)
    test_c, test_f = _codes_and_factors(gt, represent, num_test, rng)
    score = np.zeros((train_c.shape[1], train_f.shape[1]))
    for i in range(train_c.shape[1]):
        for j in range(train_f.shape[1]):
            if np.ptp(train_c[:, i]) == 0 or len(np.unique(train_f[:, j])) < 2:
                continue  # a constant code predicts nothing: score 0
            if continuous_factors:
                cov = np.cov(train_c[:, i], train_f[:, j])
                score[i, j] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
            else:
                clf = LinearSVC(C=0.01, class_weight="balanced").fit(train_c[:, i : i + 1], train_f[:, j])
                score[i, j] = np.mean(clf.predict(test_c[:, i : i + 1]) == test_f[:, j])
    top = np.sort(score, axis=0)[::-1]
    gaps = top[0] - (top[1] if len(top) > 1 else 0)
    return _result(
        {"sap": float(gaps.mean())},
        num_train=num_train,
        num_test=num_test,
        continuous_factors=continuous_factors,
        model="LinearSVC(C=0.01, class_weight='balanced')",
    )


# ---- modularity and explicitness -------------------------------------------------------------------
def modularity_from_mi(m: np.ndarray) -> float:
    """1 - normalized squared deviation of each code's MI row from its one-factor template."""
    k = m.shape[1]
    out = []
    for row in m:
        theta = row.max()
        if theta == 0 or k < 2:
            out.append(0.0 if theta == 0 else 1.0)
            continue
        template = np.zeros_like(row)
        template[row.argmax()] = theta
        out.append(1.0 - ((row - template) ** 2).sum() / (theta**2 * (k - 1)))
    return float(np.mean(out))


def modularity_explicitness(
    gt: GroundTruthData,
    represent: Callable[[np.ndarray], Any],
    rng: np.random.Generator,
    num_train: int = 10000,
    num_test: int = 5000,
    num_bins: int = 20,
    batch_size: int = 16,
) -> dict:
    train_c, train_f = _codes_and_factors(gt, represent, num_train, rng)
    test_c, test_f = _codes_and_factors(gt, represent, num_test, rng)
    modularity = modularity_from_mi(mutual_info_matrix(discretize(train_c, num_bins), train_f))
    mean, std = train_c.mean(0), train_c.std(0)
    std[std == 0] = 1.0
    xtr, xte = (train_c - mean) / std, (test_c - mean) / std
    explicit = []
    for j in range(train_f.shape[1]):
        classes = np.unique(train_f[:, j])
        if len(classes) < 2:
            continue
        clf = LogisticRegression(max_iter=1000).fit(xtr, train_f[:, j])
        onehot = MultiLabelBinarizer(classes=list(clf.classes_)).fit_transform(test_f[:, j : j + 1])
        probs = clf.predict_proba(xte)
        present = onehot.sum(0) > 0
        explicit.append(roc_auc_score(onehot[:, present], probs[:, present], average="macro"))
    return _result(
        {"modularity": modularity, "explicitness": float(np.mean(explicit))},
        num_train=num_train,
        num_test=num_test,
        num_bins=num_bins,
        model="LogisticRegression()",
    )


# ---- BetaVAE and FactorVAE scores -------------------------------------------------------------------
def beta_vae_score(
    gt: GroundTruthData,
    represent: Callable[[np.ndarray], Any],
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
) -> dict:
    """Predict which factor was held fixed from the mean |code difference| over ``batch_size`` pairs."""

    def points(n: int) -> Tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for _ in range(n):
            k = rng.integers(len(gt.factor_sizes))
            f1, f2 = gt.sample_factors(batch_size, rng), gt.sample_factors(batch_size, rng)
            f2[:, k] = f1[:, k]
            c1 = np.asarray(represent(gt.sample_observations_from_factors(f1, rng)))
            c2 = np.asarray(represent(gt.sample_observations_from_factors(f2, rng)))
            xs.append(np.abs(c1 - c2).mean(0))
            ys.append(k)
        return np.array(xs), np.array(ys)

    xtr, ytr = points(num_train)
    xev, yev = points(num_eval)
    if len(np.unique(ytr)) < 2:
        acc_tr = acc_ev = float(np.mean(ytr == ytr[0]))
    else:
        clf = LogisticRegression(max_iter=1000).fit(xtr, ytr)
        acc_tr, acc_ev = clf.score(xtr, ytr), clf.score(xev, yev)
    return _result(
        {"train_accuracy": float(acc_tr), "eval_accuracy": float(acc_ev)},
        batch_size=batch_size,
        num_train=num_train,
        num_eval=num_eval,
        model="LogisticRegression()",
    )


def factor_vae_score(
    gt: GroundTruthData,
    represent: Callable[[np.ndarray], Any],
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_std: float = 0.05,
) -> dict:
    """Majority vote from (argmin normalized code variance with one factor fixed) to that factor."""
    codes, _ = _codes_and_factors(gt, represent, num_variance_estimate, rng)
    scale = codes.std(0)
    active = scale >= prune_std
    if not active.any():
        return _result(
            {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0},
            batch_size=batch_size,
            num_train=num_train,
            num_eval=num_eval,
            prune_std=prune_std,
        )
    n_codes, n_factors = codes.shape[1], len(gt.factor_sizes)

    def votes(n: int) -> np.ndarray:
        table = np.zeros((n_codes, n_factors), dtype=np.int64)
        for _ in range(n):
            k = rng.integers(n_factors)
            f = gt.sample_factors(batch_size, rng)
            f[:, k] = f[0, k]
            c = np.asarray(represent(gt.sample_observations_from_factors(f, rng))) / np.where(active, scale, 1.0)
            var = np.where(active, c.var(0, ddof=1), np.inf)
            table[int(np.argmin(var)), k] += 1
        return table

    train, ev = votes(num_train), votes(num_eval)
    rule = train.argmax(1)  # each code dimension votes for its most frequent factor
    acc_tr = train[np.arange(n_codes), rule].sum() / max(train.sum(), 1)
    acc_ev = ev[np.arange(n_codes), rule].sum() / max(ev.sum(), 1)
    return _result(
        {"train_accuracy": float(acc_tr), "eval_accuracy": float(acc_ev), "num_active_dims": int(active.sum())},
        batch_size=batch_size,
        num_train=num_train,
        num_eval=num_eval,
        num_variance_estimate=num_variance_estimate,
        prune_std=prune_std,
    )


METRICS: Dict[str, Callable] = {
    "beta_vae": beta_vae_score,
    "factor_vae": factor_vae_score,
    "mig": mig,
    "dci": dci,
    "sap": sap,
    "modularity_explicitness": modularity_explicitness,
}


def all_metrics(gt: GroundTruthData, represent: Callable[[np.ndarray], Any], seed: int = 0, fast: bool = False) -> dict:
    """Every metric with its default (or ``FAST``) settings, each from its own seeded generator."""
    return {name: fn(gt, represent, np.random.default_rng(seed), **(FAST[name] if fast else {})) for name, fn in METRICS.items()}
