"""The README as pages of the site: split at its sections, relative links pointed at generated pages."""

from __future__ import annotations

import re
from typing import Dict, List, Set

LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def sections(markdown: str) -> Dict[str, str]:
    """The README split at its ``## `` headings: ``{heading: text}`` (the part before the first under "")."""
    out: Dict[str, List[str]] = {"": []}
    name = ""
    fence = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            name = line[3:].strip()
            out[name] = []
        out[name].append(line)
    return {k: "\n".join(v) + "\n" for k, v in out.items()}


def relink(markdown: str, generated: Set[str], base: str = "") -> str:
    """Point relative links at generated pages (relative to ``base``); other repository files become code."""

    def fix(m: re.Match) -> str:
        text, target = m.group(1), m.group(2)
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        if target in generated:
            return f"[{text}]({target[len(base) :] if base and target.startswith(base) else target})"
        if text.startswith("`") or text == target:
            return f"`{target}`"
        return f"{text} (`{target}`)"

    return LINK.sub(fix, markdown)
