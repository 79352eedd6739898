"""What the sequence kinds (``dmm``, ``rnn``) share: padded batches, per-time-step reports, the
per-note marginal baseline, piano-roll figures and MIDI files.

Sequence data arrive as ``(N, T_max, D)`` (or flattened to ``(N, T_max * D)``) with an element
mask whose ``[..., 0]`` is the time mask (``ppl_vae.data.sequences``). Log-likelihoods are reported
per time step as in the JSB literature: the sum over test sequences of log p(x) divided by the
total number of observed steps (nats per step), not bits/dim.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ppl_vae.data.base import ArrayDataset
from ppl_vae.data.spec import DataSpec
from ppl_vae.registry import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def sequence_dims(spec: DataSpec) -> Tuple[int, int]:
    """(T_max, D) of sequence data; a one-line error for data that are not sequences."""
    if not spec.meta.get("sequence"):
        raise ConfigError(f"sequence models need sequence data (data.name = 'chorales' or 'sequences'), not '{spec.source}'")
    d = int(spec.meta["features"])
    return math.prod(spec.shape) // d, d


def settings(table: Dict[str, Any], what: str, defaults: Dict[str, int]) -> Dict[str, int]:
    """The integer settings of a recipe table (``model.encoder``, ...) with defaults; unknown keys are a one-line error."""
    unknown = sorted(set(table) - set(defaults) - {"name"})
    if unknown:
        raise ConfigError(f"{what} has no setting '{unknown[0]}' for this model kind; it accepts: {', '.join(defaults)}")
    return {k: int(table.get(k, v)) for k, v in defaults.items()}


def as_steps(x: torch.Tensor, mask: Optional[torch.Tensor], features: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x shaped (B, T, D) with padding set to 0, time mask (B, T) bool) from a batch."""
    x = x.reshape(x.shape[0], -1, features)
    if mask is None:
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    m = mask.reshape(x.shape)
    return torch.where(m, x, torch.zeros_like(x)), m[..., 0]


def trim(x: torch.Tensor, m: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x, m) cut to the batch's longest sequence: the steps after it are padding in every sequence
    (one host sync per batch; saves the sequential models most of their steps on random batches)."""
    t = int(m.sum(1).max()) if m.numel() else 0
    return x[:, : max(t, 1)], m[:, : max(t, 1)]


def reverse_within_length(h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``h`` (B, T, ...) with each sequence's observed prefix reversed in time and its padding left
    in place; its own inverse. Lengths are ``m.sum(1)``: no host sync."""
    t = torch.arange(h.shape[1], device=h.device)
    n = m.sum(1, keepdim=True)
    idx = torch.where(t < n, n - 1 - t, t)
    return h.gather(1, idx.reshape(*idx.shape, *([1] * (h.dim() - 2))).expand_as(h))


def lengths(data: ArrayDataset, features: int) -> torch.Tensor:
    """Observed steps per sequence."""
    return as_steps(data.x, data.mask, features)[1].sum(1)


def per_step_report(log_px: torch.Tensor, elbo: Optional[torch.Tensor], steps: torch.Tensor, num_samples: int) -> Dict[str, Any]:
    """Test figures per time step (sum over sequences / total steps) and per sequence (mean, s.e.)."""
    total = float(steps.sum())
    se = lambda t: float(t.std(unbiased=True) / math.sqrt(len(t))) if len(t) > 1 else float("nan")  # noqa: E731
    out: Dict[str, Any] = {
        "n": len(log_px),
        "steps": int(total),
        "iwae_samples": num_samples,
        "nll_per_step": -float(log_px.sum()) / total,
        "log_px": float(log_px.mean()),
        "log_px_se": se(log_px),
    }
    if elbo is not None:
        out.update(
            elbo_per_step=float(elbo.sum()) / total, elbo=float(elbo.mean()), elbo_se=se(elbo), gap=float((log_px - elbo).mean())
        )
    return out


