"""One test template run over every recipe in ``models/`` (``recipe_names()``: a new recipe is covered
without editing this file), on tiny data (``recipe_worker.tiny_overrides``): EPOCHS epochs straight
versus HALF epochs, checkpoint, load in a fresh process, HALF more epochs. The parameters, the
optimizer's and the objective's state (FactorVAE's discriminator, M2's labelled-batch cursor), the
random states, the history and the final metrics must be equal, bitwise.

"N steps" are epochs here: ``fit`` reseeds every epoch from ``seed + epoch``, so a run resumes at
the epoch boundaries where it writes its checkpoints. Bitwise holds on the CPU with a fixed thread
count (the worker uses one thread in every process); the runs are pinned to the CPU
(``train.device=cpu``) so that a machine with a GPU checks the same claim (CUDA kernels with atomic
adds are not bitwise reproducible, and are not claimed to be).

The work is done by three subprocesses of ``tests/recipe_worker.py`` for all recipes together: the
straight runs and the first halves side by side, then the second halves in a fresh process.

Once, on the default recipe: ``kill -9`` in the middle of an epoch, then ``--resume``: the run restarts
from the last checkpoint and finishes with finite metrics and a continuous history.
"""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ppl_vae.data.sources import FASHION_MNIST_DIR
from ppl_vae.data.text import FORTUNES_DIR
from ppl_vae.runs import CHECKPOINT, DEFAULT_RECIPE, HISTORY, METRICS, load_config, recipe_names
from ppl_vae.training.checkpoint import load_checkpoint

from .recipe_worker import EPOCHS, HALF

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("recipe_worker.py")
RECIPES = recipe_names()
# data sources read from a default directory when data.path is unset
NEEDS_FILES = {"fashion-mnist": FASHION_MNIST_DIR, "text": FORTUNES_DIR}
NEEDS_MODULES = {"chorales": "music21"}  # data sources read from an optional package
TIMEOUT = 900


def missing_data(recipe: str):
    """Why the recipe's data are not on this machine, or None."""
    data = load_config(recipe).data
    directory = NEEDS_FILES.get(data.name)
    if directory and not data.path and not Path(directory).is_dir():
        package = {"text": "fortunes"}.get(data.name, "dataset-fashion-mnist")
        return f"{recipe}: {data.name} not found in {directory} (apt-get install -y {package})"
    module = NEEDS_MODULES.get(data.name)
    if module and importlib.util.find_spec(module) is None:
        return f"{recipe}: {data.name} needs the Python package {module} (pip install {module})"
    return None


def start_worker(mode: str, root: Path, recipes) -> subprocess.Popen:
    """A worker writing its output to ROOT/MODE.log (a file, not a pipe: a worker never blocks on full pipes)."""
    with open(root / f"{mode}.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(root), *recipes],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


def finish(proc: subprocess.Popen, root: Path, mode: str) -> str:
    """Wait for a worker; its exit status and the end of its output (each recipe's failure is also in its own file)."""
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return f"exit {proc.returncode}\n{(root / f'{mode}.log').read_text()[-4000:]}"


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory):
    """ROOT/RECIPE/{straight, resumed, half.pt} for every recipe whose data are here, and the workers' logs."""
    root = tmp_path_factory.mktemp("recipes")
    recipes = [r for r in RECIPES if missing_data(r) is None]
    straight = start_worker("straight", root, recipes)  # beside the first halves: one thread each, two cores
    logs = {}
    try:
        logs["first"] = finish(start_worker("first", root, recipes), root, "first")
    finally:
        logs["straight"] = finish(straight, root, "straight")
    logs["resume"] = finish(start_worker("resume", root, recipes), root, "resume")  # a fresh process: only the checkpoints carry over
    return root, logs


