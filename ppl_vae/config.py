"""Typed configs, TOML recipes, ``--set`` overrides, and building components from a config.

A recipe is a TOML file with the sections ``[data]``, ``[model]`` (with sub-tables ``prior``,
``likelihood``, ``encoder``, ``decoder``, ``posterior``), ``[objective]``, ``[train]`` and ``[eval]``.
Components are tables with a ``name`` (looked up in ``ppl_vae.registry``) and that component's
arguments. Configs round-trip: ``Config.from_dict(cfg.to_dict()) == cfg``.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
import tomli_w

from .registry import DECODERS, ENCODERS, OBJECTIVES, ConfigError, closest

RECIPES_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass
class DataConfig:
    name: str = "digits"
    path: str = ""  # directory (IDX) or file (.npy/.npz/.csv); "" = the dataset's default location
    preprocess: str = "binarize"  # scale | binarize | binarize-fixed | threshold | levels | squeeze | standardize | none
    flatten: bool = True
    val_fraction: float = 0.1
    limit: int = 0  # keep only the first N training data (0 = all)
    columns: List[str] = field(default_factory=list)  # CSV column types; [] = inferred
    labels: int = 0  # semi-supervised: keep labels for a class-balanced subset of this size (0 = no subset)
    seed: int = 0


@dataclass
class ModelConfig:
    kind: str = "vae"  # vae | semi-supervised (M2) | conditional (p(x | y))
    latent_dim: int = 10
    prior: Dict[str, Any] = field(default_factory=lambda: {"name": "standard-normal"})
    likelihood: Dict[str, Any] = field(default_factory=lambda: {"name": "bernoulli"})
    encoder: Dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "hidden": [256]})
    decoder: Dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "hidden": [256]})
    posterior: Dict[str, Any] = field(default_factory=lambda: {"name": "diagonal"})
    classifier: Dict[str, Any] = field(default_factory=lambda: {"hidden": [256]})  # q(y | x) of M2


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    device: str = "auto"
    clip_grad: float = 0.0
    trace: bool = True  # replay the Pyro program's loss from a recorded graph where that is exact (ppl_vae.tracing)
    compile: bool = False  # also compile that graph with torch.compile (seconds per batch shape; CPU needs a C++ compiler)


@dataclass
class EvalConfig:
    iwae_samples: int = 1000
    n_test: int = 0  # evaluate on the first N test data (0 = all)


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
            _assign(cfg, [key], value, source)
        return cfg

    def dumps(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path) -> None:
        Path(path).write_text(self.dumps())

    def override(self, assignments: List[str]) -> "Config":
        """Apply ``KEY=VALUE`` strings (``train.epochs=5``); VALUE is read as TOML, else as a string."""
        for item in assignments:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set expects KEY=VALUE (e.g. train.epochs=5), got '{item}'")
            _assign(self, key.strip().split("."), _parse_value(text.strip()), "--set")
        return self


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _fields(obj) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _check_type(path: str, expected, value, source: str):
    origin = getattr(expected, "__origin__", expected)
    if isinstance(expected, str):  # postponed annotations
        origin = {"int": int, "float": float, "bool": bool, "str": str}.get(expected, None) or (
            list if expected.startswith("List") else dict if expected.startswith("Dict") else None)
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


def _assign(obj, keys: List[str], value, source: str, prefix: str = "") -> None:
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
    setattr(obj, head, _check_type(path, fields[head].type, value, source))


# ---- recipes ----------------------------------------------------------------------------------
def recipe_names() -> List[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml")) if RECIPES_DIR.is_dir() else []


def recipe_path(name_or_file: str) -> Path:
    path = Path(name_or_file)
    if path.suffix == ".toml" or os.sep in name_or_file:
        if not path.is_file():
            raise ConfigError(f"recipe file '{name_or_file}' not found")
        return path
    candidate = RECIPES_DIR / f"{name_or_file}.toml"
    if not candidate.is_file():
        names = recipe_names()
        raise ConfigError(f"unknown recipe '{name_or_file}'{closest(name_or_file, names)}; "
                          f"'ppl-vae recipes' lists them: {', '.join(names)}")
    return candidate


def load_config(name_or_file: str = "vae-digits", overrides: List[str] = ()) -> Config:
    path = recipe_path(name_or_file)
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"recipe '{path}' is not valid TOML: {err}") from None
    return Config.from_dict(raw, source=str(path)).override(list(overrides))


def describe(path: Path) -> str:
    """A recipe's one-line description."""
    try:
        return tomllib.loads(path.read_text()).get("description", "").strip().splitlines()[0]
    except (tomllib.TOMLDecodeError, IndexError):
        return ""


