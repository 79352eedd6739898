"""Hyperparameter search with Optuna: ``ppl-vae tune RECIPE --trials N`` (the space: ``ppl_vae.runs.tune_space``).

- The study lives in ``OUT/study.db`` (SQLite). Re-running the same command resumes it: ``--trials N``
  is the number of finished (complete or pruned) trials the study should hold; trials a killed process
  left running are marked failed, and the resumed sampler continues from seed + trials so far. A study
  made for another recipe, ``--set``, space or seed is refused. One process at a time (``OUT/.lock``).
- Each trial trains into ``OUT/trials/NNNN/``, a normal run directory (``ppl_vae.runs.rundir.train_run``).
  Every trial uses the recipe's ``train.seed`` and the sampler is ``TPESampler(seed)``, so a search run
  in one go is reproducible on the CPU.
- A trial's value is its best validation ELBO per datum over its epochs (maximised). It reports the
  validation ELBO of every epoch; the pruner (MedianPruner by default) stops trials below the median of
  earlier trials at the same epoch by raising ``optuna.TrialPruned`` from ``train_run``'s ``on_epoch``
  (the trial's last checkpoint stays). A trial whose loss diverges counts as pruned.
- At the end ``OUT/best.toml`` (written atomically) holds the best trial's full config, a recipe that
  ``ppl-vae train`` accepts, and ``trial_table`` lists the trials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

from ppl_vae.registry import ConfigError
from ppl_vae.runs.rundir import claim, train_run
from ppl_vae.runs.tune_space import Space, encode, show, toml_value
from ppl_vae.schema import positive_int
from ppl_vae.training.checkpoint import atomic_write
from ppl_vae.training.fit import TrainingDiverged, TrainState

STUDY, BEST, TRIALS, LOCK = "study.db", "best.toml", "trials", ".lock"
STUDY_NAME = "ppl-vae-tune"


@dataclass
class TuneResult:
    study: Any  # optuna.Study
    best: Optional[Path]  # OUT/best.toml, None when no trial completed
    table: str


def tune(
    space: Space,
    out: Union[str, Path],
    trials: Optional[int] = None,
    seed: int = 0,
    timeout: Optional[float] = None,
    figures: bool = False,
    enqueue: Sequence[Mapping[str, Any]] = (),
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Run (or resume) the search of ``space`` in ``out`` until the study holds ``trials`` finished
    trials (default: the ``[tune]`` table's) or ``timeout`` seconds pass; write ``out/best.toml``.
    ``enqueue``: settings tried first, in order (only when the study is new). Returns the study,
    the path of best.toml and the table of trials."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise ConfigError("ppl-vae tune needs Optuna: pip install 'ppl-vae[tune]'") from None
    n_trials = positive_int(100_000).check("trials", trials if trials is not None else space.settings["trials"])
    for values in enqueue:
        for key, value in values.items():
            match = [p for p in space.params if p.key == key]
            if not match or not match[0].contains(value):
                raise ConfigError(f"enqueued {key} = {value!r} is not in the search space ({', '.join(p.key for p in space.params)})")
        space.config(values)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(f.name != LOCK for f in out.iterdir()) and not (out / STUDY).is_file())):
        raise ConfigError(f"'{out}' exists and holds no study ({STUDY}); choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot write to output directory '{out}': {err.strerror or err}") from None
    lock = claim(out)  # one process at a time in OUT
    try:
        return _search(optuna, space, out, n_trials, seed, timeout, figures, enqueue, log)
    finally:
        lock.close()


def _search(
    optuna: Any,
    space: Space,
    out: Path,
    n_trials: int,
    seed: int,
    timeout: Optional[float],
    figures: bool,
    enqueue: Sequence[Mapping[str, Any]],
    log: Callable[[str], None],
) -> TuneResult:
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's error reaches the user once, as one line
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY).resolve()}")
    new = STUDY_NAME not in optuna.study.get_all_study_names(storage)
    s = space.settings
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=s["startup_trials"], n_warmup_steps=s["warmup_epochs"])
        if s["pruner"] == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )
    identity = json.dumps({"search": json.loads(space.identity()), "seed": seed}, sort_keys=True)
    if new:
        study.set_user_attr("search", identity)
        study.set_user_attr("recipe", space.recipe)
        for values in enqueue:
            study.enqueue_trial({k: encode(v) for k, v in values.items()})
    else:
        if study.user_attrs.get("search") != identity:
            raise ConfigError(
                f"'{out}' holds a study of another search (recipe '{study.user_attrs.get('recipe')}', other --set, --param, "
                "[tune] or --seed); choose another --out"
            )
        # Trials left running by a process that was killed (this one holds the lock) have failed.
        study_id = storage.get_study_id_from_name(STUDY_NAME)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(
                storage.get_trial_id_from_study_id_trial_number(study_id, t.number), optuna.trial.TrialState.FAIL
            )
        # A resumed sampler must not replay the first process's draws: it continues from another seed.
        study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    left = n_trials - len(study.get_trials(deepcopy=False, states=finished))
    if left > 0:
        study.optimize(_objective(optuna, space, out, figures, log), n_trials=left, timeout=timeout)
    return _conclude(optuna, study, space, out)


def _objective(optuna: Any, space: Space, out: Path, figures: bool, log: Callable[[str], None]) -> Callable[[Any], float]:
    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in space.params}
        cfg = space.config(values)
        run = out / TRIALS / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run.relative_to(out)))
        seen: List[float] = []

        def report(state: TrainState) -> None:
            value = state.history[-1].get("val_elbo")
            if value is None:
                raise ConfigError("tune maximises the validation ELBO, but this run has none: set data.val_fraction > 0")
            seen.append(value)
            trial.set_user_attr("epochs", state.epoch)
            trial.report(value, step=state.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation ELBO {value:.4g} below the median at epoch {state.epoch}")

        shown = ", ".join(f"{k}={show(v)}" for k, v in values.items())
        try:
            train_run(cfg, run, progress=False, figures=figures, on_epoch=report)
        except optuna.TrialPruned:
            log(f"trial {trial.number:4d}  pruned at epoch {len(seen)}: val ELBO {seen[-1]:.4f}  ({shown})")
            raise
        except TrainingDiverged as err:
            trial.set_user_attr("diverged", str(err))
            log(f"trial {trial.number:4d}  diverged, counted as pruned  ({shown})")
            raise optuna.TrialPruned(str(err)) from None
        best = max(seen)
        log(f"trial {trial.number:4d}  complete: best val ELBO {best:.4f} in {len(seen)} epochs  ({shown})")
        return best

    return objective


def trial_table(study: Any, space: Space) -> str:
    """One row per trial: number, state, epochs trained, its best validation ELBO so far, the values."""
    keys = [p.key for p in space.params]
    best = _best(study)
    rows = [["trial", "state", "epochs", "val ELBO", *keys]]
    for t in study.get_trials(deepcopy=False):
        reported = list(t.intermediate_values.values())
        value = t.value if t.value is not None else (max(reported) if reported else None)
        mark = " *" if best is not None and t.number == best.number else ""
        rows.append(
            [
                f"{t.number:04d}{mark}",
                t.state.name.lower(),
                str(t.user_attrs.get("epochs", len(reported))),
                "-" if value is None else f"{value:.4f}",
                *(show(_decoded(space, k, t.params[k])) if k in t.params else "-" for k in keys),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _decoded(space: Space, key: str, stored: Any) -> Any:
    """A trial's stored value of ``key`` as the config value (choices that are lists are stored as TOML text)."""
    param = next(p for p in space.params if p.key == key)
    if param.type == "choice":
        for c in param.choices:
            if encode(c) == stored:
                return c
    return stored


