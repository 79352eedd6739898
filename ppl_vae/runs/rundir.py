"""Run directories: recipe -> config -> data + model kind + objective -> fit -> checkpoint -> evaluate / figures.

A run directory holds ``config.toml`` (the resolved config), ``checkpoint.pt`` (complete, atomic,
safe to load: ``ppl_vae.training.checkpoint``), ``history.jsonl`` (one line per epoch),
``metrics.json`` (final test metrics) and ``figures/*.png``. The CLI calls these functions; they
can be called from Python as well. What differs between model kinds is asked of the kind
(``ppl_vae.kinds``); nothing here branches on which kind a run is.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple, Union

import pyro
import torch
from torch import nn

from ppl_vae import kinds
from ppl_vae.config import Config, EvalConfig
from ppl_vae.data import Splits, load_data
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.kinds import ModelKind, build_component
from ppl_vae.objectives import Objective
from ppl_vae.registry import OBJECTIVES, ConfigError
from ppl_vae.schema import iter_rules, positive_int
from ppl_vae.schema import seed as seed_rule
from ppl_vae.training import distributed
from ppl_vae.training.checkpoint import (
    CheckpointError,
    atomic_write,
    interrupts_deferred,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from ppl_vae.training.fit import TrainState, fit, resolve_device
from ppl_vae.training.lr_schedules import best_epoch

CHECKPOINT, CONFIG, HISTORY, METRICS = "checkpoint.pt", "config.toml", "history.jsonl", "metrics.json"
BEST = "best.pt"  # the epoch with the best validation ELBO so far (the same format; ``checkpoint.pt`` is the last)
CHECKPOINTS = {"last": CHECKPOINT, "best": BEST}
LOCK = ".lock"  # held (flock) by the process training in the directory


def prepare(cfg: Config) -> Tuple[ModelKind, Splits, nn.Module, Objective]:
    """The model kind, data splits, model and objective of a config; checks that they fit together."""
    kind = kinds.kind(cfg.model.kind)
    kind.validate(cfg)
    splits = load_data(cfg.data)
    pyro.set_rng_seed(cfg.train.seed)  # seeds torch too: the initial weights are reproducible
    module: Any = kind.build(cfg.model, splits.spec)  # its .likelihood: nn.Module.__getattr__ is typed Tensor | Module
    for part in (splits.train, splits.val, splits.test, splits.labelled):
        if part is not None:
            part.check_for(module.likelihood)
    objective = build_component(OBJECTIVES, cfg.objective, "objective")
    kind.prepare(splits, objective)
    return kind, splits, module, objective


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


def _write_history(run: Path, history: list) -> None:
    atomic_write(run / HISTORY, lambda tmp: Path(tmp).write_text("".join(json.dumps(h) + "\n" for h in history)))


def test_subset(data: ArrayDataset, n_test: int) -> ArrayDataset:
    """The first ``n_test`` data (all for 0)."""
    return data if not n_test else data.subset(slice(0, n_test))


def claim(run: Path) -> IO[str]:
    """An exclusive lock on the run directory (``fcntl.flock`` on ``RUN/.lock``; the system releases it
    when the process ends, even on ``kill -9``), so of two processes started into one folder exactly
    one proceeds."""
    handle = open(run / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"another ppl-vae process is using '{run}'; wait for it to finish or choose another --out") from None
    return handle


def _make_run_dir(out: Path) -> IO[str]:
    """Create (or take an empty) run directory and claim it; returns the held lock."""

    def not_empty() -> bool:
        return out.exists() and (not out.is_dir() or any(p.name != LOCK for p in out.iterdir()))

    refusal = f"output directory '{out}' already exists and is not empty; choose another --out or continue it with --resume {out}"
    if not_empty():
        raise ConfigError(refusal)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = claim(out)
    except OSError as err:
        raise ConfigError(f"cannot write to output directory '{out}': {err.strerror or err}") from None
    if not_empty():  # another run claimed it first and has finished or is writing
        lock.close()
        raise ConfigError(refusal)
    return lock


def _same_data(saved: dict, spec: DataSpec, run: Path) -> None:
    """A resumed run must train on the data its checkpoint was trained on."""
    if saved and (saved.get("source"), tuple(saved.get("shape", ())), saved.get("preprocess"), saved.get("sizes")) != (
        spec.source,
        tuple(spec.shape),
        spec.preprocess,
        spec.sizes,
    ):
        raise CheckpointError(
            f"the data now loaded for '{run}' ({spec.source}, shape {tuple(spec.shape)}, sizes "
            f"{spec.sizes}) differ from those its checkpoint was trained on ({saved.get('source')}, "
            f"shape {tuple(saved.get('shape', ()))}, sizes {saved.get('sizes')})"
        )


def _restore(module: nn.Module, payload: dict, run: Path) -> None:
    try:
        module.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint in '{run}' does not fit its config: {str(err).splitlines()[0]}") from None


def train_run(
    cfg: Config,
    out_dir: Union[str, Path],
    progress: bool = True,
    resume: bool = False,
    figures: bool = True,
    on_epoch: Optional[Callable[[TrainState], None]] = None,
) -> dict:
    """Train (or resume) the run in ``out_dir``; returns the final test metrics (a dict). In a
    distributed run only rank 0 writes files and evaluates (the other ranks return an empty dict).
    ``on_epoch(state)`` is called after each epoch's checkpoint is written (a search prunes a trial
    there by raising); an exception it raises stops training with the last checkpoint intact."""
    run = Path(out_dir)
    main = distributed.is_main()
    kind, splits, module, objective = prepare(cfg)
    state = TrainState()
    lock: Optional[IO[str]] = None
    if resume:
        payload = load_checkpoint(run / CHECKPOINT)
        if cfg.train.epochs < payload["epoch"]:
            raise ConfigError(
                f"the run in '{run}' has already trained {payload['epoch']} epochs; train.epochs = "
                f"{cfg.train.epochs} would be fewer: set train.epochs to {payload['epoch']} or more"
            )
        _restore(module, payload, run)
        _same_data(payload.get("data_spec") or {}, splits.spec, run)
        if main:
            lock = claim(run)
        state = TrainState(
            payload["epoch"],
            payload["step"],
            payload["optimizer"],
            payload.get("objective") or {},
            list(payload["history"]),
            payload.get("scheduler"),
        )
        if payload.get("rng"):
            set_rng_state(payload["rng"])
    elif main:
        error = None
        try:
            lock = _make_run_dir(run)
        except ConfigError as err:
            error = err
        if not distributed.agree(error is None):
            assert error is not None  # the other ranks agree; only this rank can have failed
            raise error
    elif not distributed.agree(True):
        raise ConfigError("rank 0 could not create the run directory (see its error)")
    fresh = not resume
    try:
        if main:
            atomic_write(run / CONFIG, lambda tmp: cfg.save(tmp))

        def checkpoint(model: nn.Module, st: TrainState) -> None:
            nonlocal fresh
            if main:
                with interrupts_deferred():  # Ctrl-C lands before or after the pair, never between
                    save_checkpoint(run / CHECKPOINT, model, cfg.to_dict(), st, splits.spec.to_dict())
                    fresh = False  # from here on the directory holds a run to resume
                    if best_epoch(st.history, cfg.train.min_delta) == st.epoch:
                        save_checkpoint(run / BEST, model, cfg.to_dict(), st, splits.spec.to_dict())
                    _write_history(run, st.history)
            fresh = False
            if on_epoch is not None:
                on_epoch(st)

        t = cfg.train
        fit(
            module,
            splits.train,
            val=splits.val,
            objective=objective,
            epochs=t.epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            optimizer=t.optimizer,
            device=t.device,
            seed=t.seed,
            progress=progress,
            state=state,
            on_epoch_end=checkpoint,
            clip_grad=t.clip_grad or None,
            trace=("compile" if t.compile else "auto") if t.trace else False,
            patience=t.patience,
            min_delta=t.min_delta,
            lr_schedule=t.lr_schedule or None,
        )
    except BaseException:
        if fresh and main:  # nothing was trained: leave no half-made run directory behind
            shutil.rmtree(run, ignore_errors=True)
        if lock is not None:
            lock.close()
        raise
    try:
        return _finish(cfg, run, kind, splits, module, state, progress, figures) if main else {}
    finally:
        if lock is not None:
            lock.close()


def _finish(
    cfg: Config, run: Path, kind: ModelKind, splits: Splits, module: nn.Module, state: TrainState, progress: bool, figures: bool
) -> dict:
    """Evaluate a trained run (its last epoch, or its best with ``train.evaluate = "best"``), write its
    metrics and figures; returns the metrics."""
    best = best_epoch(state.history, cfg.train.min_delta)
    if cfg.train.evaluate == "best" and best is not None and best != state.epoch:
        _restore(module, load_checkpoint(run / BEST), run)
    metrics = kind.evaluate(module, test_subset(splits.test, cfg.eval.n_test), splits.spec, cfg.eval.iwae_samples, progress=progress)
    metrics["epochs"] = state.epoch
    metrics["evaluated_epoch"] = best if cfg.train.evaluate == "best" and best is not None else state.epoch
    if best is not None:
        metrics["best_epoch"] = best
    metrics["train_seconds"] = round(sum(h["seconds"] for h in state.history), 2)
    metrics["seconds_per_epoch"] = round(metrics["train_seconds"] / max(len(state.history), 1), 3)
    metrics.update(kind.extra_metrics(module, splits, cfg))
    _write_json(run / METRICS, metrics)
    if figures:
        from ppl_vae.plots import save_figures

        save_figures(kind.figures(module, splits, state.history), run / "figures")
    return metrics


@dataclass
class LoadedRun:
    """A run directory read back: its config, model kind, data specification, the trained module (in
    eval mode, on the device asked for) and the raw checkpoint payload. ``splits`` loads the data on
    first use (sampling needs none)."""

    path: Path
    config: Config
    kind: ModelKind
    spec: DataSpec
    module: nn.Module
    payload: Dict[str, Any]
    _splits: Optional[Splits] = field(default=None, repr=False)

    @property
    def history(self) -> List[dict]:
        """The per-epoch records of training (train loss, validation ELBO, seconds, ...)."""
        return list(self.payload.get("history") or [])

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = load_data(self.config.data)
        return self._splits

    def split(self, name: str) -> ArrayDataset:
        """The ``train``, ``val`` or ``test`` split of the run's data."""
        part = getattr(self.splits, name, None) if name in ("train", "val", "test") else None
        if part is None:
            raise ConfigError(
                f"no '{name}' split in this run's data; use one of: "
                + ", ".join(n for n in ("train", "val", "test") if getattr(self.splits, n) is not None)
            )
        return part


