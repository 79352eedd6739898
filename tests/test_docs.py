"""The documentation site's generators and hand-written pages stay true to the code (fast; CI builds the
site itself with ``mkdocs build --strict``).

* the CLI reference covers every command the parser has (discovered modules included) and every option;
* the API reference has a page for every module, and every re-export it links to exists;
* the "Registered names" page lists every name of every registry;
* every ``ppl-vae ...`` command line in the pages parses with the real parser;
* every Python snippet of the how-to pages runs, and where a ``text`` block follows it, prints that text;
* the README becomes the home page with its links pointed at the site's pages;
* stored tutorial outputs are merged only into notebooks whose code is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import pkgutil
import re
import shlex
import sys
from pathlib import Path

import nbformat
import pytest

import ppl_vae
from ppl_vae.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_scripts"))

import api_reference  # noqa: E402
import cli_reference  # noqa: E402
import readme_pages  # noqa: E402
import registries  # noqa: E402
import tutorial_pages  # noqa: E402

PAGES = sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("how-to/*.md"))
HOW_TO = sorted(DOCS.glob("how-to/*.md"))
FENCE = re.compile(r"(<!-- docs-test: skip[^>]*-->\s*)?^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(page: Path) -> list:
    """``(language, code, skipped, end offset)`` of each fenced block of ``page``."""
    text = page.read_text()
    return [(m.group(2), m.group(3), bool(m.group(1)), m.end()) for m in FENCE.finditer(text)]


def test_cli_reference_covers_every_command_and_option():
    parser = _parser()
    page = cli_reference.render(parser)
    listed = {path for path, _, _ in cli_reference.commands(parser)}
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {(name,) for name in top.choices} <= listed  # discovered command modules included
    assert {"train", "evaluate", "sample", "diagnose", "compare", "recipes"} <= {p[0] for p in listed}
    for path, _, sub in cli_reference.commands(parser):
        heading = f"## ppl-vae {' '.join(path)} {{#{'-'.join(path)}}}"
        assert heading in page
        section = page.split(heading, 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            names = action.option_strings or [action.metavar or action.dest]
            for name in names:
                assert f"`{name}" in section, f"'ppl-vae {' '.join(path)}': {name} missing from the CLI reference"
            rule = getattr(action.type, "rule", None)
            if rule is not None:
                assert rule.allowed().replace("|", "\\|") in section


def test_cli_reference_renders_nested_commands_and_hides_suppressed_options():
    parser = argparse.ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command")
    outer = sub.add_parser("data", help="work on data")
    inner = outer.add_subparsers(dest="what").add_parser("fetch", help="fetch it")
    inner.add_argument("--retries", type=int, default=3, help="tries (default %(default)s)")
    inner.add_argument("--secret", help=argparse.SUPPRESS)
    page = cli_reference.render(parser)
    assert [p for p, _, _ in cli_reference.commands(parser)] == [("data",), ("data", "fetch")]
    assert "## tool data fetch {#data-fetch}" in page
    assert "| `--retries RETRIES` | `3` |  | tries (default 3) |" in page
    assert "--secret" not in page


def test_api_reference_has_a_page_for_every_module():
    pytest.importorskip("griffe", reason="the [docs] extra reads the package with griffe")
    found = {".".join(parts) for parts in api_reference.modules(ROOT / "ppl_vae")}
    walked = {"ppl_vae"} | {
        m.name
        for m in pkgutil.walk_packages(ppl_vae.__path__, "ppl_vae.")
        if not any(part.startswith("_") for part in m.name.split(".")[1:])
    }
    walked.discard("ppl_vae.recipes")  # package data (the TOML recipes), no code
    assert found == walked
    entries = api_reference.pages(ROOT / "ppl_vae")
    nav = api_reference.summary(entries)
    for page, parts, text in entries:
        assert f"({page})" in nav and f"::: {'.'.join(parts)}" in text
        for target in re.findall(r"\]\[(ppl_vae\.[\w.]+)\]", text):  # re-exports link to where they are defined
            module, _, name = target.rpartition(".")
            assert hasattr(importlib.import_module(module), name), target
    root = next(text for page, _, text in entries if page == "ppl_vae/index.md")
    for name in ppl_vae.__all__:
        assert f"[`{name}`]" in root


def test_registered_names_page_lists_every_registered_name():
    page = registries.render({"ppl_vae.components.priors"})
    regs = registries.registries()
    assert {"PRIORS", "LIKELIHOODS", "ENCODERS", "DECODERS", "GUIDES", "OBJECTIVES", "DATASETS", "KINDS"} <= set(regs)
    for reg in regs.values():
        assert f"## {reg.kind}s" in page
        for name in reg.names():
            assert f"`{name}`" in page
    assert "[`MixtureOfGaussiansPrior`][ppl_vae.components.priors.MixtureOfGaussiansPrior]" in page
    assert "[`NormalLikelihood`]" not in page  # its module was not said to be documented: no dangling link


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_command_lines_in_the_pages_parse(page):
    parser = _parser()
    for language, code, _, _ in blocks(page):
        if language not in ("bash", "sh", "console"):
            continue
        for line in code.splitlines():
            line = line.split("  #")[0].strip().lstrip("$ ")
            if line.startswith("ppl-vae "):
                try:
                    parser.parse_args(shlex.split(line)[1:])
                except SystemExit:
                    pytest.fail(f"{page.name}: '{line}' does not parse")


@pytest.mark.parametrize("page", HOW_TO, ids=lambda p: p.stem)
def test_how_to_snippets_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = page.read_text()
    found = blocks(page)
    if not any(language == "python" for language, *_ in found):
        pytest.skip(f"{page.name} has no Python snippet")
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for i, (language, code, skipped, end) in enumerate(found):
        if language != "python" or skipped:
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        following = found[i + 1] if i + 1 < len(found) else None
        if following and following[0] == "text" and not text[end : text.index("```text", end)].strip():
            assert out.getvalue().strip() == following[1].strip(), f"{page.name}: block {i} prints something else"


def test_readme_links_point_at_site_pages_or_become_code():
    text = "See [tutorials/01-a.ipynb](tutorials/01-a.ipynb), [the design](../shared/DESIGN.md), [x](https://e.org) and [t](#top)."
    assert readme_pages.relink(text, {"tutorials/01-a.ipynb"}) == (
        "See [tutorials/01-a.ipynb](tutorials/01-a.ipynb), the design (`../shared/DESIGN.md`), [x](https://e.org) and [t](#top)."
    )
    assert readme_pages.relink(text, {"tutorials/01-a.ipynb"}, base="tutorials/").startswith("See [tutorials/01-a.ipynb](01-a.ipynb)")
    parts = readme_pages.sections((ROOT / "README.md").read_text())
    assert "Tutorials" in parts and "Documentation" in parts
    for path in sorted((ROOT / "tutorials").glob("*.ipynb")):  # the tutorials page lists each one, linked
        assert f"]({path.name})" in readme_pages.relink(parts["Tutorials"], {f"tutorials/{path.name}"}, base="tutorials/")
    assert "```" not in "".join(k for k in parts)  # a '## ' inside a code block is not a section


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")] + [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_stored_tutorial_outputs_are_used_only_for_unchanged_code():
    executed = _notebook("x = 1", "print(x)")
    executed.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    current = _notebook("x = 1", "print(x)")
    current.cells[0].source = "# a new title"  # prose may change freely
    merged = tutorial_pages.merge(current, executed)
    assert merged is not None and merged.cells[0].source == "# a new title" and merged.cells[2].outputs[0]["text"] == "1\n"
    assert not current.cells[2].outputs  # the current notebook is not modified
    assert tutorial_pages.merge(_notebook("x = 2", "print(x)"), executed) is None  # code changed: run it instead
    assert tutorial_pages.merge(_notebook("x = 1"), executed) is None


def test_every_stored_tutorial_output_belongs_to_a_tutorial():
    names = {p.name for p in (ROOT / "tutorials").glob("*.ipynb")}
    stored = {p.name for p in tutorial_pages.STORED.glob("*.ipynb")}
    assert stored <= names, f"stored outputs of removed tutorials: {sorted(stored - names)}"
