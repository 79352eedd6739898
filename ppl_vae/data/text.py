"""The ``text`` data source: sentences (or any short items) from UTF-8 files as padded token ids.

* Items: one per line, or separated by lines holding only ``%`` (the ``fortune`` format; chosen
  automatically when the file has such a line). ``data.path`` is a file or a directory (every plain
  file in it, sorted; ``fortune``'s ``.dat`` index files and ``.u8`` links skipped). With no path, the
  corpus is Debian's ``fortunes`` package: every file of ``/usr/share/games/fortunes/``.
* Tokens: ``tokenize`` (lower-cased words, with inner apostrophes, and single punctuation marks);
  ``detokenize`` joins them back for display.
* Vocabulary: ``<pad> <unk> <bos> <eos>`` (ids 0..3), then the ``vocab_size`` most frequent words of
  the train+validation items (ties broken alphabetically); the test items never choose words.
* Items with more than ``max_tokens`` words are dropped (``truncate=True``: cut), and the count is
  logged and kept in the metadata; items with no token are skipped.
* Split: a fixed permutation (seed 0) holds out ``test_fraction`` of the items as the test set;
  ``load_data`` then splits validation items off the rest with ``data.seed``.
* A datum is ``max_tokens + 1`` ids: the words, ``<eos>``, then ``<pad>`` (stored as floats like
  every ``ArrayDataset``). The padding is the mask: a model reads it from the ids. The vocabulary
  and the settings go into ``DataSpec.meta`` and so into every checkpoint, so that ``sample`` and
  ``evaluate`` decode the ids the model was trained on.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ppl_vae.data.sources import Raw
from ppl_vae.registry import DATASETS, ConfigError
from ppl_vae.schema import PositiveInt, UnitInterval

FORTUNES_DIR = "/usr/share/games/fortunes"
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = range(4)
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:)\]}%'\u2019])")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")
_OVERSTRIKE = re.compile(r"[^\n]\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
log = logging.getLogger(__name__)


def tokenize(text: str, lowercase: bool = True) -> List[str]:
    """Words (letters and digits, with inner apostrophes) and single punctuation marks; terminal
    overstrikes (``_\\bX``, bold and underline in the fortune files) and other control characters are removed."""
    text = _CONTROL.sub("", _OVERSTRIKE.sub("", text))
    return _TOKEN.findall(text.lower() if lowercase else text)


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens joined for reading: no space before closing punctuation or after opening brackets."""
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", " ".join(tokens)))


def build_vocab(items: Sequence[Sequence[str]], size: int) -> List[str]:
    """The special tokens, then the ``size`` most frequent words (ties alphabetically)."""
    counts = Counter(w for item in items for w in item)
    words = sorted(counts, key=lambda w: (-counts[w], w))[:size]
    return list(SPECIALS) + words


def encode(items: Sequence[Sequence[str]], vocab: Sequence[str], length: int) -> np.ndarray:
    """Items as (n, length) ids: words (``<unk>`` if not in ``vocab``), ``<eos>``, ``<pad>``..."""
    index = {w: i for i, w in enumerate(vocab)}
    out = np.full((len(items), length), PAD, np.float32)
    for row, item in zip(out, items):
        ids = [index.get(w, UNK) for w in item][: length - 1] + [EOS]
        row[: len(ids)] = ids
    return out


def decode(ids: Sequence[int], vocab: Sequence[str]) -> str:
    """One row of ids as text, up to its first ``<eos>`` (specials other than ``<unk>`` left out)."""
    words = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i in (PAD, BOS):
            continue
        words.append(vocab[i] if 0 <= i < len(vocab) else SPECIALS[UNK])
    return detokenize(words)


