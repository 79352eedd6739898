"""Name -> class registries shared by recipes, the CLI and Python code.

Every swappable component (prior, likelihood, network, objective, dataset, model kind)
registers itself under a short name once; recipes and the command line look
names up here, so no module needs an if/elif chain on strings.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, List, Optional

from ppl_vae.errors import ConfigError, closest
from ppl_vae.schema import check_arguments


def accepted_arguments(factory: Callable[..., Any]) -> Optional[List[str]]:
    """The keyword arguments ``factory`` accepts, or None when it takes ``**kwargs`` (anything goes)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


_RECIPE = "_ppl_vae_recipe"  # the instance attribute holding {"name": ..., **arguments}


def remember_arguments(cls: type, name: Optional[str] = None) -> type:
    """Make every instance of ``cls`` (not of its subclasses) remember the arguments it was built
    with, as ``{"name": name, **arguments}`` (``recipe_of``), so that a model built in Python can be
    written as a recipe table and rebuilt by a run directory (``ppl_vae.save``). Registration does
    this for every registered class; model classes do it themselves."""
    init = cls.__init__  # type: ignore[misc]
    if getattr(init, "_remembers", None) is cls:
        return cls
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is cls:  # an unregistered subclass is not the registered class: it remembers nothing
            bound = signature.bind(self, *args, **kwargs).arguments
            bound.pop(next(iter(signature.parameters)))  # self
            extra = bound.pop("kwargs", {}) if "kwargs" in signature.parameters else {}
            object.__setattr__(self, _RECIPE, {**({"name": name} if name else {}), **bound, **extra})

    __init__._remembers = cls  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def recipe_of(obj: Any) -> Optional[Dict[str, Any]]:
    """``{"name": ..., **arguments}`` that built ``obj`` (a registered class's instance), else None."""
    recipe = getattr(obj, _RECIPE, None)
    return dict(recipe) if isinstance(recipe, dict) else None


class Registry:
    """A named collection of factories, e.g. ``PRIORS.build("mixture", k=10)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, *names: str) -> Callable[[Any], Any]:
        def decorate(obj: Any) -> Any:
            for name in names:
                if name in self._items:
                    raise KeyError(f"{self.kind} '{name}' registered twice")
                self._items[name] = obj
            if inspect.isclass(obj):
                remember_arguments(obj, names[0])
            return obj

        return decorate

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{closest(name, self._items)}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """``name``'s factory called with ``kwargs``, after checking them (unknown names, rules)."""
        return self.build_at(self.kind, name, kwargs)

    def build_at(self, key: str, name: str, kwargs: Dict[str, Any]) -> Any:
        """``build`` for the recipe table at ``key`` (``model.prior``): errors name ``key.argument``."""
        factory = self.get(name)
        accepted = accepted_arguments(factory)
        unknown = sorted(set(kwargs) - set(accepted if accepted is not None else kwargs))
        if unknown:
            raise ConfigError(
                f"{self.kind} '{name}' has no argument '{unknown[0]}'{closest(unknown[0], accepted or [])}; "
                f"it accepts: {', '.join(accepted or []) or 'no arguments'}"
            )
        kwargs = check_arguments(key, factory, kwargs)
        try:
            return factory(**kwargs)
        except TypeError as err:
            raise ConfigError(f"{self.kind} '{name}': {err}") from None

    def resolve(self, obj: Any, base: type, default: Callable[[], Any]) -> Any:
        """``obj`` itself if it is a ``base``, a registered name built with defaults, or ``default()`` for None."""
        if obj is None:
            return default()
        if isinstance(obj, base):
            return obj
        if isinstance(obj, str):
            return self.build(obj)
        raise ConfigError(f"cannot use {type(obj).__name__} as a {self.kind}: pass a {base.__name__} or a registered name")

    def names(self) -> List[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


PRIORS = Registry("prior")
LIKELIHOODS = Registry("likelihood")
ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
GUIDES = Registry("guide")
OBJECTIVES = Registry("objective")
DATASETS = Registry("dataset")
KINDS = Registry("model kind")
