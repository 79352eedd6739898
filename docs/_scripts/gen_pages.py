"""The generated pages of the site (run by the mkdocs-gen-files plugin at build time).

* ``index.md``: the README, its relative links pointed at the site's pages;
* ``tutorials/``: every notebook with the outputs of a fast-mode run (``tutorial_pages.py``) and an index page;
* ``cli.md``: the command-line reference from the argparse parser (``cli_reference.py``);
* ``reference/``: one API page per module of ``ppl_vae`` and its navigation (``api_reference.py``);
* ``registries.md``: every registered name (priors, likelihoods, ..., model kinds) (``registries.py``);
* ``benchmarks/RESULTS.md``: the latest benchmark table, which the README links to.

Nothing here lists modules, commands or notebooks by hand: new ones appear on the next build.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import mkdocs_gen_files

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import api_reference  # noqa: E402
import cli_reference  # noqa: E402
import registries  # noqa: E402
import tutorial_pages  # noqa: E402
from readme_pages import relink, sections  # noqa: E402

log = logging.getLogger("mkdocs.plugins.ppl_vae_docs")


def main() -> None:
    readme = (REPO / "README.md").read_text()
    parts = sections(readme)

    # tutorials
    executed = tutorial_pages.rendered(os.environ.get("PPL_VAE_DOCS_NOTEBOOKS", "execute"), log=log.info)
    generated = {f"tutorials/{name}" for name in executed} | {"benchmarks/RESULTS.md"}
    for name, text in executed.items():
        with mkdocs_gen_files.open(f"tutorials/{name}", "w") as f:
            f.write(text)
        mkdocs_gen_files.set_edit_path(f"tutorials/{name}", f"../tutorials/{name}")
    listing = parts.get("Tutorials", "## Tutorials\n").replace("## Tutorials", "# Tutorials", 1)
    with mkdocs_gen_files.open("tutorials/index.md", "w") as f:
        f.write(relink(listing, generated, base="tutorials/"))
        f.write(
            "\nOn this site each notebook is shown with the outputs of a run in fast mode (`PPL_VAE_FAST=1`: small data, "
            "few epochs), so its numbers and figures are rougher than those of a full run.\n"
        )

    # the README as the home page, the benchmark table it links to
    with mkdocs_gen_files.open("index.md", "w") as f:
        f.write(relink(readme, generated))
    mkdocs_gen_files.set_edit_path("index.md", "../README.md")
    results = REPO / "benchmarks" / "RESULTS.md"
    with mkdocs_gen_files.open("benchmarks/RESULTS.md", "w") as f:
        f.write(relink(results.read_text(), set()) if results.is_file() else "# Benchmarks\n\nNo results recorded yet.\n")

    # the command line, from the parser
    from ppl_vae.cli import _parser

    with mkdocs_gen_files.open("cli.md", "w") as f:
        f.write(cli_reference.render(_parser()))

    # the API, one page per module
    entries = api_reference.pages(REPO / "ppl_vae")
    for page, parts_, text in entries:
        with mkdocs_gen_files.open(f"reference/{page}", "w") as f:
            f.write(text)
        source = "/".join(parts_) + ("/__init__.py" if page.endswith("index.md") else ".py")
        mkdocs_gen_files.set_edit_path(f"reference/{page}", f"../{source}")
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as f:
        f.write(api_reference.summary(entries))
    with mkdocs_gen_files.open("registries.md", "w") as f:
        f.write(registries.render({".".join(parts_) for _, parts_, _ in entries}))


main()
