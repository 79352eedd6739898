"""The search space of ``ppl-vae tune`` (``ppl_vae.runs.tune`` runs the study): declared in a recipe's
``[tune]`` table and/or given with ``--param`` flags (a flag replaces the recipe's entry for the same key)::

    [tune]
    trials = 20           # the default of --trials
    pruner = "median"     # "median" (Optuna's MedianPruner) or "none"
    startup_trials = 5    # no pruning until this many trials have finished
    warmup_epochs = 1     # and never in a trial's first epochs
    [tune.params]
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }
    "train.batch_size" = { low = 32, high = 128, step = 32 }
    "model.latent_dim" = { choices = [8, 16, 32] }

``--param KEY=SPEC`` with SPEC ``LOW:HIGH``, ``LOW:HIGH:STEP``, ``log:LOW:HIGH`` or ``choice:V1,V2,...``
(values read as TOML: ``choice:[256],[128,64]``, ``choice:"adam","sgd"``). A range is of integers where
the setting is an integer, else of floats. ``ppl-vae train`` skips the ``[tune]`` table
(``ppl_vae.config.TOOL_TABLES``).

``load_space`` checks everything before anything is written: the table's fields, each range, and every
key with every end point and choice through the same checks as ``--set`` (the schema's rules), then the
model kind, the networks and the objective are built with it on the recipe's data. Errors are one line.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import tomli_w

from ppl_vae import kinds
from ppl_vae.config import Config, tomllib
from ppl_vae.data import load_data
from ppl_vae.data.spec import DataSpec
from ppl_vae.kinds import build_component
from ppl_vae.registry import OBJECTIVES, ConfigError, closest
from ppl_vae.runs.recipes import load_config, recipe_source
from ppl_vae.schema import Rule, positive_int

SPEC_FIELDS = ("low", "high", "step", "log", "choices")
SETTINGS_RULES = {
    "trials": positive_int(100_000),
    "pruner": Rule(str, choices=("median", "none")),
    "startup_trials": Rule(int, min=0),
    "warmup_epochs": Rule(int, min=0),
}
DEFAULTS: Dict[str, Any] = {"trials": 20, "pruner": "median", "startup_trials": 5, "warmup_epochs": 1}


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (``low``..``high``, optional ``step`` or ``log``) or ``choices``."""

    key: str
    type: str  # "int" | "float" | "choice"
    low: Any = None
    high: Any = None
    step: Any = None
    log: bool = False
    choices: Tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.type == "choice":  # Optuna stores choices as JSON scalars: lists and tables go as their TOML text
            picked = trial.suggest_categorical(self.key, [encode(c) for c in self.choices])
            return self.choices[[encode(c) for c in self.choices].index(picked)]
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def points(self) -> List[Any]:
        """The values that stand for the whole space in the checks: the choices, or the two end points."""
        return list(self.choices) if self.type == "choice" else [self.low, self.high]

    def contains(self, value: Any) -> bool:
        return value in self.choices if self.type == "choice" else self.low <= value <= self.high

    def describe(self) -> str:
        if self.type == "choice":
            return "choice:" + ",".join(toml_value(c) for c in self.choices)
        return ("log:" if self.log else "") + f"{self.low}:{self.high}" + (f":{self.step}" if self.step is not None else "")


@dataclass(frozen=True)
class Space:
    """The checked search: the recipe's config with ``--set`` applied, the params and the ``[tune]`` settings."""

    recipe: str
    overrides: Tuple[str, ...]
    base: Config
    params: Tuple[Param, ...]
    settings: Dict[str, Any]

    def config(self, values: Mapping[str, Any]) -> Config:
        """The config of one trial: the recipe with ``--set`` applied (read once), then the sampled values,
        applied and checked as ``--set`` does."""
        return copy.deepcopy(self.base).override([f"{k}={toml_value(v)}" for k, v in values.items()])

    def identity(self) -> str:
        """What a resumed study must agree on (JSON)."""
        params = {p.key: p.describe() for p in self.params}
        return json.dumps({"config": self.base.to_dict(), "params": params, "settings": self.settings}, sort_keys=True)


def toml_value(value: Any) -> str:
    """``value`` as the one-line TOML text ``--set`` reads back to the same value."""
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{tomli_w.dumps({k: 0}).split(' = ')[0]} = {toml_value(v)}" for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value}).strip()[len("v = ") :]


def show(value: Any) -> str:
    """A short form for tables and log lines (best.toml keeps the exact value)."""
    return f"{value:.4g}" if isinstance(value, float) else toml_value(value)


