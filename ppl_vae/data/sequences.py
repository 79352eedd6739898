"""Sequence data sources: lists of ``T_i x D`` arrays padded into one ``(N, T_max, D)`` array.

Padding is NaN; the source's metadata say ``padded = True``, so ``load_data`` turns it into the
dataset's boolean mask (observed steps True), and batches arrive as ``(x, mask)`` like any masked
data. A model reads the time mask as ``mask[..., 0]``. Metadata also hold ``features`` (D),
``max_length`` (T_max), ``binary`` and ``time_unit``.

* ``sequences``: a ``.npz`` file of 2-D arrays (``numpy.savez(path, *arrays)``: keys ``arr_0``,
  ``arr_1``, ... read in numeric order; any other keys in sorted order), binary or real.
* ``chorales``: Bach's chorales from ``music21``'s bundled corpus (``pip install music21``; nothing is
  downloaded) as 88-key piano rolls (MIDI 21..108) sampled at every quarter note: a key is on at
  step t when a note sounds at beat t. Each chorale is converted once and cached as ``.npz`` under
  ``$XDG_CACHE_HOME/ppl-vae/chorales-v1`` (default ``~/.cache``). The test split is a fixed seeded
  fifth of the chorales (by file, seed 0), the same whatever ``data.seed``: JSB Chorales' own split is
  not public here, so figures on this split are not comparable digit for digit with JSB's.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ppl_vae.data.sources import Raw
from ppl_vae.data.base import load_numpy
from ppl_vae.registry import DATASETS, ConfigError

LOWEST_KEY, N_KEYS = 21, 88  # piano keys A0..C8 as MIDI numbers 21..108
CHORALE_TEST_FRACTION, CHORALE_SPLIT_SEED = 0.2, 0
CACHE_VERSION = "chorales-v1"
MIN_STEPS = 8  # shorter scores (fragments) are left out


def pad_sequences(seqs: Sequence[np.ndarray], length: Optional[int] = None) -> np.ndarray:
    """(N, T_max, D) float32 with NaN after each sequence's end (``length`` defaults to the longest)."""
    if not seqs:
        raise ConfigError("no sequences to pad")
    dims = {s.shape[1] for s in seqs}
    if len(dims) != 1:
        raise ConfigError(f"sequences have different feature dimensions {sorted(dims)}; every T_i x D array needs the same D")
    t_max = length or max(len(s) for s in seqs)
    out = np.full((len(seqs), t_max, dims.pop()), np.nan, np.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s[:t_max]
    return out


def sequence_meta(x: np.ndarray, time_unit: str = "step") -> dict:
    observed = x[~np.isnan(x)]
    return {
        "padded": True,
        "sequence": True,
        "features": int(x.shape[2]),
        "max_length": int(x.shape[1]),
        "binary": bool(np.isin(observed, (0.0, 1.0)).all()),
        "time_unit": time_unit,
    }


def _key_order(key: str) -> Tuple[int, str]:
    m = re.fullmatch(r"arr_(\d+)", key)
    return (int(m.group(1)), "") if m else (1 << 62, key)


def read_sequence_file(path: str) -> List[np.ndarray]:
    """The 2-D arrays of a ``.npz`` file, in order; one-line errors for anything else."""
    loaded = load_numpy(
        path,
        "sequence file",
        "set data.path to a .npz file of T_i x D arrays (numpy.savez(path, *arrays))",
        "write it with numpy.savez(path, *arrays)",
        "a .npz file",
    )
    if isinstance(loaded, np.ndarray):
        raise ConfigError(f"'{path}' holds one array; the sequence source reads a .npz of T_i x D arrays (numpy.savez(path, *arrays))")
    keys = sorted(loaded.keys(), key=_key_order)
    if not keys:
        raise ConfigError(f"'{path}' holds no arrays")
    seqs = []
    for k in keys:
        a = loaded[k]
        if a.ndim != 2 or a.shape[0] == 0 or a.dtype.kind not in "biuf":
            raise ConfigError(
                f"'{path}': array '{k}' is {a.dtype} of shape {a.shape}; every array must be numeric T_i x D with T_i > 0"
            )
        if not np.isfinite(a).all():
            raise ConfigError(f"'{path}': array '{k}' holds NaN or infinite values")
        seqs.append(a.astype(np.float32))
    dims = sorted({s.shape[1] for s in seqs})
    if len(dims) > 1:
        first = next(k for k, s in zip(keys, seqs) if s.shape[1] != seqs[0].shape[1])
        raise ConfigError(f"'{path}': ragged feature dimensions {dims} ('{keys[0]}' has D = {seqs[0].shape[1]}, '{first}' another)")
    return seqs


@DATASETS.register("sequences")
def load_sequences_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    """Users' own sequences (piano rolls or any multivariate binary / real series); a fifth is held out."""
    x = pad_sequences(read_sequence_file(path))
    return Raw(x, None, None, None, None, sequence_meta(x))


# ---- Bach chorales ---------------------------------------------------------------------------


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ppl-vae" / CACHE_VERSION


def chorale_files() -> List[Path]:
    """The chorale scores of music21's corpus (MusicXML files of composer 'bach'), sorted by name."""
    try:
        from music21 import corpus
    except ImportError:
        raise ConfigError("the chorales data need music21: pip install music21 (or pip install 'ppl-vae[music]')") from None
    return sorted((p for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".xml")), key=lambda p: p.name)


