"""Complete, safe checkpoints: tensors (state_dicts) plus plain data, written to a temporary file and
renamed (a crash leaves the previous checkpoint intact), read with ``torch.load(weights_only=True)``
so a crafted file cannot run code.

A checkpoint holds everything a resumed run needs to continue as the uninterrupted run would have:
``format``; the model's ``state_dict``; the optimizer's and the objective's state (FactorVAE's
discriminator and its optimizer, M2's labelled-batch cursor); the random states of torch (and CUDA),
numpy, Python and so Pyro; the epoch and step reached and the history; the resolved config and the
data specification (``ppl_vae.data.spec.DataSpec``) as plain dicts; and the library versions.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import platform
import random
import signal
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union, cast

import numpy as np
import torch

from ppl_vae.registry import ConfigError

FORMAT = "ppl-vae/2"
READABLE = ("ppl-vae/1", FORMAT)  # version 1 lacks the objective, random states and data specification


class CheckpointError(ConfigError):
    """A checkpoint that is missing, corrupted, or not a ppl-vae checkpoint."""


def atomic_write(path: Union[str, Path], write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (main thread only), so that the files written
    together in it (a checkpoint and the history beside it) are never left out of step by Ctrl-C;
    a signal that arrives meanwhile is delivered when the block ends."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def rng_state() -> Dict[str, Any]:
    """The random states of torch (and every CUDA device), numpy and Python, as tensors and plain data
    (Pyro draws from torch's generator and seeds all three: ``pyro.set_rng_seed``)."""
    # legacy=True (the default) gives the tuple form for the global MT19937 generator; numpy's stubs also allow a dict
    kind, keys, pos, has_gauss, cached = cast(Tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore ``rng_state()``'s output."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def versions() -> Dict[str, str]:
    """The versions that produced a checkpoint (numbers can change between them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__)}
    for package in ("pyro-ppl", "ppl-vae", "scikit-learn"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def save_checkpoint(
    path: Union[str, Path], model: torch.nn.Module, config: dict, state: Optional[Any] = None, data_spec: Optional[dict] = None
) -> None:
    """Write a complete checkpoint of ``model`` and the training ``state`` (a ``TrainState``) atomically."""
    payload = {
        "format": FORMAT,
        "config": config,
        "data_spec": data_spec or {},
        "model": model.state_dict(),
        "epoch": 0 if state is None else state.epoch,
        "step": 0 if state is None else state.step,
        "optimizer": None if state is None else state.optimizer,
        "objective": {} if state is None else (state.objective or {}),
        "history": [] if state is None else state.history,
        "scheduler": None if state is None else getattr(state, "scheduler", None),
        "rng": rng_state(),
        "versions": versions(),
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Union[str, Path], map_location: str = "cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' not found")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error below says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only loader met something that is not plain data
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        after = [lines[i + 1] for i, ln in enumerate(lines[:-1]) if ln.startswith("Please file an issue")]
        reason = (after[0] if after else lines[0] if lines else "not plain data")[:120]
        raise CheckpointError(
            f"refused to load '{path}': it is corrupted or not a plain ppl-vae checkpoint "
            f"(the safe loader rejected it: {reason.removeprefix('WeightsUnpickler error: ')})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"'{path}' is corrupted or not a ppl-vae checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") not in READABLE:
        raise CheckpointError(f"'{path}' is not a ppl-vae checkpoint (expected format '{FORMAT}')")
    return payload