def load_run(run_dir: Union[str, Path], device: str = "auto", checkpoint: str = "last") -> LoadedRun:
    """Read the run directory ``run_dir``: returns a ``LoadedRun`` whose ``module`` is the trained model
    of its ``last`` epoch (``checkpoint.pt``) or of its ``best`` (``best.pt``: the best validation ELBO)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run directory '{run}' not found")
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be one of: {', '.join(CHECKPOINTS)}; got '{checkpoint}'")
    if checkpoint == "best" and not (run / BEST).is_file():
        raise ConfigError(f"'{run}' has no best checkpoint ({BEST}): it was trained without a validation split")
    payload = load_checkpoint(run / CHECKPOINTS[checkpoint])
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"the checkpoint in '{run}' carries no config")
    cfg = Config.from_dict(payload["config"], source=str(run / CHECKPOINT))
    kind = kinds.kind(cfg.model.kind)
    splits = None
    if payload.get("data_spec"):
        spec = DataSpec.from_dict(payload["data_spec"])
    else:  # a version-1 checkpoint: the data tell their specification
        splits = load_data(cfg.data)
        spec = splits.spec
    module = kind.build(cfg.model, spec)
    _restore(module, payload, run)
    module.to(resolve_device(device)).eval()
    return LoadedRun(run, cfg, kind, spec, module, payload, splits)


SAMPLE_N = positive_int(4096)  # samples in one figure


def evaluate_run(
    run_dir: Union[str, Path],
    iwae_samples: Optional[int] = None,
    n_test: Optional[int] = None,
    progress: bool = False,
    seed: int = 0,
    checkpoint: str = "last",
) -> dict:
    """The test report of a run (its kind's ``evaluate``) with K importance samples per datum (default:
    the run's ``eval.iwae_samples``) on the first ``n_test`` test data (default the run's; 0 = all).
    The importance samples are drawn after ``pyro.set_rng_seed(seed)``: the same call gives the same numbers.
    ``checkpoint``: the ``last`` epoch's model or the ``best`` (by validation ELBO)."""
    rules = dict(iter_rules(EvalConfig))
    if iwae_samples is not None:
        rules["iwae_samples"].check("iwae_samples", iwae_samples)
    if n_test is not None:
        rules["n_test"].check("n_test", n_test)
    loaded = load_run(run_dir, "auto", checkpoint)
    cfg = loaded.config
    data = test_subset(loaded.split("test"), cfg.eval.n_test if n_test is None else n_test)
    pyro.set_rng_seed(seed_rule().check("seed", seed))
    report = loaded.kind.evaluate(loaded.module, data, loaded.spec, iwae_samples or cfg.eval.iwae_samples, progress)
    report["epochs"] = loaded.payload["epoch"]
    return report


