"""``save`` and ``load``: a model trained in Python as a run directory, and a run directory in Python.

``save(model, path, data=...)`` writes the same directory ``ppl-vae train`` writes (config,
checkpoint, history), so ``ppl-vae evaluate``, ``sample``, ``diagnose`` and ``compare`` accept it.
The config is not guessed: the model's kind describes the model as a recipe table (every
registered component remembers the arguments it was built with), the directory's model is rebuilt
from that table and must take the trained weights exactly, or nothing is written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ppl_vae.config import Config, DataConfig, TrainConfig
from ppl_vae.data import load_data
from ppl_vae.kinds import kind_of
from ppl_vae.kinds.base import component_table
from ppl_vae.objectives import Objective
from ppl_vae.registry import ConfigError
from ppl_vae.runs.rundir import CHECKPOINT, CONFIG, LoadedRun, _make_run_dir, _write_history, load_run
from ppl_vae.training.checkpoint import atomic_write, save_checkpoint
from ppl_vae.training.fit import TrainState


def save(
    model: Any,
    path: Union[str, Path],
    data: Union[DataConfig, Dict[str, Any], Config],
    *,
    history: Optional[List[dict]] = None,
    objective: Union[Objective, Dict[str, Any], str, None] = None,
    train: Union[TrainConfig, Dict[str, Any], None] = None,
) -> Path:
    """Write ``model`` (a ``VAE``, ``ConditionalVAE`` or ``SemiSupervisedVAE``) as the run directory
    ``path``; returns ``path``.

    ``data`` says what it was trained on, so that the commands can load the test split: a
    ``DataConfig`` (or its dict, or the ``Config`` it came from). ``history`` is what ``fit``
    returned (it sets the epochs the run reports), ``objective`` the objective it was trained with
    (an ``Objective``, a name or a recipe table; default ``elbo``; its state is kept), ``train`` the
    training settings to record. Every component must be a registered one (the directory rebuilds
    the model from names): a custom network is refused in one line saying how to register it.
    ``path`` must be new or empty. Raises ``ConfigError`` before writing anything when the model
    cannot be rebuilt from its description or does not fit the data.
    """
    kind = kind_of(model)
    objective_table = _objective_table(objective)
    cfg = Config.from_dict(
        {
            "description": f"saved from Python ({type(model).__name__})",
            "data": _data_table(data),
            "model": kind.describe(model),
            "objective": objective_table,
            "train": dataclasses.asdict(train) if isinstance(train, TrainConfig) else dict(train or {}),
        },
        source="ppl_vae.save",
    ).validate()
    kind.validate(cfg)
    spec = load_data(cfg.data).spec  # the commands will load the data this way: they must load now
    shape = tuple(getattr(model, "data_shape", spec.shape))
    if tuple(spec.shape) != shape:
        raise ConfigError(f"the model takes data of shape {shape}, but data '{cfg.data.name}' have shape {tuple(spec.shape)}")
    rebuilt = kind.build(cfg.model, spec)
    try:
        rebuilt.load_state_dict(model.state_dict())
    except RuntimeError as err:
        raise ConfigError(f"the model cannot be rebuilt from its description: {str(err).splitlines()[0]}") from None
    history = list(history or [])
    state = TrainState(epoch=len(history), step=0, optimizer=None, objective=_objective_state(objective), history=history)
    run = Path(path)
    lock = _make_run_dir(run)
    try:
        atomic_write(run / CONFIG, lambda tmp: cfg.save(tmp))
        save_checkpoint(run / CHECKPOINT, model, cfg.to_dict(), state, spec.to_dict())
        _write_history(run, history)
    finally:
        lock.close()
    return run


def load(path: Union[str, Path], device: str = "auto", checkpoint: str = "last") -> LoadedRun:
    """Read the run directory ``path`` (from ``ppl-vae train`` or ``save``). Returns a ``LoadedRun``:
    ``.module`` is the trained model (eval mode, on ``device``), ``.config`` the run's ``Config``,
    ``.spec`` its ``DataSpec``, ``.history`` the per-epoch records, ``.splits`` the data (loaded
    on first use). ``checkpoint``: the ``last`` epoch's model, or the ``best`` by validation ELBO."""
    return load_run(path, device, checkpoint)


def _data_table(data: Union[DataConfig, Dict[str, Any], Config]) -> Dict[str, Any]:
    if isinstance(data, Config):
        return dataclasses.asdict(data.data)
    if isinstance(data, DataConfig):
        return dataclasses.asdict(data)
    if isinstance(data, dict):
        return dict(data)
    raise ConfigError(
        f"save(data=...) takes the DataConfig the model was trained on (or its dict, or a Config), not a {type(data).__name__}"
    )


def _objective_table(objective: Union[Objective, Dict[str, Any], str, None]) -> Dict[str, Any]:
    if objective is None:
        return {"name": "elbo"}
    if isinstance(objective, str):
        return {"name": objective}
    if isinstance(objective, dict):
        return dict(objective)
    return component_table(objective, "objective")


def _objective_state(objective: Any) -> dict:
    return dict(objective.state_dict() or {}) if isinstance(objective, Objective) else {}
