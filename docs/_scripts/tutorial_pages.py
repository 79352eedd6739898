"""The tutorial pages: each notebook in ``tutorials/`` shown with the outputs of a fast-mode run.

The notebooks are committed without outputs (``tests/test_tutorials.py``). Their outputs for the
site are stored in ``docs/_tutorial_outputs/`` (executed with ``PPL_VAE_FAST=1``: small data, few
epochs, the mode the test suite runs), written by::

    python docs/_scripts/tutorial_pages.py            # refresh all of them (a few minutes)
    python docs/_scripts/tutorial_pages.py 05-disentanglement

At build time each tutorial's current cells are shown; the outputs are taken from the stored run
when every code cell is unchanged since that run, so a changed markdown cell needs no refresh. A
notebook whose code changed is executed in fast mode during the build instead (cached under
``.cache/docs-notebooks/``, keyed by the notebook and the package source), so the site never shows
outputs of code other than what it shows. ``PPL_VAE_DOCS_NOTEBOOKS=skip`` renders stale notebooks
without outputs (quick local previews only).
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

FAST_ENV = {"PPL_VAE_FAST": "1"}
WORKERS = 2
REPO = Path(__file__).resolve().parent.parent.parent
STORED = REPO / "docs" / "_tutorial_outputs"


def _code(nb: Any) -> List[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def merge(current: Any, executed: Any) -> Optional[Any]:
    """``current`` with the outputs of ``executed`` when their code cells are identical, else None."""
    if _code(current) != _code(executed):
        return None
    out = copy.deepcopy(current)
    runs = iter(c for c in executed.cells if c.cell_type == "code")
    for cell in out.cells:
        if cell.cell_type == "code":
            run = next(runs)
            cell.outputs, cell.execution_count = run.outputs, run.execution_count
    return out


def execute(notebook: Path, timeout: int = 1800) -> Any:
    """Run ``notebook`` in fast mode in a scratch folder and return it with its outputs; raises on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel's inline backend, as in Jupyter
    with tempfile.TemporaryDirectory(prefix="ppl-vae-docs-") as scratch:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}})
        client.execute(env={**env, **FAST_ENV})  # for the kernel's process only
    for cell in nb.cells:  # keep the stored copies free of timing noise
        cell.get("metadata", {}).pop("execution", None)
    return nb


def _write(path: Path, nb: Any) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(path)


def _run_all(jobs: Dict[Path, Path]) -> None:
    """Execute each notebook (key) and write it to its path (value), two kernels at a time."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(lambda item: _write(item[1], execute(item[0])), jobs.items()))  # re-raises a failure


def source_hash(notebook: Path) -> str:
    """A hash of the notebook and of everything it may run: the package's source and the recipes."""
    h = hashlib.sha256(notebook.read_bytes())
    for path in sorted([*REPO.joinpath("ppl_vae").rglob("*.py"), *REPO.joinpath("models").glob("*.toml")]):
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


def rendered(mode: str = "execute", log: Any = print) -> Dict[str, str]:
    """``{file name: notebook JSON with outputs}`` for every tutorial (see the module docstring)."""
    import nbformat

    if mode not in ("execute", "skip"):
        raise ValueError(f"PPL_VAE_DOCS_NOTEBOOKS must be 'execute' or 'skip', got '{mode}'")
    out: Dict[str, Any] = {}
    stale: Dict[Path, Path] = {}
    cache = REPO / ".cache" / "docs-notebooks"
    for path in sorted(REPO.joinpath("tutorials").glob("*.ipynb")):
        current = nbformat.read(path, as_version=4)
        stored = STORED / path.name
        merged = merge(current, nbformat.read(stored, as_version=4)) if stored.is_file() else None
        why = "code changed since its stored outputs" if stored.is_file() else "no stored outputs"
        if merged is not None:
            out[path.name] = merged
        elif mode == "skip":
            log(f"tutorial {path.name}: {why}; shown without outputs")
            out[path.name] = current
        else:
            log(
                f"tutorial {path.name}: {why}; executing it in fast mode "
                f"(store them with: python docs/_scripts/tutorial_pages.py {path.stem})"
            )
            stale[path] = cache / f"{path.stem}-{source_hash(path)}.ipynb"
    _run_all({nb: key for nb, key in stale.items() if not key.is_file()})
    for nb, key in stale.items():
        out[nb.name] = nbformat.read(key, as_version=4)
    return {name: nbformat.writes(nb) for name, nb in sorted(out.items())}


def refresh(names: Sequence[str] = ()) -> None:
    """Execute the named tutorials (all when none) and store their outputs in ``docs/_tutorial_outputs``."""
    notebooks = sorted(REPO.joinpath("tutorials").glob("*.ipynb"))
    unknown = set(names) - {p.stem for p in notebooks}
    if unknown:
        raise SystemExit(f"no tutorial named {', '.join(sorted(unknown))}; tutorials: {', '.join(p.stem for p in notebooks)}")
    chosen = [p for p in notebooks if not names or p.stem in names]
    _run_all({p: STORED / p.name for p in chosen})
    for stale in set(STORED.glob("*.ipynb")) - {STORED / p.name for p in notebooks}:
        stale.unlink()  # a tutorial that was removed or renamed


if __name__ == "__main__":
    refresh(sys.argv[1:])
