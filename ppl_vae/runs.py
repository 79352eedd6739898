"""Run directories: recipe -> config -> data + model + objective -> fit -> checkpoint -> evaluate / plots.

A run directory holds ``config.toml`` (the resolved config), ``checkpoint.pt`` (atomic, safe to
load), ``history.jsonl`` (one line per epoch), ``metrics.json`` (final test metrics) and
``figures/*.png``. The CLI calls these functions; they can be called from Python as well.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import pyro
import torch

from . import distributed
from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .config import Config, build_objective, build_vae
from .data import load_data
from .evaluate import evaluate
from .registry import ConfigError
from .train import TrainState, fit, resolve_device

CHECKPOINT, CONFIG, HISTORY, METRICS = "checkpoint.pt", "config.toml", "history.jsonl", "metrics.json"


def prepare(cfg: Config):
    """Data splits, a VAE and an objective from a config; checks the data against the likelihood."""
    splits = load_data(cfg.data)
    pyro.set_rng_seed(cfg.train.seed)  # seeds torch too: the initial weights are reproducible
    vae = build_vae(cfg.model, splits.train.shape, splits.meta)
    for part in (splits.train, splits.val, splits.test):
        if part is not None:
            part.check_for(vae.likelihood)
    _check_kind(cfg)
    objective = build_objective(cfg.objective)
    if splits.labelled is not None:
        objective.set_labelled(splits.labelled)
    return splits, vae, objective


_OBJECTIVE_OF_KIND = {"semi-supervised": "semi-supervised", "conditional": "conditional"}


def _check_kind(cfg: Config) -> None:
    """Model kind, objective and labelled subset must agree; say which setting to change."""
    kind, name = cfg.model.kind, cfg.objective.get("name", "elbo")
    wanted = _OBJECTIVE_OF_KIND.get(kind)
    if wanted and name != wanted:
        raise ConfigError(f"model.kind '{kind}' trains with objective.name = '{wanted}', not '{name}'")
    if not wanted and name in _OBJECTIVE_OF_KIND.values():
        raise ConfigError(f"objective '{name}' needs model.kind = '{name}'")
    if (kind == "semi-supervised") != bool(cfg.data.labels):
        raise ConfigError("a semi-supervised run needs data.labels > 0 (the size of the labelled subset), "
                          "and data.labels is only used by model.kind = 'semi-supervised'")


def evaluate_model(vae, data, num_samples: int, bin_width: float, progress: bool = False) -> dict:
    """The test report of any model kind (label-aware models get accuracy / log p(x | y))."""
    from .ssvae import ConditionalVAE

    if isinstance(vae, ConditionalVAE):
        from .semisupervised import evaluate_labelled

        return evaluate_labelled(vae, data, num_samples, bin_width)
    return evaluate(vae, data, num_samples, bin_width=bin_width, progress=progress)


def supervised_baseline(cfg: Config, splits, test, steps: int = 3000) -> dict:
    """The same classifier architecture trained on the labelled subset alone (best validation epoch)."""
    from .semisupervised import accuracy, train_classifier
    from .ssvae import make_classifier

    torch.manual_seed(cfg.train.seed)
    clf = make_classifier(splits.labelled.x[0].numel(), splits.meta["n_classes"],
                          tuple(cfg.model.classifier.get("hidden", [256])), cfg.model.encoder.get("activation", "relu"))
    clf.to(resolve_device(cfg.train.device))
    res = train_classifier(clf, splits.labelled, splits.val, steps=steps, batch_size=cfg.objective.get(
        "labelled_batch_size", 100), lr=cfg.train.lr, seed=cfg.train.seed)
    test = test.to(next(clf.parameters()).device)
    return {"baseline_accuracy": accuracy(res["classify"], test), "baseline_val_accuracy": res["val_accuracy"],
            "baseline_steps": steps}


def _write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def _write_history(run: Path, history) -> None:
    atomic_write(run / HISTORY, lambda tmp: Path(tmp).write_text("".join(json.dumps(h) + "\n" for h in history)))


def _test_subset(splits, n_test: int):
    return splits.test if not n_test else splits.test.subset(slice(0, n_test))


def _make_run_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output directory '{out}' already exists and is not empty; choose another --out "
                          f"or continue it with --resume {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to output directory '{out}': {err.strerror or err}") from None


def train_run(cfg: Config, out_dir, progress: bool = True, resume: bool = False, figures: bool = True) -> dict:
    """Train (or resume) the run in ``out_dir``; returns the final metrics. In a distributed run only
    rank 0 writes files and evaluates (the other ranks return an empty dict)."""
    run = Path(out_dir)
    main = distributed.is_main()
    splits, vae, objective = prepare(cfg)
    state = TrainState()
    if resume:
        payload = load_checkpoint(run / CHECKPOINT)
        try:
            vae.load_state_dict(payload["model"])
        except RuntimeError as err:
            raise CheckpointError(f"the checkpoint in '{run}' does not fit its config: {str(err).splitlines()[0]}") from None
        state = TrainState(payload["epoch"], payload["step"], payload["optimizer"], list(payload["history"]))
    elif main:
        error = None
        try:
            _make_run_dir(run)
        except ConfigError as err:
            error = err
        if not distributed.agree(error is None):
            raise error
    elif not distributed.agree(True):
        raise ConfigError("rank 0 could not create the run directory (see its error)")
    fresh = not resume
    try:
        if main:
            cfg.save(run / CONFIG)

        def checkpoint(model, st):
            nonlocal fresh
            if main:
                save_checkpoint(run / CHECKPOINT, model, cfg.to_dict(), st)
                _write_history(run, st.history)
            fresh = False

        t = cfg.train
        fit(vae, splits.train, val=splits.val, objective=objective, epochs=t.epochs, batch_size=t.batch_size,
            lr=t.lr, optimizer=t.optimizer, device=t.device, seed=t.seed, progress=progress, state=state,
            on_epoch_end=checkpoint, clip_grad=t.clip_grad or None, trace=("compile" if t.compile else "auto") if t.trace else False)
    except BaseException:
        if fresh and main:  # nothing was trained: leave no half-made run directory behind
            shutil.rmtree(run, ignore_errors=True)
        raise
    if not main:
        return {}
    test = _test_subset(splits, cfg.eval.n_test)
    metrics = evaluate_model(vae, test, cfg.eval.iwae_samples, splits.meta.get("bin_width", 1 / 255), progress=progress)
    metrics["epochs"] = state.epoch
    metrics["train_seconds"] = round(sum(h["seconds"] for h in state.history), 2)
    metrics["seconds_per_epoch"] = round(metrics["train_seconds"] / max(len(state.history), 1), 3)
    if splits.labelled is not None:
        metrics.update(labels=len(splits.labelled), **supervised_baseline(cfg, splits, test))
    _write_json(run / METRICS, metrics)
    if figures:
        from .plots import save_run_figures

        save_run_figures(vae, splits, state.history, run / "figures")
    return metrics


def load_run(run_dir, device: str = "auto"):
    """(config, vae, checkpoint payload) of a run directory, the VAE on ``device``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run directory '{run}' not found")
    payload = load_checkpoint(run / CHECKPOINT)
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"the checkpoint in '{run}' carries no config")
    cfg = Config.from_dict(payload["config"], source=str(run / CHECKPOINT))
    splits = load_data(cfg.data)
    vae = build_vae(cfg.model, splits.train.shape, splits.meta)
    try:
        vae.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint in '{run}' does not fit its config: {str(err).splitlines()[0]}") from None
    vae.to(resolve_device(device)).eval()
    return cfg, vae, payload, splits


