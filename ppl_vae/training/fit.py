"""``fit``: the one training loop.

One ``torch.optim`` optimizer over the VAE's own parameters, the loss from the objective
(a Pyro ELBO's ``differentiable_loss``), data kept on the device, no host sync inside an epoch
(the loss is summed on the device and read once per epoch). Each epoch reseeds from
``seed + epoch``, so a resumed run continues exactly as an uninterrupted one would.
Knows nothing of files: ``on_epoch_end(vae, state)`` is where callers checkpoint.
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional, Union

import pyro
import torch
from tqdm.auto import tqdm

from ppl_vae.training import distributed
from ppl_vae.config import TrainConfig
from ppl_vae.data.base import ArrayDataset, as_dataset
from ppl_vae.objectives import Objective, as_objective
from ppl_vae.registry import ConfigError
from ppl_vae.schema import iter_rules
from ppl_vae.training.lr_schedules import make_lr_schedule, should_stop, step_lr_schedule
from ppl_vae.training.tracing import TracedLoss

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the VAE holds the parameters of the last good epoch."""


@dataclass
class TrainState:
    """What a resumed run needs besides the model: the epoch and step reached, the optimizer's and
    the objective's state, and the history so far (``fit`` updates it after every epoch)."""

    epoch: int = 0
    step: int = 0
    optimizer: Optional[dict] = None
    objective: Optional[dict] = None
    history: List[dict] = field(default_factory=list)
    scheduler: Optional[dict] = None  # the learning-rate scheduler's state


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():  # a distributed rank's GPU was set by distributed.init_from_env
            return torch.device("cuda", torch.cuda.current_device()) if distributed.active() else torch.device("cuda")
        return torch.device("cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' asked for, but no CUDA GPU is available; use device = 'auto' or 'cpu'")
    return torch.device(device)


def make_optimizer(params: Iterable[torch.Tensor], name: str = "adam", lr: float = 1e-3, **kwargs: Any) -> torch.optim.Optimizer:
    """A torch optimizer; its fused implementation (one kernel for all parameters, no per-parameter
    temporaries) where torch has one for this optimizer and device, unless ``fused`` is given."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{name}'; choose one of: {', '.join(OPTIMIZERS)}")
    cls, params = OPTIMIZERS[name], list(params)
    if "fused" not in kwargs and "foreach" not in kwargs and _fused_available(cls, params):
        kwargs["fused"] = True
    return cls(params, lr=lr, **kwargs)


def _fused_available(cls, params) -> bool:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # an older torch: keep its default implementation
        return False
    return (
        "fused" in inspect.signature(cls.__init__).parameters
        and len(params) > 0
        and all(p.is_floating_point() and p.device.type in devices for p in params)
    )


@torch.no_grad()
def mean_eval_loss(vae: Any, objective: Objective, data: ArrayDataset, batch_size: int = 1024) -> float:
    """The objective's bound (beta = 1, no penalties) as a mean negative loss per datum."""
    total = torch.zeros((), device=data.x.device)
    labels = objective.needs_labels
    for batch in data.batches(batch_size, shuffle=False, labels=labels):
        total += objective.eval_loss(vae, *batch[:2], **({"y": batch[2]} if labels else {})).detach()
    return -float(total) / len(data)


