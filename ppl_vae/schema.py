"""Constraints on settings, declared once where each setting is declared, checked the same way everywhere.

A ``Rule`` says what a value must be: its type, bounds (open or closed), choices, and what a zero
means when zero is allowed as "all" or "off". Config fields carry one in their metadata
(``setting(20, rule=Rule(int, min=1))``); constructors of registered components, objectives and
model kinds carry one in their annotations (``num_particles: Annotated[int, Rule(int, min=1)]``).
Recipes, ``--set``, the Python API and the registries all check through ``Rule.check``, which raises
a one-line ``ConfigError`` naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

from ppl_vae.errors import ConfigError

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Rule:
    """What a value must be. ``min`` / ``max`` bound numbers (``open_min`` / ``open_max`` exclude the
    bound itself); ``choices`` lists the allowed values; ``note`` says what a special value means."""

    type: type
    min: Optional[float] = None
    max: Optional[float] = None
    open_min: bool = False
    open_max: bool = False
    choices: Optional[Tuple[Any, ...]] = None
    note: str = ""

    def allowed(self) -> str:
        """What is allowed, in words: 'an integer >= 1', 'a number in [0, 1)', 'one of: a, b'."""
        if self.choices is not None:
            return "one of: " + ", ".join(map(str, self.choices))
        text = _TYPE_NAMES.get(self.type, self.type.__name__)
        if self.type is float:
            text = "a finite number"
        if self.min is not None and self.max is not None:
            text += f" in {'(' if self.open_min else '['}{_num(self.min)}, {_num(self.max)}{')' if self.open_max else ']'}"
        elif self.min is not None:
            text += f" {'>' if self.open_min else '>='} {_num(self.min)}"
        elif self.max is not None:
            text += f" {'<' if self.open_max else '<='} {_num(self.max)}"
        return text + (f" ({self.note})" if self.note else "")

    def check(self, key: str, value: Any) -> Any:
        """``value`` converted to the rule's type (an int where a float is asked for becomes a float);
        a one-line ``ConfigError`` naming ``key``, the value and what is allowed otherwise."""
        bad = ConfigError(f"'{key}' must be {self.allowed()}, got {value!r}")
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            if self.type is int and not isinstance(value, int):
                if not (isinstance(value, float) and value.is_integer()):
                    raise bad
                value = int(value)
            if self.type is float:
                value = float(value)
                if not math.isfinite(value):
                    raise bad
            if self.min is not None and (value < self.min or (self.open_min and value == self.min)):
                raise bad
            if self.max is not None and (value > self.max or (self.open_max and value == self.max)):
                raise bad
        elif not isinstance(value, self.type):
            raise bad
        if self.choices is not None and value not in self.choices:
            raise bad
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


# ---- the common rules ------------------------------------------------------------------------
SEED_MAX = 2**32 - 1  # numpy, torch and Python all take seeds up to here


def positive_int(maximum: Optional[int] = None, note: str = "") -> Rule:
    return Rule(int, min=1, max=maximum, note=note)


def count_or_all(maximum: Optional[int] = None, what: str = "0 = all") -> Rule:
    return Rule(int, min=0, max=maximum, note=what)


def positive_float(maximum: Optional[float] = None, note: str = "") -> Rule:
    return Rule(float, min=0.0, open_min=True, max=maximum, note=note)


def nonnegative_float(maximum: Optional[float] = None, note: str = "") -> Rule:
    return Rule(float, min=0.0, max=maximum, note=note)


def probability(open_max: bool = False) -> Rule:
    return Rule(float, min=0.0, max=1.0, open_max=open_max)


def seed() -> Rule:
    return Rule(int, min=0, max=SEED_MAX)


def setting(default: Any = dataclasses.MISSING, rule: Optional[Rule] = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a ``Rule`` in its metadata."""
    meta = {"rule": rule} if rule is not None else {}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def rule_of(field: dataclasses.Field) -> Optional[Rule]:
    return field.metadata.get("rule")


def check_dataclass(obj: Any, prefix: str = "") -> None:
    """Check every field of a (nested) config dataclass against its rule."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_dataclass(value, f"{prefix}{f.name}.")
            continue
        rule = rule_of(f)
        if rule is not None:
            setattr(obj, f.name, rule.check(f"{prefix}{f.name}", value))


def iter_rules(cls: type, prefix: str = "") -> Iterator[Tuple[str, Rule]]:
    """(dotted key, rule) of every field with a rule in a config dataclass and its sub-configs."""
    for f in dataclasses.fields(cls):
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and isinstance(sub, type) and dataclasses.is_dataclass(sub):
            yield from iter_rules(sub, f"{prefix}{f.name}.")
        elif rule_of(f) is not None:
            yield f"{prefix}{f.name}", rule_of(f)  # type: ignore[misc]


# ---- rules on constructor arguments (components, objectives) ---------------------------------
def argument_rules(factory: Callable[..., Any]) -> Dict[str, Rule]:
    """The ``Rule`` in each ``Annotated[...]`` parameter of ``factory`` (a class: its ``__init__``)."""
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable annotations: no rules to check
        return {}
    rules = {}
    for name, hint in hints.items():
        for extra in getattr(hint, "__metadata__", ()):
            if isinstance(extra, Rule):
                rules[name] = extra
    return rules


def check_arguments(what: str, factory: Callable[..., Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """``kwargs`` checked against ``factory``'s rules (keys named ``what.argument`` in errors)."""
    rules = argument_rules(factory)
    return {k: rules[k].check(f"{what}.{k}", v) if k in rules else v for k, v in kwargs.items()}


def describe_rules(rules: Sequence[Tuple[str, Rule]]) -> str:
    """A Markdown table of keys and what they allow (for the documentation)."""
    rows = ["| key | allowed |", "|---|---|"] + [f"| `{k}` | {r.allowed()} |" for k, r in rules]
    return "\n".join(rows)


def checked(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate an ``__init__``: its ``Annotated[..., Rule]`` arguments are checked on every call, so a
    component built in Python is held to the same rules as one built from a recipe."""
    import functools
    import inspect

    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        rules = argument_rules(init)
        bound = signature.bind(self, *args, **kwargs)
        for name, value in list(bound.arguments.items()):
            if name in rules:
                bound.arguments[name] = rules[name].check(f"{type(self).__name__}.{name}", value)
        init(*bound.args, **bound.kwargs)

    return wrapper


# Argument types for constructors (``num_particles: PositiveInt = 1``).
PositiveInt = Annotated[int, positive_int()]
PositiveFloat = Annotated[float, positive_float()]
NonNegativeFloat = Annotated[float, nonnegative_float()]
UnitInterval = Annotated[float, Rule(float, min=0.0, max=1.0, open_min=True)]
