"""The CLI reference page, rendered from the ``ppl-vae`` argparse parser itself.

``ppl_vae.cli._parser()`` discovers its command modules, so a command added as a module in
``ppl_vae/cli/`` appears here without any edit. ``commands`` walks the sub-parsers (nested ones
too); ``render`` writes one section per command: its usage line, help, and a table of arguments.
"""

from __future__ import annotations

import argparse
from typing import Iterator, List, Tuple

HIDDEN = {argparse.SUPPRESS}


def _subparser_actions(parser: argparse.ArgumentParser) -> List[argparse._SubParsersAction]:
    return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]


def commands(
    parser: argparse.ArgumentParser, prefix: Tuple[str, ...] = ()
) -> Iterator[Tuple[Tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every (sub-)command as ``(path, help, parser)``, in the order the parser declares them, nested ones after their parent."""
    for action in _subparser_actions(parser):
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias of a command already listed
                continue
            seen.add(id(sub))
            path = prefix + (name,)
            yield path, helps.get(name, ""), sub
            yield from commands(sub, path)


def arguments(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    """The arguments a user can give to ``parser`` (no sub-command choosers, nothing suppressed)."""
    return [a for a in parser._actions if not isinstance(a, argparse._SubParsersAction) and a.help not in HIDDEN]


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and the like expanded)."""
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS) or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)):
        return ""
    if isinstance(action.default, list) and not action.default:
        return ""
    return f"`{action.default}`"


def _allowed(action: argparse.Action) -> str:
    if action.choices:
        return "one of " + ", ".join(f"`{c}`" for c in action.choices)
    rule = getattr(action.type, "rule", None)  # ppl_vae.cli.common.number: checked against a schema rule
    if rule is not None:
        return _cell(rule.allowed())
    return ""


def _names(action: argparse.Action) -> str:
    if action.option_strings:
        metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
        return ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
    return (
        f"`{action.metavar or action.dest}`"
        + (" ..." if action.nargs in ("+", "*") else "")
        + (" (optional)" if action.nargs == "?" else "")
    )


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage lines without the ``usage:`` prefix (continuation lines dedented to match)."""
    first, *rest = parser.format_usage().rstrip().split("\n")
    pad = len("usage: ")
    return "\n".join([first[pad:]] + [line[pad:] if line[:pad].isspace() else line for line in rest])


def render(parser: argparse.ArgumentParser) -> str:
    """The whole reference page as Markdown."""
    prog = parser.prog
    out = [
        "# Command-line reference",
        "",
        "Generated from the `ppl-vae` argument parser when the documentation is built, so it lists every",
        "command, including those added as modules in `ppl_vae/cli/`. `python -m ppl_vae` is the same command.",
        "Every user error prints one line `ppl-vae: error: ...` and exits with status 2.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    listed = list(commands(parser))
    for path, help_, _ in listed:
        name = " ".join(path)
        out.append(f"| [`{name}`](#{'-'.join(path)}) | {_cell(help_)} |")
    for path, help_, sub in listed:
        out += ["", f"## {prog} {' '.join(path)} {{#{'-'.join(path)}}}", ""]
        if help_:
            out += [help_[0].upper() + help_[1:] + ("" if help_.endswith(".") else "."), ""]
        if sub.description:
            out += [sub.description, ""]
        out += ["```text", _usage(sub), "```", ""]
        args = arguments(sub)
        if args:
            out += ["| argument | default | allowed | description |", "|---|---|---|---|"]
            for action in args:
                out.append(f"| {_names(action)} | {_default(action)} | {_allowed(action)} | {_cell(_help(sub, action))} |")
        if sub.epilog:
            out += ["", sub.epilog]
    return "\n".join(out) + "\n"
