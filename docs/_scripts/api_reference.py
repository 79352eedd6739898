"""The API reference pages: one page per module of ``ppl_vae``, found by walking the source tree.

A new module or subpackage gets its page and its place in the navigation without any edit here.
Each page holds the mkdocstrings directive ``::: ppl_vae.x.y``; mkdocstrings renders it from the
docstrings and signatures when the site is built. A package page renders what the package defines
itself and lists the names it re-exports (``__all__``) as links to the pages where they are defined,
so each object is documented once. The package is read statically with griffe (nothing imported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

SKIP = {"__main__"}  # runs the CLI; nothing to document


def modules(root: Path) -> List[Tuple[str, ...]]:
    """Dotted paths (as tuples) of every package and module under the package directory ``root``, sorted."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = tuple(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif parts[-1] in SKIP or parts[-1].startswith("_"):
            continue
        if any(p.startswith("_") for p in parts[1:]) or not (path.parent / "__init__.py").is_file():
            continue
        found.append(parts)
    return sorted(found)


def page_path(parts: Tuple[str, ...], is_package: bool) -> str:
    """Where the page of module ``parts`` lives under ``reference/``."""
    return "/".join(parts) + ("/index.md" if is_package else ".md")


def _follow(root: Any, path: str) -> Optional[str]:
    """The path where the object that ``path`` names is defined, following re-exports inside the package.

    Where a name is both a submodule and the function it defines (``ppl_vae.training.fit``), an
    import of the name gets the function (``from .fit import fit`` rebinds it), so that is followed.
    """
    for _ in range(20):
        if path.partition(".")[0] != root.name:
            return None  # defined outside the package
        obj = _get(root, path)
        if obj is None:
            return None
        if obj.is_alias:
            path = obj.target_path
            continue
        leaf = path.rpartition(".")[2]
        if obj.is_module and leaf in obj.members:
            path = f"{path}.{leaf}"
            continue
        return path
    return None


def _get(root: Any, path: str) -> Any:
    rest = path.partition(".")[2]
    try:
        return root[rest] if rest else root
    except KeyError:
        return None


def _is_module(root: Any, path: str) -> bool:
    obj = _get(root, path)
    return bool(obj is not None and not obj.is_alias and obj.is_module)


def _members(root: Any, path: str) -> Any:
    obj = _get(root, path)
    return obj.members if obj is not None and not obj.is_alias else {}


def reexports(root: Any, package: str) -> Tuple[List[str], Dict[str, str]]:
    """Of ``package``'s public names (``__all__``, else those without ``_``): the ones it defines itself, and
    ``{name: defining path}`` for those it imports from elsewhere in the package (submodules excluded)."""
    obj = root[package.partition(".")[2]] if "." in package else root
    exports = obj.exports if obj.exports is not None else [n for n in obj.members if not n.startswith("_")]
    own, elsewhere = [], {}
    for name in exports:
        member = obj.members.get(name)
        if member is None:
            continue
        if member.is_alias and obj.exports is None:  # an import, not an export
            continue
        if member.is_alias or member.is_module:  # aliases are never resolved by griffe here (outside imports would fail)
            target = _follow(root, member.target_path if member.is_alias else f"{package}.{name}")
            if target is not None and not _is_module(root, target):
                elsewhere[name] = target
        else:
            own.append(name)
    return own, elsewhere


def _package_page(name: str, own: List[str], elsewhere: Dict[str, str], documented: set) -> str:
    members = "[" + ", ".join(own) + "]" if own else "false"
    text = f"::: {name}\n    options:\n      members: {members}\n"
    if elsewhere:
        text += "\n## Defined elsewhere, importable from here\n\n| name | defined in |\n|---|---|\n"
        for short, target in elsewhere.items():
            module, _, leaf = target.rpartition(".")
            ok = module in documented and not any(p.startswith("_") for p in target.split(".")[1:])
            link = f"[`{short}`][{target}]" if ok else f"`{short}`"
            text += f"| {link} | `{module}` |\n"
    return text


def pages(root_dir: Path) -> List[Tuple[str, Tuple[str, ...], str]]:
    """``(page path, module parts, Markdown)`` for every module under the package directory ``root_dir``."""
    import griffe

    root = griffe.load(root_dir.name, search_paths=[str(root_dir.parent)], resolve_aliases=False)
    found = modules(root_dir)
    documented = {".".join(parts) for parts in found}
    out = []
    for parts in found:
        is_package = (root_dir.parent.joinpath(*parts) / "__init__.py").is_file()
        name = ".".join(parts)
        if is_package:
            own, elsewhere = reexports(root, name)
            text = _package_page(name, own, elsewhere, documented)
        else:
            text = f"::: {name}\n"
        out.append((page_path(parts, is_package), parts, text))
    return out


def summary(entries: List[Tuple[str, Tuple[str, ...], str]]) -> str:
    """The literate-nav ``SUMMARY.md``: the package's own page, then its modules and subpackages, each
    subpackage's modules nested under it."""
    lines = []
    for page, parts, _ in entries:
        indent = "    " * max(len(parts) - 2, 0)
        title = ".".join(parts) if len(parts) <= 2 else parts[-1]
        lines.append(f"{indent}* [{title}]({page})")
    return "\n".join(lines) + "\n"
