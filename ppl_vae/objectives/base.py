"""The interface every training objective implements; ``fit`` calls nothing else.

An objective turns a batch into a differentiable loss for the model's optimizer. It never changes
the model or guide code: the ELBO family passes beta to both, the penalties of the disentangled
objectives are computed from the same traces. What ``fit`` asks of an objective:

* ``loss(model, x, mask, step, **labels)``: the training loss summed over the batch (required).
* ``eval_loss(model, x, mask, **labels)``: the negative bound itself, for validation (required).
* ``setup(model, train)``: once, before the first step (sizes, auxiliary networks).
* ``auxiliary_step(model, x, mask, step)``: after each model step, for parameters of the objective's
  own with their own optimizer (FactorVAE's discriminator).
* ``epoch_stats(model, data)``: extra numbers for the epoch's history record.
* ``state_dict()`` / ``load_state_dict(state)``: everything a resumed run needs (auxiliary networks,
  their optimizers, random generators, cursors), as tensors and plain data.

``needs_labels``: batches carry labels, passed as ``y=``. ``traceable``: the loss is a pure function
of ``(model, x, mask, beta)``, so ``ppl_vae.training.tracing`` may replay it from a recorded graph.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Optional

import torch

from ppl_vae.registry import ConfigError


class Objective:
    """Base class of the objectives; subclasses override ``loss`` and ``eval_loss`` and the hooks they need."""

    needs_labels: ClassVar[bool] = False
    traceable: ClassVar[bool] = False

    def setup(self, model: torch.nn.Module, train: Any) -> None:
        """Called by ``fit`` once, after the model is on its device and before the first step."""

    def loss(self, model: torch.nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor] = None, step: int = 0) -> torch.Tensor:
        """The differentiable training loss, summed over the batch (objectives with ``needs_labels`` also take ``y=``)."""
        raise NotImplementedError(f"{type(self).__name__} must define loss()")

    def eval_loss(self, model: torch.nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The negative bound (beta = 1, no penalties), summed over the batch: for validation."""
        raise NotImplementedError(f"{type(self).__name__} must define eval_loss()")

    def auxiliary_step(self, model: torch.nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor], step: int) -> None:
        """Update the objective's own parameters after the model's optimizer step (default: none)."""

    def epoch_stats(self, model: torch.nn.Module, data: Any) -> Dict[str, float]:
        """Numbers added to each epoch's history record (default: none)."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        """The objective's state for a checkpoint: tensors and plain data (default: none)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore ``state_dict()``'s output; called after ``setup``."""
        if state:
            raise ConfigError(
                f"the checkpoint holds objective state {sorted(state)} that {type(self).__name__} "
                "does not know: was it saved with another objective?"
            )