def marginal_baseline(train: ArrayDataset, test: ArrayDataset, features: int) -> Dict[str, Any]:
    """Each feature an independent Bernoulli at every step, p_k = (on-steps of k + 1) / (steps + 2)
    counted on train (add-one smoothing: a key never heard in training keeps a finite loss); its
    test negative log-likelihood per step. Only for binary data (an empty dict otherwise)."""
    x_tr, m_tr = as_steps(train.x, train.mask, features)
    x_te, m_te = as_steps(test.x, test.mask, features)
    on = x_tr[m_tr]
    if not bool(((on == 0) | (on == 1)).all()):
        return {}
    p = (on.sum(0).double() + 1) / (len(on) + 2)
    obs = x_te[m_te].double()
    nll = -(obs * p.log() + (1 - obs) * (-p).log1p()).sum()
    return {"marginal_nll_per_step": float(nll) / len(obs)}


# ---- figures and MIDI --------------------------------------------------------------------------


def piano_roll_figure(rolls: Sequence[torch.Tensor], titles: Sequence[str], title: str, lowest_midi: int = 21) -> Figure:
    """One panel per (T, D) roll, time along x and key (or feature) up y; values in [0, 1]."""
    import matplotlib.pyplot as plt

    rows = len(rolls)
    fig = plt.figure(figsize=(10, 1.8 * rows + 0.6))
    for i, (roll, name) in enumerate(zip(rolls, titles)):
        ax = fig.add_subplot(rows, 1, i + 1)
        r = roll.detach().float().cpu().numpy()
        ax.imshow(r.T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel("key" if lowest_midi else "feature")
        ax.set_title(name, fontsize=9)
        used = np.flatnonzero(r.max(0) > 0.05)
        if len(used):
            ax.set_ylim(max(used.min() - 3, 0) - 0.5, min(used.max() + 3, r.shape[1] - 1) + 0.5)
    fig.axes[-1].set_xlabel("time step")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def latent_trajectory_figure(roll: torch.Tensor, z: torch.Tensor, title: str) -> Figure:
    """A chorale's roll above its latent path: the posterior draw of every z dimension over time."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 5))
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    r = roll.detach().float().cpu().numpy()
    top.imshow(r.T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    top.set_ylabel("key")
    zz = z.detach().cpu().numpy()
    lim = float(np.abs(zz).max()) or 1.0
    bottom.imshow(zz.T, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    bottom.set_ylabel("z dimension")
    bottom.set_xlabel("time step")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_midi(roll: np.ndarray, path: Path, lowest_midi: int = 21, bpm: float = 90.0) -> Path:
    """A binary (T, 88) roll as a MIDI file, one quarter note per step; held keys are one note.
    Written with music21 to a temporary file, then renamed (never half-written)."""
    try:
        from music21 import meter, note, stream, tempo
    except ImportError:
        raise ConfigError("writing MIDI needs music21: pip install music21 (or pip install 'ppl-vae[music]')") from None
    roll = np.asarray(roll) > 0.5
    part = stream.Part()
    part.insert(0, tempo.MetronomeMark(number=bpm))
    part.insert(0, meter.TimeSignature("4/4"))
    for key in range(roll.shape[1]):
        on = np.flatnonzero(np.diff(np.concatenate([[0], roll[:, key].astype(np.int8), [0]])))
        for start, end in zip(on[::2], on[1::2]):
            n = note.Note(lowest_midi + key, quarterLength=float(end - start))
            part.insert(float(start), n)
    if not len(part.notes):
        part.insert(0, note.Rest(quarterLength=float(max(len(roll), 1))))
    part = part.sorted()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mid", dir=path.parent)
    os.close(fd)
    try:
        part.write("midi", fp=tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_midi(path: Path, steps: Optional[int] = None, lowest_midi: int = 21, keys: int = 88) -> np.ndarray:
    """A MIDI file back as a (T, keys) roll at quarter-note steps (the inverse of ``write_midi``)."""
    from music21 import converter

    notes = []
    for n in converter.parse(str(path)).flatten().notes:
        for p in n.pitches:
            notes.append((float(n.offset), float(n.offset) + float(n.duration.quarterLength), int(p.midi)))
    t = steps if steps is not None else int(math.ceil(max((e for _, e, _ in notes), default=0.0) - 1e-9))
    roll = np.zeros((t, keys), np.uint8)
    for start, end, midi in notes:
        if 0 <= midi - lowest_midi < keys:
            roll[int(math.ceil(start - 1e-9)) : int(math.ceil(end - 1e-9)), midi - lowest_midi] = 1
    return roll