_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def _musicxml_root(path: Path) -> ET.Element:
    """The score element of a MusicXML file (``.xml``) or compressed MusicXML (``.mxl``, a zip)."""
    try:
        if path.suffix == ".mxl":
            with zipfile.ZipFile(path) as z:
                rootfile = ET.fromstring(z.read("META-INF/container.xml")).find(".//rootfile")
                name = rootfile.get("full-path") if rootfile is not None else None
                return ET.fromstring(z.read(name or next(n for n in z.namelist() if not n.startswith("META-INF"))))
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError, zipfile.BadZipFile, KeyError, StopIteration) as err:
        raise ConfigError(f"cannot read MusicXML file '{path}': {err}") from None


def _notes(root: ET.Element) -> List[Tuple[float, float, int]]:
    """(onset, end, MIDI pitch) in quarter notes of every pitched note of a partwise score, at written
    pitch (rests, grace notes and cue notes have no sounding duration here)."""
    out = []
    for part in root.iter("part"):
        divisions, start = 1.0, 0.0
        for measure in part.iter("measure"):
            pos = longest = onset = 0.0
            for el in measure:
                if el.tag == "attributes" and el.findtext("divisions"):
                    divisions = float(el.findtext("divisions") or 1)
                elif el.tag in ("backup", "forward"):
                    pos += (-1 if el.tag == "backup" else 1) * float(el.findtext("duration") or 0) / divisions
                elif el.tag == "note" and el.find("grace") is None and el.find("cue") is None:
                    length = float(el.findtext("duration") or 0) / divisions
                    if el.find("chord") is None:
                        onset, pos = pos, pos + length
                    pitch = el.find("pitch")
                    if pitch is not None:
                        midi = 12 * (int(pitch.findtext("octave") or 4) + 1) + _STEPS[pitch.findtext("step") or "C"]
                        midi += int(round(float(pitch.findtext("alter") or 0)))
                        out.append((start + onset, start + onset + length, midi))
                longest = max(longest, pos)
            start += longest
    return out


def piano_roll(notes: Sequence[Tuple[float, float, int]]) -> np.ndarray:
    """(T, 88) uint8 roll at quarter-note steps: key k is on at step t when a note of MIDI pitch
    21 + k sounds at beat t (onset <= t < end); T = ceil(the last end)."""
    steps = int(math.ceil(max((end for _, end, _ in notes), default=0.0) - 1e-9))
    roll = np.zeros((steps, N_KEYS), np.uint8)
    for start, end, midi in notes:
        if 0 <= midi - LOWEST_KEY < N_KEYS:
            roll[int(math.ceil(start - 1e-9)) : int(math.ceil(end - 1e-9)), midi - LOWEST_KEY] = 1
    return roll


def convert_chorale(path: Path) -> np.ndarray:
    """A chorale's piano roll, read from its MusicXML directly (music21's parser gives the same roll,
    tests/test_dmm.py checks, at a tenth of the speed)."""
    return piano_roll(_notes(_musicxml_root(path)))


def chorale_rolls(files: Sequence[Path], directory: Optional[Path] = None) -> Dict[str, np.ndarray]:
    """{file name: roll} for ``files``, converted on first use and cached one ``.npz`` per chorale.
    A lock on the cache folder lets concurrent processes share the conversion."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for f in files:
            cached = directory / f"{f.stem}.npz"
            if not cached.is_file():
                roll = convert_chorale(f)
                tmp = cached.with_suffix(".tmp.npz")
                np.savez_compressed(tmp, roll=roll)
                os.replace(tmp, cached)
            with np.load(cached) as z:
                out[f.name] = z["roll"]
    return out


def chorale_split(names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(train, test) names: a fixed seeded fifth of the chorales is the test split."""
    order = np.random.default_rng(CHORALE_SPLIT_SEED).permutation(len(names))
    k = int(round(len(names) * CHORALE_TEST_FRACTION))
    return [names[i] for i in sorted(order[k:])], [names[i] for i in sorted(order[:k])]


@DATASETS.register("chorales")
def load_chorales_raw(path: str = "", columns: Optional[Sequence[str]] = None, limit: int = 0) -> Raw:
    """Bach chorales as piano rolls with the fixed split. ``limit`` > 0 (a tiny run) converts only
    the chorales such a run can use: about limit / 0.8 for training and a quarter of that for test."""
    files = {p.name: p for p in chorale_files()}
    if not files:
        raise ConfigError("music21's corpus holds no Bach chorales; reinstall music21 (pip install --force-reinstall music21)")
    train, test = chorale_split(sorted(files))
    if limit:
        train, test = train[: int(limit / 0.8) + 1], test[: max(16, int(limit / 4))]
    rolls = chorale_rolls([files[n] for n in train + test], Path(path) if path else None)
    train = [n for n in train if len(rolls[n]) >= MIN_STEPS]
    test = [n for n in test if len(rolls[n]) >= MIN_STEPS]
    length = max(len(rolls[n]) for n in train + test)
    x_train = pad_sequences([rolls[n] for n in train], length)
    x_test = pad_sequences([rolls[n] for n in test], length)
    meta = {
        **sequence_meta(x_train, "quarter note"),
        "lowest_midi": LOWEST_KEY,
        "split": "chorales: fixed seeded fifth by file (seed 0)",
    }
    return Raw(x_train, None, x_test, None, None, meta)
