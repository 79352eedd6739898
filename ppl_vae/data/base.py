"""The in-memory dataset every loader returns, and how batches are drawn from it.

``ArrayDataset`` holds ``x`` (N, *shape) as float, optional integer labels ``y`` and an optional
boolean ``mask`` of observed entries. With ``binarize=True`` every batch is a fresh Bernoulli draw
of the grey levels (dynamic binarization). Batches are drawn on the data's own device with a
seeded generator: no host round trip per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence, Tuple, Union, cast

import numpy as np
import torch

from ppl_vae.registry import ConfigError


def load_numpy(path: str, what: str, hint: str = "", empty_hint: str = "", as_what: str = "a numpy file") -> Any:
    """``numpy.load(path)`` without pickles (an array, or an ``NpzFile``), with one-line errors naming
    ``what`` the file is for: missing (then ``hint``), empty (then ``empty_hint``), unreadable."""
    p = Path(path)
    if not path or not p.is_file():
        raise ConfigError(f"{what} '{path}' not found" + (f"; {hint}" if hint else ""))
    if p.stat().st_size == 0:
        raise ConfigError(f"{what} '{path}' is empty (0 bytes)" + (f"; {empty_hint}" if empty_hint else ""))
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"cannot read '{path}' as {as_what}: {err}") from None


class ScoresData(Protocol):
    """What ``check_for`` asks of a likelihood (data know no models, only this contract)."""

    data_shape: Tuple[int, ...]

    def check_support(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None: ...


@dataclass
class ArrayDataset:
    x: torch.Tensor
    y: Optional[torch.Tensor] = None
    mask: Optional[torch.Tensor] = None
    binarize: bool = False
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not torch.is_tensor(self.x):
            self.x = torch.as_tensor(self.x)
        self.x = self.x.to(torch.get_default_dtype())
        if self.x.dim() < 2 or len(self.x) == 0:
            raise ConfigError(f"data must be shaped (n_data, *datum_shape) with n_data > 0, got {tuple(self.x.shape)}")
        if self.y is not None:
            self.y = torch.as_tensor(self.y).long()
            if self.y.shape != (len(self.x),):
                raise ConfigError(f"labels must be shaped ({len(self.x)},), got {tuple(self.y.shape)}")
        if self.mask is not None:
            self.mask = torch.as_tensor(self.mask).bool()
            if self.mask.shape != self.x.shape:
                raise ConfigError(f"the mask must have the data's shape {tuple(self.x.shape)}, got {tuple(self.mask.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    def to(self, device: Union[str, torch.device]) -> "ArrayDataset":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, x=cast(torch.Tensor, move(self.x)), y=move(self.y), mask=move(self.mask))

    def subset(self, idx: Union[torch.Tensor, slice, Sequence[int]]) -> "ArrayDataset":
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return replace(self, x=self.x[idx], y=pick(self.y), mask=pick(self.mask))

    def fixed_binarized(self, seed: int = 0) -> "ArrayDataset":
        """One Bernoulli draw of the grey levels, fixed (for validation and test sets)."""
        g = torch.Generator(device=self.x.device).manual_seed(seed)
        return replace(self, x=torch.bernoulli(self.x, generator=g), binarize=False)

    def check_for(self, likelihood: ScoresData) -> None:
        """Raise a one-line error when the data cannot be scored by ``likelihood``."""
        if self.shape != tuple(likelihood.data_shape):
            raise ConfigError(f"the data's datum shape is {self.shape} but the model was built for {tuple(likelihood.data_shape)}")
        if self.binarize:
            if not bool(((self.x >= 0) & (self.x <= 1)).all()):
                raise ConfigError("dynamic binarization needs values in [0, 1]: scale the data first")
        else:
            likelihood.check_support(self.x, self.mask)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        generator: Optional[torch.Generator] = None,
        labels: bool = False,
        shard: Optional[Tuple[int, int]] = None,
    ) -> Iterator[tuple]:
        """(x, mask) batches, or (x, mask, y) with ``labels=True``; indices drawn on the data's device.
        ``shard=(rank, world_size)`` gives this process its contiguous block of every batch
        (distributed training); a last batch too small to give every rank a datum is skipped."""
        if labels and self.y is None:
            raise ConfigError("this model trains on labelled data, but the data have no labels")
        n = len(self.x)
        order = torch.randperm(n, device=self.x.device, generator=generator) if shuffle else None
        idx: Union[slice, torch.Tensor]
        for start in range(0, n, batch_size):
            if order is None:
                idx = slice(start, start + batch_size)
            else:
                idx = order[start : start + batch_size]
            if shard is not None:
                rank, world = shard
                if min(batch_size, n - start) < world:
                    continue
                if isinstance(idx, slice):
                    idx = torch.arange(start, min(start + batch_size, n), device=self.x.device)
                idx = torch.tensor_split(idx, world)[rank]
            xb, mb = self.x[idx], None if self.mask is None else self.mask[idx]
            if self.binarize:
                xb = torch.bernoulli(xb, generator=generator)
            yield (xb, mb, cast(torch.Tensor, self.y)[idx]) if labels else (xb, mb)  # labels: y checked above


def as_dataset(data: Union[ArrayDataset, torch.Tensor]) -> ArrayDataset:
    if isinstance(data, ArrayDataset):
        return data
    if torch.is_tensor(data):
        return ArrayDataset(data)
    raise ConfigError(f"expected an ArrayDataset or a tensor, got {type(data).__name__}")
