"""``DataSpec``: what a model was trained on, stored in every checkpoint.

Enough to rebuild the model and to read new data the same way without loading the training data:
the source and its settings, the datum shape the model sees, and the source's metadata (image
shape, class count and names, table columns and categories, quantization bin width,
standardization statistics, and later vocabularies). Plain data only, so a checkpoint holding it
still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple


def _plain(value: Any) -> Any:
    """Tuples to lists and numpy scalars / arrays to Python values, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


@dataclass
class DataSpec:
    source: str
    path: str = ""
    preprocess: str = "none"
    shape: Tuple[int, ...] = ()
    meta: Dict[str, Any] = field(default_factory=dict)
    sizes: Dict[str, int] = field(default_factory=dict)  # data per split: train, val, test (and labelled)

    @property
    def image_shape(self) -> Optional[Tuple[int, ...]]:
        """(channels, height, width) when the data are images, else None."""
        shape = self.meta.get("image_shape")
        return None if shape is None or self.meta.get("tabular") else tuple(shape)

    @property
    def n_classes(self) -> int:
        return int(self.meta.get("n_classes") or 0)

    @property
    def class_names(self) -> list:
        return list(self.meta.get("class_names") or [str(c) for c in range(self.n_classes)])

    @property
    def bin_width(self) -> float:
        return float(self.meta.get("bin_width", 1 / 255))

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> "DataSpec":
        raw = dict(raw)
        raw["shape"] = tuple(raw.get("shape", ()))
        return cls(**raw)