def _best(study: Any) -> Any:
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value) if done else None


def _conclude(optuna: Any, study: Any, space: Space, out: Path) -> TuneResult:
    """Write ``out/best.toml`` from the best complete trial (atomically) and make the table."""
    table = trial_table(study, space)
    best = _best(study)
    if best is None:
        return TuneResult(study, None, table)
    values = {p.key: _decoded(space, p.key, best.params[p.key]) for p in space.params}
    cfg = space.config(values)
    counts = {s: len(study.get_trials(deepcopy=False, states=(getattr(optuna.trial.TrialState, s),))) for s in ("COMPLETE", "PRUNED")}
    shown = ", ".join(f"{k} = {toml_value(v)}" for k, v in values.items())
    cfg.description = (
        f"Tuned from '{space.recipe}' by ppl-vae tune: trial {best.number} of {counts['COMPLETE']} complete and "
        f"{counts['PRUNED']} pruned trials, best validation ELBO {best.value:.4f} nats per datum ({shown})."
    )
    header = (
        f"# The best trial of the search in '{out}' (its run directory: {best.user_attrs.get('run')}).\n"
        f"# Train it with: ppl-vae train {out / BEST}\n\n"
    )
    path = out / BEST
    atomic_write(path, lambda tmp: Path(tmp).write_text(header + cfg.dumps(), encoding="utf-8"))
    return TuneResult(study, path, table)