def text_files(path: str) -> List[Path]:
    """The files a ``data.path`` names (the fortunes corpus when empty); a one-line error if none."""
    if not path:
        d = Path(FORTUNES_DIR)
        if not d.is_dir():
            raise ConfigError(
                f"the default text corpus, Debian's fortunes, is not installed ({FORTUNES_DIR} not found): install it with "
                "'apt-get install -y fortunes' or set data.path to a UTF-8 text file"
            )
        path = FORTUNES_DIR
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.is_symlink() and f.suffix not in (".dat", ".u8"))
        if not files:
            raise ConfigError(f"text directory '{path}' holds no text files")
        return files
    if not p.is_file():
        raise ConfigError(f"text file '{path}' not found; set data.path to a UTF-8 text file or a directory of them")
    return [p]


def read_items(files: Sequence[Path], separator: str = "auto") -> List[str]:
    """The items of ``files``: split on lines holding only ``%`` (``separator='%'``), one per line
    (``'line'``), or ``'auto'``: ``%`` when the file has such a line. Empty items are skipped."""
    if separator not in ("auto", "%", "line"):
        raise ConfigError(f"data.options.separator must be 'auto', '%' or 'line', got '{separator}'")
    items: List[str] = []
    for f in files:
        raw = f.read_bytes()
        if not raw.strip():
            raise ConfigError(f"text file '{f}' is empty; it needs at least one item (one per line, or separated by '%' lines)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"text file '{f}' is not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                "convert it first, e.g. 'iconv -f latin1 -t utf-8'"
            ) from None
        percent = re.compile(r"^%[ \t\r]*$", re.M)
        split = separator == "%" or (separator == "auto" and percent.search(text) is not None)
        parts = percent.split(text) if split else text.splitlines()
        items += [p.strip() for p in parts if p.strip()]
    return items


def split_items(n: int, test_fraction: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(rest, test) indices: a fixed permutation with ``seed``; at least one item on each side."""
    perm = np.random.default_rng(seed).permutation(n)
    k = min(max(int(round(n * test_fraction)), 1), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])


@DATASETS.register("text")
def load_text_raw(
    path: str = "",
    columns: Optional[Sequence[str]] = None,
    limit: int = 0,
    vocab_size: PositiveInt = 4000,
    max_tokens: PositiveInt = 50,
    truncate: bool = False,
    lowercase: bool = True,
    separator: str = "auto",
    test_fraction: UnitInterval = 0.1,
) -> Raw:
    """Items of UTF-8 text as padded ids; ``data.options`` sets the keyword arguments (see the module doc)."""
    files = text_files(path)
    texts = read_items(files, separator)
    tokens = [tokenize(t, lowercase) for t in texts]
    tokens = [t for t in tokens if t]
    long = sum(len(t) > max_tokens for t in tokens)
    kept = [t[:max_tokens] for t in tokens] if truncate else [t for t in tokens if len(t) <= max_tokens]
    if long:
        log.warning(
            "text: %d of %d items have more than %d tokens and were %s",
            long,
            len(tokens),
            max_tokens,
            "cut" if truncate else "dropped",
        )
    if len(kept) < 2:
        raise ConfigError(
            f"the text in '{path or FORTUNES_DIR}' has {len(kept)} item(s) of at most {max_tokens} tokens; "
            "at least 2 are needed (raise data.options.max_tokens or set data.options.truncate = true)"
        )
    rest, test = split_items(len(kept), test_fraction)
    vocab = build_vocab([kept[i] for i in rest], vocab_size)
    train_x, test_x = (encode([kept[i] for i in idx], vocab, max_tokens + 1) for idx in (rest, test))
    words = train_x[(train_x != PAD) & (train_x != EOS)]
    meta = {
        "text": True,
        "vocab": vocab,
        "max_tokens": int(max_tokens),
        "lowercase": bool(lowercase),
        "files": [str(f) for f in files],
        "items_read": len(texts),
        "items_kept": len(kept),
        "items_too_long": int(long),
        "long_items": "cut" if truncate else "dropped",
        "unk_rate": round(float((words == UNK).mean()) if words.size else 0.0, 4),
    }
    return Raw(train_x, None, test_x, None, None, meta)