def evaluate_run(run_dir, iwae_samples: Optional[int] = None, n_test: Optional[int] = None,
                 progress: bool = False) -> dict:
    cfg, vae, payload, splits = load_run(run_dir, "auto")
    k = iwae_samples or cfg.eval.iwae_samples
    report = evaluate_model(vae, _test_subset(splits, cfg.eval.n_test if n_test is None else n_test), k,
                            splits.meta.get("bin_width", 1 / 255), progress=progress)
    report["epochs"] = payload["epoch"]
    return report


@torch.no_grad()
def sample_run(run_dir, n: int = 64, out_file=None, seed: int = 0) -> Path:
    from .plots import samples_figure

    cfg, vae, _, splits = load_run(run_dir, "auto")
    shape = splits.meta.get("image_shape")
    if shape is None or splits.meta.get("tabular"):
        raise ConfigError("'sample' draws image grids; this run's data are not images")
    torch.manual_seed(seed)
    out = Path(out_file) if out_file else Path(run_dir) / "figures" / "samples.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = samples_figure(vae, shape, n)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return out


def _split(splits, name: str):
    part = getattr(splits, name, None) if name in ("train", "val", "test") else None
    if part is None:
        raise ConfigError(f"no '{name}' split in this run's data; use one of: "
                          + ", ".join(n for n in ("train", "val", "test") if getattr(splits, n) is not None))
    return part


