"""Classification accuracy of any ``classify(x, mask) -> logits`` function on labelled data."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.registry import ConfigError


@torch.no_grad()
def accuracy(
    classify: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
    data: Union[ArrayDataset, torch.Tensor],
    batch_size: int = 1000,
) -> float:
    """Fraction of ``data`` whose argmax of ``classify(x, mask)`` equals its label."""
    data = as_dataset(data)
    if data.y is None:
        raise ConfigError("accuracy needs labelled data")
    correct = torch.zeros((), device=data.x.device)
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        logits = classify(data.x[sl], None if data.mask is None else data.mask[sl])
        correct += (logits.argmax(-1) == data.y[sl]).sum()
    return float(correct) / len(data)