def encode(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else toml_value(value)


def _number(text: str, what: str) -> Union[int, float]:
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got '{text}'")
    return value


def parse_flag(text: str) -> Tuple[str, Dict[str, Any]]:
    """``KEY=SPEC`` of ``--param`` as the key and a ``[tune.params]`` table."""
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    where = f"--param '{text}'"
    if not sep or not key or not spec:
        raise ConfigError(f"{where}: expected KEY=SPEC with SPEC LOW:HIGH, LOW:HIGH:STEP, log:LOW:HIGH or choice:V1,V2,...")
    if spec.startswith("choice:"):
        body = spec[len("choice:") :]
        try:
            choices = tomllib.loads(f"v = [{body}]")["v"]
        except tomllib.TOMLDecodeError:
            choices = [c.strip() for c in body.split(",") if c.strip()]
        return key, {"choices": choices}
    log = spec.startswith("log:")
    parts = spec[len("log:") :].split(":") if log else spec.split(":")
    if len(parts) not in ((2,) if log else (2, 3)):
        raise ConfigError(f"{where}: expected LOW:HIGH, LOW:HIGH:STEP, log:LOW:HIGH or choice:V1,V2,..., got '{spec}'")
    table: Dict[str, Any] = {"low": _number(parts[0], f"{where}: LOW"), "high": _number(parts[1], f"{where}: HIGH")}
    if len(parts) == 3:
        table["step"] = _number(parts[2], f"{where}: STEP")
    if log:
        table["log"] = True
    return key, table


def _value_at(cfg: Config, key: str) -> Any:
    node: Any = cfg.to_dict()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _param(key: str, table: Any, where: str, base: Config) -> Param:
    """A ``Param`` from one ``[tune.params]`` entry; one-line errors for what cannot be a search range."""
    where = f"{where} '{key}'"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table such as {{ low = 1e-4, high = 1e-2, log = true }} or {{ choices = [8, 16] }}")
    for name in table:
        if name not in SPEC_FIELDS:
            raise ConfigError(
                f"{where}: unknown field '{name}'{closest(name, list(SPEC_FIELDS))}; valid fields: {', '.join(SPEC_FIELDS)}"
            )
    if "choices" in table:
        if set(table) != {"choices"}:
            raise ConfigError(f"{where}: give either choices or low/high (with step or log), not both")
        choices = table["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
        if len({toml_value(c) for c in choices}) != len(choices):
            raise ConfigError(f"{where}: choices repeat a value: {choices!r}")
        return Param(key, "choice", choices=tuple(choices))
    if "low" not in table or "high" not in table:
        raise ConfigError(f"{where}: a range needs both low and high (or give choices = [...])")
    low, high, step, log = table["low"], table["high"], table.get("step"), table.get("log", False)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got low = {low}, high = {high}")
    if log and step is not None:
        raise ConfigError(f"{where}: give step or log = true, not both")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None and not step > 0:
        raise ConfigError(f"{where}: step must be > 0, got {step}")
    current = _value_at(base, key)
    integer = isinstance(current, int) and not isinstance(current, bool)
    if current is None or isinstance(current, bool) or not isinstance(current, (int, float)):
        integer = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    if integer:
        if not all(isinstance(v, int) or float(v).is_integer() for v in (low, high, step) if v is not None):
            raise ConfigError(f"{where}: '{key}' is an integer setting; low, high and step must be integers, got {table}")
        low, high, step = int(low), int(high), (int(step) if step is not None else None)
        if step is not None and (high - low) % step:
            raise ConfigError(f"{where}: high - low ({high - low}) must be a multiple of step ({step})")
        return Param(key, "int", low, high, step, log)
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise ConfigError(f"{where}: high - low ({high - low:g}) must be a multiple of step ({step:g})")
    return Param(key, "float", float(low), float(high), float(step) if step is not None else None, log)


def _check_variant(cfg: Config, spec: DataSpec) -> None:
    """What ``prepare`` checks of a config, on the data already loaded: kind, networks, objective."""
    kind = kinds.kind(cfg.model.kind)
    kind.validate(cfg)
    kind.build(cfg.model, spec)
    build_component(OBJECTIVES, cfg.objective, "objective")


def load_space(recipe: str, params: Sequence[str] = (), overrides: Sequence[str] = ()) -> Space:
    """The search of ``recipe``'s ``[tune]`` table and the ``--param`` flags, checked end to end (nothing is written)."""
    base = load_config(recipe, overrides)
    raw = tomllib.loads(recipe_source(recipe).read_text(encoding="utf-8")).get("tune", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe '{recipe}': [tune] must be a table")
    settings = dict(DEFAULTS)
    for name, value in raw.items():
        if name == "params":
            continue
        if name not in SETTINGS_RULES:
            valid = ["params", *SETTINGS_RULES]
            raise ConfigError(f"recipe '{recipe}': unknown key 'tune.{name}'{closest(name, valid)}; valid keys: {', '.join(valid)}")
        settings[name] = SETTINGS_RULES[name].check(f"tune.{name}", value)
    tables: Dict[str, Tuple[Any, str]] = {}
    declared = raw.get("params", {})
    if not isinstance(declared, dict):
        raise ConfigError(f"recipe '{recipe}': [tune.params] must be a table of KEY = {{ low = ..., high = ... }}")
    for key, table in declared.items():
        tables[key] = (table, "[tune.params]")
    for flag in params:
        key, table = parse_flag(flag)
        tables[key] = (table, "--param")
    if not tables:
        raise ConfigError(
            f"nothing to search: recipe '{recipe}' declares no [tune.params] and no --param was given "
            "(e.g. --param train.lr=log:1e-4:1e-2)"
        )
    space = tuple(_param(key, table, where, base) for key, (table, where) in tables.items())
    splits = load_data(base.data)
    if splits.val is None:
        raise ConfigError("tune maximises the validation ELBO, but this config has no validation data: set data.val_fraction > 0")
    for p in space:
        for value in p.points():
            try:
                _check_variant(copy.deepcopy(base).override([f"{p.key}={toml_value(value)}"]), splits.spec)
            except ConfigError as err:
                message = str(err).removeprefix("--set: ")
                raise ConfigError(f"tune parameter '{p.key}' = {toml_value(value)}: {message}") from None
    return Space(recipe, tuple(overrides), base, space, settings)
