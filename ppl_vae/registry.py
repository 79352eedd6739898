"""Name -> class registries shared by recipes, the CLI and Python code.

Every swappable component (prior, likelihood, network, objective, dataset)
registers itself under a short name once; recipes and the command line look
names up here, so no module needs an if/elif chain on strings.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Iterable


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line that says how to fix it."""


def closest(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt name, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry:
    """A named collection of factories, e.g. ``PRIORS.build("mixture", k=10)``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, *names: str):
        def decorate(obj):
            for name in names:
                if name in self._items:
                    raise KeyError(f"{self.kind} '{name}' registered twice")
                self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{closest(name, self._items)}; "
                f"choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def build(self, name: str, **kwargs) -> Any:
        factory = self.get(name)
        try:
            return factory(**kwargs)
        except TypeError as err:
            raise ConfigError(f"{self.kind} '{name}': {err}") from None

    def resolve(self, obj, base: type, default: Callable[[], Any]) -> Any:
        """``obj`` itself if it is a ``base``, a registered name built with defaults, or ``default()`` for None."""
        if obj is None:
            return default()
        if isinstance(obj, base):
            return obj
        if isinstance(obj, str):
            return self.build(obj)
        raise ConfigError(f"cannot use {type(obj).__name__} as a {self.kind}: pass a {base.__name__} or a registered name")

    def names(self) -> list:
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
