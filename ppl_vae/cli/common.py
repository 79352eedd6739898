"""What every ``ppl-vae`` command module shares: the one-line-error parser and number types checked by rules."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn

from ppl_vae.registry import ConfigError
from ppl_vae.schema import Rule


class _Parser(argparse.ArgumentParser):
    """argparse with the package's one-line errors: ``ppl-vae: error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"ppl-vae: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def number(rule: Rule) -> Callable[[str], Any]:
    """An argparse type that reads a number and checks it against ``rule`` (the same rules as the config)."""

    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if rule.type is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule.allowed()}, got '{text}'") from None
        try:
            return rule.check("value", value)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {rule.allowed()}, got '{text}'") from None

    parse.__name__ = rule.allowed()  # argparse names the type in some messages
    parse.rule = rule  # type: ignore[attr-defined]  # read by the tests that drive every numeric flag
    return parse


def where(err: OSError) -> str:
    """The file an ``OSError`` was about, quoted, for a one-line message."""
    return f"'{err.filename}'" if err.filename else "a file"


_number = number  # the name the core commands use
