"""Typed configs: the schema of a recipe, reading and writing TOML, ``--set`` overrides.

A recipe is a TOML file with the sections ``[data]``, ``[model]`` (``kind``, ``latent_dim`` and the
component tables ``prior``, ``likelihood``, ``encoder``, ``decoder``, ``posterior``), ``[objective]``,
``[train]`` and ``[eval]``. Component tables hold a ``name`` (looked up in ``ppl_vae.registry`` when
the model kind builds the model) and that component's arguments. Configs round-trip:
``Config.from_dict(cfg.to_dict()) == cfg``. Finding recipes by name is ``ppl_vae.runs.recipes``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
import tomli_w

from ppl_vae.registry import ConfigError, closest
from ppl_vae.schema import (
    Rule,
    check_dataclass,
    count_or_all,
    nonnegative_float,
    positive_float,
    positive_int,
    probability,
    rule_of,
    seed,
    setting,
)


PREPROCESS = ("scale", "binarize", "binarize-fixed", "threshold", "levels", "squeeze", "standardize", "none")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# Upper bounds catch typos (an extra zero or three) before they cost hours or all the memory.
MAX_LATENT, MAX_EPOCHS, MAX_BATCH, MAX_SAMPLES = 4096, 1_000_000, 1_048_576, 10_000_000
# Top-level recipe tables that belong to a tool rather than to a run (``[tune]``: ``ppl_vae.runs.tune``).
TOOL_TABLES = ("tune",)


@dataclass
class DataConfig:
    name: str = "digits"  # a registered data source (ppl_vae.data.sources)
    path: str = ""  # directory (IDX) or file (.npy/.npz/.csv); "" = the dataset's default location
    preprocess: str = setting("binarize", Rule(str, choices=PREPROCESS))
    flatten: bool = True
    val_fraction: float = setting(0.1, probability(open_max=True))
    limit: int = setting(0, count_or_all(what="0 = all training data"))  # keep only the first N training data
    columns: List[str] = field(default_factory=list)  # CSV column types; [] = inferred
    labels: int = setting(0, count_or_all(what="0 = no labelled subset"))  # semi-supervised: size of the labelled subset
    seed: int = setting(0, seed())
    options: Dict[str, Any] = field(default_factory=dict)  # the source's own settings (e.g. text: vocab_size, max_tokens)


@dataclass
class ModelConfig:
    kind: str = "vae"  # a registered model kind: vae | conditional | semi-supervised (ppl_vae.kinds)
    latent_dim: int = setting(10, positive_int(MAX_LATENT))
    prior: Dict[str, Any] = field(default_factory=lambda: {"name": "standard-normal"})
    likelihood: Dict[str, Any] = field(default_factory=lambda: {"name": "bernoulli"})
    encoder: Dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "hidden": [256]})
    decoder: Dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "hidden": [256]})
    posterior: Dict[str, Any] = field(default_factory=lambda: {"name": "diagonal"})
    classifier: Dict[str, Any] = field(default_factory=lambda: {"hidden": [256]})  # q(y | x) of M2


@dataclass
class TrainConfig:
    epochs: int = setting(20, positive_int(MAX_EPOCHS))
    batch_size: int = setting(128, positive_int(MAX_BATCH))
    lr: float = setting(1e-3, positive_float(100.0))
    optimizer: str = setting("adam", Rule(str, choices=OPTIMIZERS))
    seed: int = setting(0, seed())
    device: str = "auto"
    clip_grad: float = setting(0.0, nonnegative_float(note="the largest gradient norm; 0 = no clipping"))
    trace: bool = True  # replay the Pyro program's loss from a recorded graph where that is exact (ppl_vae.training.tracing)
    compile: bool = False  # also compile that graph with torch.compile (seconds per batch shape; CPU needs a C++ compiler)
    patience: int = setting(0, count_or_all(what="epochs without a better validation ELBO before stopping; 0 = never stop early"))
    min_delta: float = setting(0.0, nonnegative_float(note="the least rise of the validation ELBO (nats) that counts as better"))
    lr_schedule: Dict[str, Any] = field(default_factory=dict)  # a torch LR scheduler: {name = "cosine"}, ...; {} = constant
    evaluate: str = setting("last", Rule(str, choices=("last", "best")))  # the test report of the last or the best epoch


@dataclass
class EvalConfig:
    iwae_samples: int = setting(1000, positive_int(MAX_SAMPLES))
    n_test: int = setting(0, count_or_all(what="0 = all test data"))  # evaluate on the first N test data


@dataclass
class Config:
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: Dict[str, Any] = field(default_factory=lambda: {"name": "elbo"})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ---- (de)serialization -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> "Config":
        cfg = cls()
        for key, value in raw.items():
            if key in TOOL_TABLES:  # read (and checked) by the tool that owns it, not part of a run's config
                continue
            _assign(cfg, [key], value, source)
        return cfg

    def dumps(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.dumps())

    def validate(self) -> "Config":
        """Check every value against the schema's rules (what ``from_dict`` and ``override`` already do
        key by key; for configs built or changed in Python). Returns ``self``; raises a one-line
        ``ConfigError`` naming the key, the value and what is allowed."""
        check_dataclass(self)
        return self

    def override(self, assignments: List[str]) -> "Config":
        """Apply ``KEY=VALUE`` strings (``train.epochs=5``); VALUE is read as TOML, else as a string."""
        for item in assignments:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set expects KEY=VALUE (e.g. train.epochs=5), got '{item}'")
            _assign(self, key.strip().split("."), _parse_value(text.strip()), "--set")
        return self


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _fields(obj: Any) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _check_type(path: str, expected: Any, value: Any, source: str) -> Any:
    origin = getattr(expected, "__origin__", expected)
    if isinstance(expected, str):  # postponed annotations
        origin = {"int": int, "float": float, "bool": bool, "str": str}.get(expected, None) or (
            list if expected.startswith("List") else dict if expected.startswith("Dict") else None
        )
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
        dict: isinstance(value, dict),
    }.get(origin, True)
    if not ok:
        name = getattr(origin, "__name__", str(origin))
        raise ConfigError(f"{source}: '{path}' must be of type {name}, got {value!r} ({type(value).__name__})")
    return float(value) if origin is float else value


def _assign(obj: Any, keys: List[str], value: Any, source: str, prefix: str = "") -> None:
    """Set ``obj.keys[0]...keys[-1] = value`` with key and type checks (tables assign recursively)."""
    head, rest = keys[0], keys[1:]
    path = f"{prefix}{head}"
    if isinstance(obj, dict):
        if rest:
            sub = obj.setdefault(head, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"{source}: '{path}' is a value, not a table")
            _assign(sub, rest, value, source, path + ".")
        else:
            obj[head] = value
        return
    fields = _fields(obj)
    if head not in fields:
        valid = [f"{prefix}{n}" for n in fields]
        raise ConfigError(f"{source}: unknown key '{path}'{closest(path, valid)}; valid keys here: {', '.join(valid)}")
    current = getattr(obj, head)
    if dataclasses.is_dataclass(current):
        if rest:
            _assign(current, rest, value, source, path + ".")
        elif isinstance(value, dict):
            for k, v in value.items():
                _assign(current, [k], v, source, path + ".")
        else:
            raise ConfigError(f"{source}: '{path}' is a table; set one of its keys, e.g. '{path}.{next(iter(_fields(current)))}'")
        return
    if isinstance(current, dict) and rest:
        _assign(current, rest, value, source, path + ".")
        return
    rule = rule_of(fields[head])
    if rule is not None:
        try:
            value = rule.check(path, value)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    setattr(obj, head, _check_type(path, fields[head].type, value, source))


def loads(text: str, source: str = "config") -> Config:
    """A Config from TOML text (a one-line error names ``source`` when the text is not valid TOML)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"recipe '{source}' is not valid TOML: {err}") from None
    return Config.from_dict(raw, source=source)