def differences(a, b, path=""):
    """The paths at which two checkpoint parts differ; tensors must be equal bitwise (same dtype and shape)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return [] if same else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path} (keys {sorted(map(str, set(a) ^ set(b)))})"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} != {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path} ({a!r} != {b!r})"]


def without_timings(records):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in records]


@pytest.mark.parametrize("recipe", RECIPES)
def test_half_save_load_half_equals_straight(recipe, recipe_runs):
    reason = missing_data(recipe)
    if reason:
        pytest.skip(reason)
    root, logs = recipe_runs
    for mode in ("straight", "first", "resume"):
        error = root / recipe / f"{mode}.error"
        assert not error.exists(), f"the {mode} run of {recipe} failed:\n{error.read_text()}"
    try:
        straight = load_checkpoint(root / recipe / "straight" / CHECKPOINT)
        half = load_checkpoint(root / recipe / "half.pt")
        resumed = load_checkpoint(root / recipe / "resumed" / CHECKPOINT)
    except Exception as err:
        raise AssertionError(f"{err}\n" + "\n".join(f"--- {mode} worker: {log}" for mode, log in logs.items())) from None
    # a real resume: the first half stopped at HALF; the second continued it (those epochs are not retrained)
    assert (half["epoch"], straight["epoch"], resumed["epoch"]) == (HALF, EPOCHS, EPOCHS)
    assert half["step"] >= 2 * HALF and straight["step"] == resumed["step"] == half["step"] * EPOCHS // HALF
    assert resumed["history"][:HALF] == half["history"]
    assert differences(half["model"], straight["model"], "model"), "training did not change the parameters"
    # N straight == N/2, save, load in a fresh process, N/2: bitwise
    for part in ("model", "optimizer", "objective", "rng"):
        assert not differences(straight[part], resumed[part], part), f"{recipe}: {part} differs after resuming"
    assert without_timings(straight["history"]) == without_timings(resumed["history"])
    metrics = [json.loads((root / recipe / run / METRICS).read_text()) for run in ("straight", "resumed")]
    assert without_timings([metrics[0]]) == without_timings([metrics[1]])


def test_every_recipe_file_is_covered():
    """The template runs over ``recipe_names()``; that must be every TOML file in models/."""
    assert RECIPES == sorted(p.stem for p in (REPO / "models").glob("*.toml"))
    assert len(RECIPES) > 1


def finite_numbers(obj):
    if isinstance(obj, dict):
        return all(finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(finite_numbers(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


def read_history(run: Path):
    try:
        return [json.loads(line) for line in (run / HISTORY).read_text().splitlines()]
    except (OSError, ValueError):  # not written yet
        return []


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_finishes_from_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "ppl_vae", "train"]
    quiet = ["--no-progress", "--no-figures"]
    tiny_eval = ["--set", "eval.iwae_samples=10", "--set", "eval.n_test=50"]
    cmd = [*cli, DEFAULT_RECIPE, "--out", str(run), "--set", "train.epochs=1000", *tiny_eval, *quiet]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not read_history(run) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        history = read_history(run)
        alive = proc.poll() is None
        # the history is written right after the checkpoint, when the next epoch starts: wait about half an epoch
        if history and alive:
            time.sleep(min(history[-1]["seconds"] / 2, 1.0))
    finally:
        proc.send_signal(signal.SIGKILL)
        output = proc.communicate()[0]
    assert history and alive, f"no epoch finished while the run was alive (exit {proc.returncode}):\n{output}"
    assert proc.returncode == -signal.SIGKILL, output  # killed, not finished
    done = load_checkpoint(run / CHECKPOINT)  # a kill leaves the last checkpoint whole (it is written atomically)
    reached = done["epoch"]
    assert 1 <= reached < 1000 and len(done["history"]) == reached

    epochs = reached + 2
    resumed = subprocess.run(
        [*cli, "--resume", str(run), "--set", f"train.epochs={epochs}", *quiet], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    metrics = json.loads((run / METRICS).read_text())
    assert metrics["epochs"] == epochs and finite_numbers(metrics)
    assert all(isinstance(metrics[k], float) for k in ("elbo", "log_px"))
    history = read_history(run)
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))  # continuous: no epoch lost or repeated
    assert history[:reached] == done["history"]  # restarted from the last checkpoint: its epochs were not retrained
    assert finite_numbers(history) and load_checkpoint(run / CHECKPOINT)["epoch"] == epochs