@torch.no_grad()
def sample_run(run_dir: Union[str, Path], n: int = 64, out_file: Optional[Union[str, Path]] = None, seed: int = 0) -> Path:
    """Write a figure of ``n`` generated data (default ``RUN/figures/samples.png``); returns its path.
    Kinds that write files of samples too (``ModelKind.write_samples``) put them in ``RUN/samples/``."""
    from ppl_vae.plots import save_figures

    SAMPLE_N.check("n", n)
    seed_rule().check("seed", seed)
    loaded = load_run(run_dir, "auto")
    kinds.require(loaded.config.model.kind, "sample", "'sample'")
    torch.manual_seed(seed)
    lines = loaded.kind.sample_text(loaded.module, loaded.spec, n)
    if lines is not None:  # text: one generated datum per line, in RUN/samples.txt unless --out names a .txt file
        path = Path(out_file) if out_file else Path(run_dir) / "samples.txt"
        if path.suffix.lower() != ".txt":
            raise ConfigError(f"this run generates text: --out must name a .txt file, got '{path}'")
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8"))
        return path
    fig = loaded.kind.sample_figure(loaded.module, loaded.spec, n)
    out = Path(out_file) if out_file else Path(run_dir) / "figures" / "samples.png"
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must name a .png file, got '{out}'")
    written = Path(save_figures({out.stem: fig}, out.parent)[0])
    loaded.kind.write_samples(loaded.module, loaded.spec, n, Path(run_dir) / "samples")  # MIDI, text: the kind's own files
    return written
