"""The user-facing error type and the "did you mean" hint, at the bottom of every layer."""

from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A user-facing configuration problem; its message is one line that says how to fix it."""


def closest(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt name, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
