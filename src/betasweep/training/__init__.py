"""Training: the loop (:func:`train`), its :class:`TrainConfig`, and checkpoints."""

from betasweep.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from betasweep.training.loop import TrainConfig, TrainResult, resolve_device, seed_sequences, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_sequences",
    "train",
]