# ---- building components ----------------------------------------------------------------------
def _split(table: Dict[str, Any], what: str):
    if "name" not in table:
        raise ConfigError(f"the {what} table needs a 'name'")
    args = dict(table)
    return args.pop("name"), args


def build_vae(model: ModelConfig, data_shape, data_meta: dict = None):
    """A VAE from a model config and the data's datum shape (and metadata, e.g. table column types)."""
    from .likelihoods import LIKELIHOODS
    from .priors import PRIORS
    from .vae import GUIDES, VAE

    data_meta = data_meta or {}
    lname, largs = _split(model.likelihood, "model.likelihood")
    if lname == "tabular" and "columns" not in largs:
        largs["columns"] = data_meta.get("columns", [])
    likelihood = LIKELIHOODS.build(lname, **largs)
    ename, eargs = _split(model.encoder, "model.encoder")
    dname, dargs = _split(model.decoder, "model.decoder")
    out_shape = likelihood.decoder_output_shape(tuple(data_shape))
    encoder = ENCODERS.build(ename, data_shape=tuple(data_shape), latent_dim=model.latent_dim, **eargs)
    decoder = DECODERS.build(dname, latent_dim=model.latent_dim, out_shape=out_shape, **dargs)
    pname, pargs = _split(model.prior, "model.prior")
    if model.kind != "vae":
        return _build_labelled(model, data_shape, data_meta, likelihood, PRIORS.build(pname, **pargs))
    gname, gargs = _split(model.posterior, "model.posterior")
    return VAE(data_shape, model.latent_dim, prior=PRIORS.build(pname, **pargs), likelihood=likelihood,
               encoder=encoder, decoder=decoder, posterior=GUIDES.build(gname, **gargs))


def _build_labelled(model: ModelConfig, data_shape, data_meta: dict, likelihood, prior):
    """M2 or the conditional VAE: MLP networks with the encoder's hidden sizes (flat data only)."""
    from .ssvae import ConditionalVAE, SemiSupervisedVAE

    kinds = {"semi-supervised": SemiSupervisedVAE, "conditional": ConditionalVAE}
    if model.kind not in kinds:
        raise ConfigError(f"unknown model.kind '{model.kind}'; choose one of: vae, {', '.join(kinds)}")
    n_classes = data_meta.get("n_classes")
    if not n_classes:
        raise ConfigError(f"model.kind '{model.kind}' needs labelled data with known classes; "
                          f"'{data_meta.get('name', 'this dataset')}' has none")
    if model.encoder.get("name", "mlp") != "mlp" or model.decoder.get("name", "mlp") != "mlp":
        raise ConfigError(f"model.kind '{model.kind}' uses MLP networks; set model.encoder.name and "
                          "model.decoder.name to 'mlp'")
    kwargs = dict(prior=prior, likelihood=likelihood, hidden=tuple(model.encoder.get("hidden", [256])),
                  activation=model.encoder.get("activation", "relu"))
    if model.kind == "semi-supervised":
        kwargs["classifier_hidden"] = tuple(model.classifier.get("hidden", [256]))
    return kinds[model.kind](tuple(data_shape), n_classes, model.latent_dim, **kwargs)


def build_objective(table: Dict[str, Any]):
    name, args = _split(table, "objective")
    return OBJECTIVES.build(name, **args)
