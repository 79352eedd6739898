"""Training objectives of the label-aware model kinds (``kinds.semisupervised``, ``kinds.conditional``).

* ``SemiSupervisedObjective`` ("semi-supervised"): every step scores a batch of unlabelled data with
  the enumerated bound (``TraceEnum_ELBO``, exact sum over y) and a batch of labelled data with the
  labelled bound plus ``alpha`` times the classifier's cross-entropy (Kingma et al. 2014, eq. 9).
  The labelled batches cycle through a reshuffled labelled set, so with few labels every label is
  seen many times per epoch; the labelled batch gets the weight of the unlabelled batch.
* ``ConditionalObjective`` ("conditional"): the ELBO of p(x | y) with labels from the batches.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, cast

import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from ppl_vae.data.base import ArrayDataset
from ppl_vae.evaluation.classification import accuracy
from ppl_vae.objectives.base import Objective
from ppl_vae.schema import NonNegativeFloat, PositiveInt, checked
from ppl_vae.registry import OBJECTIVES, ConfigError


@OBJECTIVES.register("semi-supervised")
class SemiSupervisedObjective(Objective):
    """M2's objective: enumerated unlabelled bound + labelled bound + alpha * cross-entropy."""

    _order: Optional[torch.Tensor]  # the current permutation of the labelled set (None: draw a new one)

    @checked
    def __init__(
        self, alpha: NonNegativeFloat = 50.0, labelled_batch_size: PositiveInt = 100, labelled: Optional[ArrayDataset] = None
    ) -> None:
        self.alpha, self.labelled_batch_size = float(alpha), int(labelled_batch_size)
        self.unlabelled_elbo = TraceEnum_ELBO(max_plate_nesting=1)
        self.labelled_elbo = Trace_ELBO(max_plate_nesting=1)
        self.labelled = labelled
        self._order, self._cursor = None, 0

    def set_labelled(self, labelled: Optional[ArrayDataset]) -> None:
        if labelled is None or labelled.y is None:
            raise ConfigError("the semi-supervised objective needs a labelled subset: set data.labels")
        self.labelled = labelled

    def setup(self, vae: Any, train: Any) -> None:
        self.set_labelled(self.labelled)
        assert self.labelled is not None  # set_labelled raises otherwise
        self.labelled = self.labelled.to(vae.device)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self._generator = torch.Generator(device=vae.device).manual_seed(rank)  # ranks draw different labelled batches
        self._order, self._cursor = None, 0

    def state_dict(self) -> dict:
        """Where the labelled batches are: the generator's state, the current order and cursor."""
        return {"generator": self._generator.get_state(), "order": self._order, "cursor": self._cursor}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self._generator.set_state(state["generator"])
        assert self.labelled is not None  # setup() set it, with the generator
        order = state["order"]
        self._order = None if order is None else order.to(self.labelled.x.device)
        self._cursor = int(state["cursor"])

    def _next_labelled(self) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        if self.labelled is None:
            raise ConfigError("the semi-supervised objective: call setup(model, train) before computing the loss")
        n = len(self.labelled)
        b = min(self.labelled_batch_size, n)
        if self._order is None or self._cursor + b > n:
            self._order = torch.randperm(n, device=self.labelled.x.device, generator=self._generator)
            self._cursor = 0
        idx = self._order[self._cursor : self._cursor + b]
        self._cursor += b
        lab = self.labelled
        x = lab.x[idx]
        if lab.binarize:
            x = torch.bernoulli(x, generator=self._generator)
        return x, None if lab.mask is None else lab.mask[idx], cast(torch.Tensor, lab.y)[idx]  # y: set_labelled checked it

    def labelled_loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """-ELBO(x, y) + alpha * cross-entropy of q(y | x), summed over the batch."""
        ce = F.cross_entropy(vae.classify(x, mask), y, reduction="sum")
        return self.labelled_elbo.differentiable_loss(vae.model, vae.guide, x, mask, y) + self.alpha * ce

    def loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        xl, ml, yl = self._next_labelled()
        unlabelled = self.unlabelled_elbo.differentiable_loss(vae.model, vae.guide, x, mask)
        return unlabelled + (len(x) / len(xl)) * self.labelled_loss(vae, xl, ml, yl)

    def eval_loss(self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The unlabelled (enumerated) negative bound, summed over the batch (no gradient: for validation)."""
        return torch.as_tensor(self.unlabelled_elbo.loss(vae.model, vae.guide, x, mask), device=x.device)

    @torch.no_grad()
    def epoch_stats(self, vae: Any, data: ArrayDataset) -> dict:
        return {"val_accuracy": accuracy(vae.classify, data)} if data.y is not None else {}


@OBJECTIVES.register("conditional")
class ConditionalObjective(Objective):
    """The ELBO of the conditional VAE p(x | y); batches carry labels."""

    needs_labels = True

    @checked
    def __init__(self, num_particles: PositiveInt = 1) -> None:
        self.elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)

    def loss(
        self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0, y: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.elbo.differentiable_loss(vae.model, vae.guide, x, mask, y)

    def eval_loss(
        self, vae: Any, x: torch.Tensor, mask: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.loss(vae, x, mask, y=y)