def diagnose_run(run_dir, split: str = "test", n: int = 1000, samples: int = 1000, nuts_points: int = 2,
                 sbc_sims: int = 500, out_dir=None, progress: bool = False, seed: int = 0, **kwargs) -> tuple:
    """``ppl_vae.diagnostics.diagnose`` on the first ``n`` data of a run's split; returns (results, report dir)."""
    from .diagnostics import diagnose

    out = Path(out_dir) if out_dir else Path(run_dir) / f"diagnostics-{split}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"report directory '{out}' already exists and is not empty; choose another --out")
    if samples < 10:
        raise ConfigError(f"--samples must be at least 10 for the Pareto fit, got {samples}")
    if n < 1 or nuts_points < 0 or sbc_sims < 10 or kwargs.get("nuts_samples", 500) < 50:
        raise ConfigError("--n must be >= 1, --nuts >= 0, --nuts-draws >= 50 and --sbc >= 10")
    cfg, vae, _, splits = load_run(run_dir, "auto")
    if cfg.model.kind != "vae":
        raise ConfigError(f"diagnose covers model.kind = 'vae'; this run is '{cfg.model.kind}'")
    data = _split(splits, split)
    data = data.subset(slice(0, n))
    meta = splits.meta
    tabular = bool(meta.get("tabular"))
    results = diagnose(vae, data, out, samples=samples, sbc_sims=sbc_sims, nuts_points=nuts_points,
                       image_shape=None if tabular else meta.get("image_shape"),
                       columns=meta.get("columns") if tabular else None, obs_dim="row" if tabular else "image",
                       title=f"{Path(run_dir).name} ({split}, first {len(data)})", progress=progress, seed=seed,
                       **kwargs)
    return results, out


def compare_runs(run_dirs, split: str = "test", n: int = 1000, samples: int = 1000, progress: bool = False) -> list:
    """Held-out comparison of runs trained on the same data: per-datum IWAE log p(x), paired differences."""
    from .diagnostics import compare_log_likelihoods
    from .evaluate import iwae_log_likelihood

    if len(run_dirs) < 2:
        raise ConfigError("compare needs at least two run directories")
    runs, first = [], None
    for run in run_dirs:  # check every run before scoring any
        cfg, vae, _, splits = load_run(run, "auto")
        key = (cfg.data.name, cfg.data.path, cfg.data.preprocess, cfg.data.seed, list(cfg.data.columns))
        if first is not None and key != first:
            raise ConfigError(f"'{run}' was trained on other data ({cfg.data.name}, preprocess "
                              f"'{cfg.data.preprocess}') than '{run_dirs[0]}': its log-likelihoods are not comparable")
        first = key
        runs.append((Path(run), vae, _split(splits, split).subset(slice(0, n))))
    scores = {}
    for run, vae, data in runs:
        torch.manual_seed(0)
        name = run.name if run.name not in scores else str(run)
        scores[name] = iwae_log_likelihood(vae, data, samples, progress=progress)["log_px"].numpy()
    return compare_log_likelihoods(scores)


def disentanglement_run(run_dir, fast: bool = False, seed: int = 0) -> dict:
    """All disentanglement metrics of a run trained on dSprites (the encoder mean as the representation);
    writes ``disentanglement.json`` and ``figures/factor_traversals.png`` (one row per factor, moving the
    latent most informative about it)."""
    import numpy as np

    from .data.dsprites import DSpritesFile, DSpritesLike
    from .disentanglement import all_metrics, discretize, mutual_info_matrix
    from .plots import plt, traversal_figure

    cfg, vae, _, splits = load_run(run_dir, "auto")
    if cfg.data.name != "dsprites":
        raise ConfigError(f"--disentanglement needs data with known factors (data.name = 'dsprites'); this run "
                          f"was trained on '{cfg.data.name}'")
    if cfg.model.kind != "vae":
        raise ConfigError(f"--disentanglement covers model.kind = 'vae'; this run is '{cfg.model.kind}'")
    gt = DSpritesFile(cfg.data.path) if cfg.data.path else DSpritesLike()
    shape = splits.train.shape

    @torch.no_grad()
    def represent(images):
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(len(images), *shape)
        return vae.embed(x.to(vae.device)).cpu().numpy()

    results = all_metrics(gt, represent, seed=seed, fast=fast)
    rng = np.random.default_rng(seed)
    factors = gt.sample_factors(2000, rng)
    mi = mutual_info_matrix(discretize(represent(gt.sample_observations_from_factors(factors, rng))), factors)
    best = [int(mi[:, k].argmax()) for k in range(mi.shape[1])]
    results["factor_to_latent"] = dict(zip(gt.factor_names, best))
    out = Path(run_dir)
    _write_json(out / "disentanglement.json", results)
    (out / "figures").mkdir(exist_ok=True)
    x0 = torch.as_tensor(gt.sample_observations_from_factors(factors[:1], rng)).reshape(1, *shape)
    fig = traversal_figure(vae, x0, splits.meta["image_shape"], dims=best, title="traversal of the latent most "
                           "informative about each factor", labels=[f"{n}: z{d}" for n, d in zip(gt.factor_names, best)])
    atomic_write(out / "figures" / "factor_traversals.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return results
