"""Data-parallel training with PyTorch's own engine (DistributedDataParallel).

Launch with ``torchrun --nproc_per_node N -m ppl_vae train RECIPE --distributed`` (NCCL on GPUs,
gloo on CPUs). Every rank draws the same permutation of the data each epoch (same seed) and takes
its own contiguous block of every global batch, so the ranks never see the same indices and
together see exactly the batches of a single-process run with the same global batch size. The
module that DDP wraps returns the differentiable loss (never ``SVI.step`` on a DDP module: that
silently diverges across ranks); each rank's loss is multiplied by the world size, so the
averaged gradient is the gradient of the global batch's summed loss, as in one process.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from ppl_vae.registry import ConfigError


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(timeout_s: int = 600) -> torch.device:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...); returns this
    rank's device: ``cuda:LOCAL_RANK`` with NCCL when GPUs exist, else the CPU with gloo."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "--distributed expects to be started by torchrun, e.g. 'torchrun --nproc_per_node 2 -m ppl_vae train RECIPE --distributed'"
        )
    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def agree(ok: bool) -> bool:
    """True on every rank when ``ok`` is true on every rank (so a failing rank cannot leave the
    others waiting at a collective call)."""
    if not active():
        return ok
    flag = torch.tensor([int(ok)], device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def shard() -> "tuple | None":
    """(rank, world size) for ``ArrayDataset.batches`` when distributed, else None."""
    return (rank(), world_size()) if active() else None


class LossModule(nn.Module):
    """What DDP wraps: forward returns ``loss_fn``'s differentiable loss (times the world size)."""

    def __init__(self, vae: nn.Module, loss_fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.vae, self.loss_fn = vae, loss_fn

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0, **kwargs: Any) -> torch.Tensor:
        return self.loss_fn(x, mask, step=step, **kwargs) * world_size()


def wrap(vae: nn.Module, loss_fn: Callable[..., torch.Tensor], device: torch.device) -> Callable[..., torch.Tensor]:
    """``loss_fn(x, mask, step=...)`` itself, or a DDP module computing it when distributed."""
    if not active():
        return loss_fn
    return nn.parallel.DistributedDataParallel(LossModule(vae, loss_fn), device_ids=[device.index] if device.type == "cuda" else None)
