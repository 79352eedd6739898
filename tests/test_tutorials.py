"""Every notebook in tutorials/ runs end to end in fast mode (PPL_VAE_FAST=1), shows its figures inline
(the library leaves matplotlib's backend alone), and is committed clean."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
EXECUTED = [
    "01-getting-started",
    "02-priors-and-likelihoods",
    "03-custom-model",
    "04-semi-supervised",
    "05-disentanglement",
    "06-can-i-trust-my-encoder",
    "07-applications",
    "08-sentences",
    "09-music",
]


def test_every_notebook_in_tutorials_is_executed_by_this_suite():
    assert [p.stem for p in NOTEBOOKS] == sorted(EXECUTED), "add new notebooks to EXECUTED (and the README)"


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        stale = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not stale, f"{path.name}: cells {stale} carry outputs; clear them before committing"


def test_readme_lists_every_tutorial():
    readme = (TUTORIALS.parent / "README.md").read_text()
    for name in EXECUTED:
        assert f"tutorials/{name}.ipynb" in readme


# a cell that draws: pyplot, or one of the library's figure functions (which return a Figure)
PLOTS = re.compile(r"plt\.(subplots|figure|imshow|plot|hist|show)\(|_figure\(|image_grid\(|plot_[a-z]+\(")


def image_outputs(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.outputs)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTED)
def test_tutorial_runs_in_fast_mode_and_shows_its_figures(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PPL_VAE_FAST", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend, as in Jupyter
    nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    plotting = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and PLOTS.search(c.source)]
    blank = [i for i in plotting if not image_outputs(nb.cells[i])]
    assert plotting and not blank, f"{name}: plotting cells {blank} show no image"
