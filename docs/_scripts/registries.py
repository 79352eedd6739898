"""The "Registered names" page: every name a recipe or ``VAE(...)`` accepts, read from the registries.

Importing ``ppl_vae`` registers every component, objective, data source and model kind, so a new
one (a module in ``ppl_vae/kinds/``, a prior registered with ``PRIORS.register``) is listed on the
next build. Each name links to the API entry of the class or function registered under it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Set


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("|", "\\|").strip()


def _link(obj: Any, documented: Set[str]) -> str:
    module, qualname = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
    path = f"{module}.{qualname}"
    if module in documented and qualname and "<" not in qualname and not any(p.startswith("_") for p in path.split(".")[1:]):
        return f"[`{qualname}`][{path}]"
    return f"`{qualname or obj!r}`"


def registries() -> Dict[str, Any]:
    """``{constant name: Registry}`` of ``ppl_vae.registry``, everything registered."""
    import ppl_vae  # noqa: F401  (registers everything)
    from ppl_vae import registry

    return {name: value for name, value in vars(registry).items() if isinstance(value, registry.Registry)}


def _grouped(reg: Any) -> List[tuple]:
    """``(names, object)`` with the names registered for one object together."""
    by_object: Dict[int, tuple] = {}
    for name in reg.names():
        obj = reg.get(name)
        names, _ = by_object.setdefault(id(obj), ([], obj))
        names.append(name)
    return list(by_object.values())


def render(documented: Set[str], is_kind: Callable[[str], bool] = lambda name: name == "KINDS") -> str:
    """The page as Markdown; ``documented``: the modules that have an API page (links go only there)."""
    out = [
        "# Registered names",
        "",
        'Every name that a recipe table (`{ name = "..." }`) or a Python argument (`prior="vamp"`) accepts,',
        "read from the registries in `ppl_vae.registry` when the site is built. Keyword arguments are checked",
        "against the registered class's signature: a misspelt one is a one-line error naming the accepted ones.",
    ]
    for constant, reg in sorted(registries().items(), key=lambda item: item[1].kind):
        out += ["", f"## {reg.kind}s (`{constant}`)", ""]
        if is_kind(constant):
            out += ["| name | description | capabilities | objectives | class |", "|---|---|---|---|---|"]
            for names, obj in _grouped(reg):
                k = obj()
                caps = ", ".join(sorted(k.capabilities)) or "none"
                objectives = ", ".join(f"`{o}`" for o in k.objectives)
                desc = (getattr(k, "description", "") or _first_line(obj)).replace("|", "\\|")
                out.append(f"| {', '.join(f'`{n}`' for n in names)} | {desc} | {caps} | {objectives} | {_link(obj, documented)} |")
        else:
            out += ["| name | registered | what it is |", "|---|---|---|"]
            for names, obj in _grouped(reg):
                out.append(f"| {', '.join(f'`{n}`' for n in names)} | {_link(obj, documented)} | {_first_line(obj)} |")
    return "\n".join(out) + "\n"
