"""Training: the β-VAE loop (:func:`train`), its :class:`TrainConfig`, checkpoints, and the attribute classifier."""

from betasweep.training.classifier import (
    ClassifierTrainConfig,
    classification_report,
    format_report,
    load_classifier,
    predict_probabilities,
    save_classifier,
    train_classifier,
)
from betasweep.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from betasweep.training.loop import TrainConfig, TrainResult, resolve_device, seed_sequences, train

__all__ = [
    "ClassifierTrainConfig",
    "TrainConfig",
    "classification_report",
    "format_report",
    "load_classifier",
    "predict_probabilities",
    "save_classifier",
    "train_classifier",
    "TrainResult",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_sequences",
    "train",
]
