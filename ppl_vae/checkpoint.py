"""Safe checkpoints: tensors (state_dicts) plus plain data, written atomically, read with
``torch.load(weights_only=True)`` so a crafted file cannot run code.

A checkpoint holds ``format``, the model's ``state_dict``, the optimizer's state, the epoch/step
reached, the history, and the config as a plain dict (also written beside it as ``config.toml``).
"""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch

from .registry import ConfigError

FORMAT = "ppl-vae/1"


class CheckpointError(ConfigError):
    """A checkpoint that is missing, corrupted, or not a ppl-vae checkpoint."""


def atomic_write(path, write) -> None:
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


def save_checkpoint(path, vae, config: dict, state=None) -> None:
    payload = {
        "format": FORMAT,
        "config": config,
        "model": vae.state_dict(),
        "epoch": 0 if state is None else state.epoch,
        "step": 0 if state is None else state.step,
        "optimizer": None if state is None else state.optimizer,
        "history": [] if state is None else state.history,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path, map_location="cpu") -> dict:
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
        raise CheckpointError(f"refused to load '{path}': it is corrupted or not a plain ppl-vae checkpoint "
                              f"(the safe loader rejected it: {reason.removeprefix('WeightsUnpickler error: ')})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"'{path}' is corrupted or not a ppl-vae checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not a ppl-vae checkpoint (expected format '{FORMAT}')")
    return payload