def fit(
    vae: Any,
    train: Union[ArrayDataset, torch.Tensor],
    *,
    val: Optional[Union[ArrayDataset, torch.Tensor]] = None,
    objective: Union[Objective, str, None] = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    device: Union[str, torch.device] = "auto",
    seed: int = 0,
    progress: bool = True,
    state: Optional[TrainState] = None,
    on_epoch_end: Optional[Callable[[Any, TrainState], Any]] = None,
    clip_grad: Optional[float] = None,
    trace: Union[str, bool] = "auto",
    patience: int = 0,
    min_delta: float = 0.0,
    lr_schedule: Optional[dict] = None,
) -> List[dict]:
    """Train ``vae`` on ``train``; returns the per-epoch history (train loss and validation ELBO per datum).

    Inside a torch.distributed process group (see ``ppl_vae.training.distributed``) every rank trains on its
    own block of each global batch of ``batch_size`` and gradients are averaged by DDP.
    ``state`` resumes a run (its epoch, optimizer state and history); ``on_epoch_end(vae, state)``
    is called after every epoch. ``trace``: replay the Pyro program's loss from a recorded graph
    where that is exact ("auto", the default; True warns when it cannot; "compile" also compiles the
    graph; False never; see ``ppl_vae.training.tracing``); each history record says whether the epoch ran
    ``traced``. ``seed`` seeds everything ``fit`` draws (batch order, binarization and Monte Carlo draws;
    epoch ``e`` uses ``seed + e``): the same model, data and seed train to bitwise-equal weights on the CPU.
    The initial weights were drawn when the model was built: build it after ``pyro.set_rng_seed(seed)``
    (as ``ppl-vae train --seed`` does) for a run that is reproducible from the start.
    Raises ``TrainingDiverged`` on a NaN/inf loss, keeping the parameters of the last
    good epoch. Arguments are checked against the config schema's rules (``TrainConfig``): a bad
    value is a one-line ``ConfigError``.

    ``clip_grad`` clips the gradients' total norm (``torch.nn.utils.clip_grad_norm_``); ``lr_schedule``
    names a torch scheduler stepped once per epoch (``{"name": "cosine"}``, see
    ``ppl_vae.training.lr_schedules``); ``patience`` > 0 stops when the validation ELBO has not risen by
    more than ``min_delta`` for that many epochs. Each history record carries the epoch's learning rate.
    On a model's first step, likelihoods with a learned scale start from the data's spread
    (``Likelihood.init_from_data``). With ``progress`` and no terminal (a log file, CI), each epoch is
    one plain line on stderr instead of a progress bar.
    """
    rules = dict(iter_rules(TrainConfig))
    epochs, batch_size, lr, seed = (
        rules[k].check(k, v) for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed))
    )
    if clip_grad is not None:
        clip_grad = rules["clip_grad"].check("clip_grad", clip_grad)
    patience, min_delta = rules["patience"].check("patience", patience), rules["min_delta"].check("min_delta", min_delta)
    device = resolve_device(device)
    vae.to(device)
    train = as_dataset(train).to(device)
    val = as_dataset(val).to(device) if val is not None else None
    for part in (train, val):
        if part is not None:
            part.check_for(vae.likelihood)
    objective = as_objective(objective)
    objective.setup(vae, train)
    labels = objective.needs_labels  # batches carry labels (the conditional VAE's objective)
    state = state or TrainState()
    if state.step == 0:
        vae.likelihood.init_from_data(train.x, train.mask)
    opt = make_optimizer(vae.parameters(), optimizer, lr)
    if state.optimizer is not None:
        opt.load_state_dict(state.optimizer)
    schedule = make_lr_schedule(opt, lr_schedule, epochs, val is not None)
    if schedule is not None and state.scheduler:
        schedule.load_state_dict(state.scheduler)
    if state.objective:
        objective.load_state_dict(state.objective)
    n = len(train)
    traced = TracedLoss(vae, objective, trace)
    loss_fn = distributed.wrap(vae, traced, device)
    world, shard = distributed.world_size(), distributed.shard()
    lines = progress and distributed.is_main() and not sys.stderr.isatty()  # a log: one line per epoch
    bar = tqdm(
        total=epochs * n,
        initial=min(state.epoch, epochs) * n,
        unit="img",
        unit_scale=True,
        disable=not progress or lines or not distributed.is_main(),
        desc="train",
        dynamic_ncols=True,
        leave=False,
    )
    generator = torch.Generator(device=device)
    try:
        for epoch in range(state.epoch, epochs):
            if should_stop(state.history, patience, min_delta):
                break
            generator.manual_seed(seed + epoch)
            pyro.set_rng_seed(seed + epoch)
            good = copy.deepcopy(vae.state_dict())
            total = torch.zeros((), device=device)
            start = time.perf_counter()
            vae.train()
            try:
                # data were checked once above; per-step argument checks would sync with the GPU
                with pyro.validation_enabled(False):
                    for xb, mb, *yb in train.batches(batch_size, generator=generator, labels=labels, shard=shard):
                        loss = loss_fn(xb, mb, step=state.step, **({"y": yb[0]} if labels else {}))
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        if clip_grad:
                            torch.nn.utils.clip_grad_norm_(vae.parameters(), clip_grad)
                        opt.step()
                        objective.auxiliary_step(vae, xb, mb, state.step)
                        total += loss.detach()
                        state.step += 1
                        bar.update(len(xb) * world)
            except ValueError:  # a distribution refusing NaN parameters: divergence if the weights are NaN
                if all(torch.isfinite(p).all() for p in vae.parameters()):
                    raise
                total = total * float("nan")
            train_loss = float(distributed.all_reduce_sum(total)) / (n * world)  # the one host sync of the epoch
            if not math.isfinite(train_loss):
                vae.load_state_dict(good)
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}: the loss became NaN or infinite; the parameters of "
                    f"the last good epoch ({epoch}) were kept. Lower the learning rate (train.lr) or check the data."
                )
            record = {"epoch": epoch + 1, "train_loss": train_loss, "seconds": time.perf_counter() - start, "traced": traced.traced}
            record["lr"] = opt.param_groups[0]["lr"]
            if val is not None:
                vae.eval()
                record["val_elbo"] = mean_eval_loss(vae, objective, val)
            record.update(objective.epoch_stats(vae, val if val is not None else train))
            step_lr_schedule(schedule, record.get("val_elbo"))
            state.history.append(record)
            state.epoch = epoch + 1
            state.optimizer = opt.state_dict()
            state.objective = objective.state_dict()
            state.scheduler = schedule.state_dict() if schedule is not None else None
            bar.set_postfix(loss=f"{train_loss:.2f}", **({"val_elbo": f"{record['val_elbo']:.2f}"} if val is not None else {}))
            if lines:
                print(_epoch_line(record, epochs), file=sys.stderr, flush=True)
            if on_epoch_end is not None:
                on_epoch_end(vae, state)
    finally:
        bar.close()
    vae.eval()
    return state.history


def _epoch_line(record: dict, epochs: int) -> str:
    """``epoch 3/20  loss 45.213  val ELBO -44.981  lr 0.001  1.2 s``: the plain line a log gets per epoch."""
    val = f"  val ELBO {record['val_elbo']:.3f}" if "val_elbo" in record else ""
    return f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.3f}{val}  lr {record['lr']:.3g}  {record['seconds']:.1f} s"
