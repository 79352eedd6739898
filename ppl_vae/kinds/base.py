"""The model-kind protocol: what a kind plugs into the run layer, and the capability lookup.

A model kind (plain VAE, conditional VAE, M2, ...) is one module in ``ppl_vae.kinds`` holding its
Pyro module (``model`` and ``guide``) and a ``ModelKind`` subclass registered in ``KINDS``. The
run layer, the CLI and the apps never branch on a kind's name or class: they call these methods
and ask for capabilities with ``require``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, FrozenSet, List, Optional, Tuple

import torch
from torch import nn

from ppl_vae.config import Config, ModelConfig
from ppl_vae.data import Splits
from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.objectives.base import Objective
from ppl_vae.registry import KINDS, ConfigError, Registry, recipe_of

# What a kind can be asked to do, and the command or function that asks.
CAPABILITIES: Dict[str, str] = {
    "sample": "draw new data (ppl-vae sample)",
    "reconstruct": "reconstruct data through the latent space",
    "classify": "predict labels with q(y | x)",
    "conditional-sample": "generate data of a chosen class",
    "impute": "fill in missing entries given the observed ones",
    "diagnose": "be diagnosed (ppl-vae diagnose: per-datum PSIS, SBC, a NUTS reference)",
    "compare": "be compared by held-out log p(x) (ppl-vae compare)",
    "disentanglement": "be scored with disentanglement metrics (ppl-vae evaluate --disentanglement)",
    "compress": "compress data losslessly with bits-back coding (ppl-vae compress)",
    "anomaly": "score data as anomalous by their likelihood (ppl-vae anomaly)",
    "synthesize": "generate synthetic rows of a table (ppl-vae synthesize)",
}


class ModelKind:
    """One model kind. Subclasses set the class attributes and implement ``build``; the other
    methods have defaults that suit an unlabelled VAE-like model."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    capabilities: ClassVar[FrozenSet[str]] = frozenset()
    objectives: ClassVar[Tuple[str, ...]] = ()  # the objective names this kind trains with
    uses_labelled_subset: ClassVar[bool] = False  # data.labels > 0 is required (and allowed only then)
    module_type: ClassVar[Optional[type]] = None  # the class ``build`` returns (``kind_of`` finds a module's kind by it)

    # ---- configuration --------------------------------------------------------------------
    def validate(self, cfg: Config) -> None:
        """Raise a one-line ``ConfigError`` when the config cannot train this kind."""
        objective = cfg.objective.get("name", "elbo")
        if objective not in self.objectives:
            raise ConfigError(
                f"model.kind '{self.name}' trains with objective.name in ({', '.join(self.objectives)}), "
                f"not '{objective}'{_kinds_with_objective(objective)}"
            )
        if self.uses_labelled_subset and not cfg.data.labels:
            raise ConfigError(f"model.kind '{self.name}' needs data.labels > 0 (the size of the labelled subset)")
        if not self.uses_labelled_subset and cfg.data.labels:
            raise ConfigError(
                f"data.labels is used only by model kinds that train on a labelled subset "
                f"({', '.join(kinds_where(lambda k: k.uses_labelled_subset))}); set it to 0"
            )

    def build(self, model: ModelConfig, spec: DataSpec) -> nn.Module:
        """The Pyro module (with ``model`` and ``guide``) for data described by ``spec``."""
        raise NotImplementedError

    def describe(self, module: Any) -> Dict[str, Any]:
        """The ``[model]`` recipe table that ``build`` turns back into ``module`` (what ``ppl_vae.save`` writes)."""
        raise ConfigError(f"model.kind '{self.name}' cannot describe a model built in Python; train it from a recipe instead")

    # ---- training -------------------------------------------------------------------------
    def prepare(self, splits: Splits, objective: Objective) -> None:
        """Hand the objective what it needs from the data beyond the batches (default: nothing)."""

    # ---- results --------------------------------------------------------------------------
    def evaluate(self, module: Any, data: ArrayDataset, spec: DataSpec, num_samples: int, progress: bool = False) -> Dict[str, Any]:
        """The test report: ELBO and IWAE log p(x) with standard errors and bits/dim (kinds add what else they know)."""
        from ppl_vae.evaluation.likelihood import bound_report, iwae_log_likelihood

        est = iwae_log_likelihood(module, data, num_samples, progress=progress)
        return bound_report(est, data, num_samples, module.likelihood.discrete, spec.bin_width)

    def extra_metrics(self, module: nn.Module, splits: Splits, cfg: Config) -> Dict[str, Any]:
        """Numbers a finished run adds to its metrics beyond ``evaluate`` (a baseline, say); default none."""
        return {}

    def figures(self, module: nn.Module, splits: Splits, history: List[dict]) -> Dict[str, Any]:
        """The standard figures of a finished run, by file stem."""
        from ppl_vae.plots import loss_curves_figure

        return {"loss_curves": loss_curves_figure(history)}

    def sample_figure(self, module: nn.Module, spec: DataSpec, n: int) -> Any:
        """A figure of ``n`` generated data (capability ``sample``)."""
        raise ConfigError(f"model.kind '{self.name}' cannot draw samples")

    def sample_text(self, module: nn.Module, spec: DataSpec, n: int) -> Optional[List[str]]:
        """``n`` generated data as lines of text, for kinds whose data are text (``ppl-vae sample``
        prints them and writes ``RUN/samples.txt``); None (the default): ``sample_figure`` draws them."""
        return None

    def represent(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The representation of ``x`` used by metrics (capability ``disentanglement``)."""
        raise ConfigError(f"model.kind '{self.name}' has no representation for metrics")

    def write_samples(self, module: nn.Module, spec: DataSpec, n: int, folder: Any) -> List[Any]:
        """Files of generated data that ``ppl-vae sample`` writes beside its figure, in ``folder``
        (MIDI files, text); returns their paths. Default: none."""
        return []


def kind(name: str) -> ModelKind:
    """The registered kind ``name`` (a one-line error lists the kinds for an unknown name)."""
    return KINDS.get(name)()


def kind_of(module: Any) -> ModelKind:
    """The kind whose ``build`` makes modules of ``module``'s class (a one-line error if none does)."""
    for name in KINDS.names():
        found = KINDS.get(name)()
        if found.module_type is not None and type(module) is found.module_type:
            return found
    classes = [t.__name__ for t in (KINDS.get(n)().module_type for n in KINDS.names()) if t is not None]
    raise ConfigError(
        f"a {type(module).__name__} is not the model of a registered kind; a run directory holds one of: {', '.join(classes)}"
    )


def component_table(component: Any, what: str, context: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """The recipe table ``{"name": ..., **arguments}`` that built ``component`` (less the ``context``
    arguments the kind supplies itself): a one-line error for a component a recipe cannot name."""
    recipe = recipe_of(component)
    if recipe is None or "name" not in recipe:
        raise ConfigError(
            f"{what} is a {type(component).__name__}, which no registry names: a run directory rebuilds the model from "
            f"registered names; register the class (e.g. @ppl_vae.registry.ENCODERS.register('my-net')) before saving"
        )
    return {k: _recipe_value(v, f"{what}.{k}") for k, v in recipe.items() if k not in context}


def _recipe_value(value: Any, what: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, torch.Size)):
        return [_recipe_value(v, what) for v in value]
    if isinstance(value, dict):
        return {str(k): _recipe_value(v, f"{what}.{k}") for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy or torch scalar
        return value.item()
    raise ConfigError(f"{what} is a {type(value).__name__}, which a recipe cannot hold; pass a number, string or list instead")


def kinds_where(test: Callable[[ModelKind], bool], registry: Registry = KINDS) -> List[str]:
    return [n for n in registry.names() if test(registry.get(n)())]


def require(name: str, capability: str, action: Optional[str] = None) -> ModelKind:
    """The kind ``name`` if it has ``capability``; else a one-line error naming the kinds that do."""
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown capability '{capability}'")
    found = kind(name)
    if capability not in found.capabilities:
        having = kinds_where(lambda k: capability in k.capabilities)
        raise ConfigError(
            f"{action or capability} needs a model kind that can {CAPABILITIES[capability].split(' (')[0]}; "
            f"this run is model.kind = '{name}'; kinds that can: {', '.join(having) or 'none'}"
        )
    return found


def _kinds_with_objective(objective: str) -> str:
    having = kinds_where(lambda k: objective in k.objectives)
    return f" (objective '{objective}' is for model.kind {' or '.join(repr(k) for k in having)})" if having else ""


def build_component(registry: Registry, table: Dict[str, Any], what: str, **context: Any) -> Any:
    """Build a component from a recipe table ``{"name": ..., **arguments}``; ``context`` holds
    arguments the run supplies (data shape, latent size) that the recipe does not."""
    if "name" not in table:
        raise ConfigError(f"the {what} table needs a 'name' (one of: {', '.join(registry.names())})")
    args = dict(table)
    name = args.pop("name")
    defaults = getattr(registry.get(name), "data_defaults", None)
    if defaults is not None and "meta" in context:
        args = {**defaults(context["meta"]), **args}
    context.pop("meta", None)
    return registry.build_at(what, name, {**context, **args})
