"""Training: ``fit`` (the one loop), the traced training step, distributed data parallelism and
complete checkpoints. Knows nothing of run directories or the command line."""

from ppl_vae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ppl_vae.training.fit import TrainingDiverged, TrainState, fit, make_optimizer, mean_eval_loss, resolve_device

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "TrainingDiverged",
    "TrainState",
    "fit",
    "make_optimizer",
    "mean_eval_loss",
    "resolve_device",
]
