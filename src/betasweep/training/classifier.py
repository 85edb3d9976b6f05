"""Training and scoring the CelebA attribute classifier (:mod:`betasweep.models.classifier`).

Adam on the mean binary cross-entropy over the 40 attributes (optionally with positive weights
``n_neg / n_pos`` from the train partition, for imbalance), torchvision ``transforms.v2``
augmentation (random resized crop, horizontal flip, colour jitter), and early stopping on the val
partition's mean accuracy. Scores are per-attribute accuracy, balanced accuracy and F1 at the 0.5
threshold, and the mean accuracy over the attributes next to the majority-class baseline (each
attribute's more frequent value in the train partition, scored on the evaluated partition), the
figure Liu et al. 2015 and later CelebA papers report.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from betasweep.training.checkpoint import load_state
from betasweep.errors import ConfigError, DataError, DivergenceError
from betasweep.models.classifier import AttributeClassifier, ClassifierConfig, build_classifier
from betasweep.training.loop import resolve_device

__all__ = [
    "CLASSIFIER_FORMAT",
    "ClassifierResult",
    "ClassifierTrainConfig",
    "attribute_metrics",
    "augmentation",
    "classification_report",
    "format_report",
    "load_classifier",
    "majority_baseline",
    "positive_weight",
    "predict_probabilities",
    "save_classifier",
    "train_classifier",
]

CLASSIFIER_FORMAT = 1
AUX_WEIGHT = 0.4
"""Weight of InceptionV3's auxiliary loss, as in torchvision's reference training script."""


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Everything about one classifier training run except the network (:class:`ClassifierConfig`).

    Attributes:
        epochs: maximum passes over the train partition.
        batch_size: images per optimiser step.
        learning_rate: Adam's step size.
        weight_decay: Adam's L2 weight decay.
        patience: epochs without a better val mean accuracy before stopping; the best epoch's
            weights are kept.
        pos_weight: weight each attribute's positive term by ``n_neg / n_pos`` of the train partition.
        augment: random resized crop (scale 0.8–1), horizontal flip and colour jitter in training.
        crop_size: centre crop of the 178x218 JPEGs, in pixels, before resizing to the model's
            image size (178: the full width; the VAE's 148 cuts off hair and hats).
        seed: init, data order and augmentation draw from it.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:i]"``.
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    pos_weight: bool = False
    augment: bool = True
    crop_size: int = 178
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ConfigError(f"epochs, batch_size and patience must be >= 1, got {self.epochs}, "
                              f"{self.batch_size}, {self.patience}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)) or self.weight_decay < 0:
            raise ConfigError(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, "
                              f"{self.weight_decay}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ClassifierResult:
    """What :func:`train_classifier` returns.

    Attributes:
        model: the best epoch's classifier, eval mode.
        best_epoch: 1-based epoch whose weights were kept.
        history: one record per epoch (see :func:`train_classifier`).
        report: :func:`classification_report` of the kept model on the val partition.
    """

    model: AttributeClassifier
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def positive_weight(train_attributes: np.ndarray) -> torch.Tensor:
    """BCE positive weights ``n_neg / n_pos`` per attribute: bool ``(N, A)`` → float32 ``(A,)``.

    An attribute with no positive image gets the weight of a single positive (``n_neg / 1``).
    """
    positives = train_attributes.sum(axis=0)
    return torch.from_numpy(((len(train_attributes) - positives) / np.maximum(positives, 1)).astype(np.float32))


def augmentation(image_size: int):
    """Training augmentation on one uint8 image ``(3, s, s)``, returning uint8 ``(3, s, s)``.

    Random resized crop (area 0.8–1, aspect 0.9–1.1; faces are aligned, so only mild
    scale/shift jitter keeps the attributes visible), horizontal flip (CelebA's attributes are
    symmetric under it), colour jitter (brightness/contrast/saturation 0.2, hue 0.02).
    """
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    ])


def attribute_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-attribute accuracy, balanced accuracy and F1 of binary predictions.

    Args:
        predicted, target: bool ``(n, A)``.

    Returns:
        float64 ``(A,)`` arrays: ``accuracy``; ``balanced_accuracy`` = mean of the true positive
        and true negative rates (the defined one alone when a class is absent); ``f1`` =
        2·TP / (2·TP + FP + FN), 0 when there are no positives predicted or present.
    """
    predicted, target = np.asarray(predicted, bool), np.asarray(target, bool)
    tp = (predicted & target).sum(0).astype(np.float64)
    tn = (~predicted & ~target).sum(0).astype(np.float64)
    fp = (predicted & ~target).sum(0).astype(np.float64)
    fn = (~predicted & target).sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.stack([tp / (tp + fn), tn / (tn + fp)])
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {
        "accuracy": (tp + tn) / len(target),
        "balanced_accuracy": np.nanmean(np.where(np.isnan(rates).all(axis=0), 0.0, rates), axis=0),
        "f1": f1,
    }


def majority_baseline(train_attributes: np.ndarray, eval_attributes: np.ndarray) -> np.ndarray:
    """Accuracy of always predicting each attribute's train-majority value: float64 ``(A,)``."""
    majority = train_attributes.mean(axis=0) >= 0.5
    return (eval_attributes == majority).mean(axis=0, dtype=np.float64)


@torch.no_grad()
def predict_probabilities(
    model: AttributeClassifier, images: Callable[[np.ndarray], np.ndarray], num_images: int, *, batch_size: int = 256
) -> np.ndarray:
    """Sigmoid outputs of the classifier on uint8 images.

    Args:
        model: the classifier (put in eval mode; its mode is restored after).
        images: ``indices → uint8 (n, 3, s, s)`` (e.g. ``CelebA.images_uint8``).
        num_images: images ``0 .. num_images − 1`` are scored.

    Returns:
        float32 ``(num_images, num_attributes)`` in [0, 1].
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [
            torch.sigmoid(model(_to_float(images(np.arange(i, min(i + batch_size, num_images))), device))).cpu()
            for i in range(0, num_images, batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.num_attributes), np.float32)


def _to_float(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``(b, 3, s, s)`` → float32 in [0, 1] on ``device``."""
    batch = torch.as_tensor(batch)
    return batch.to(device).float().div_(255.0)


def classification_report(
    probabilities: np.ndarray, target: np.ndarray, train_attributes: np.ndarray, names: tuple[str, ...]
) -> dict[str, Any]:
    """Metrics of thresholded (0.5) probabilities against the majority-class baseline.

    Args:
        probabilities: float ``(n, A)`` predicted probabilities.
        target: bool ``(n, A)`` true attributes of the same images.
        train_attributes: bool ``(N_train, A)``, for the baseline's majority values.
        names: the ``A`` attribute names.

    Returns:
        JSON-ready dict: ``mean_accuracy``, ``mean_balanced_accuracy``, ``mean_f1``,
        ``baseline_mean_accuracy``, ``num_images`` and ``attributes``, a list of per-attribute
        dicts (``name``, ``accuracy``, ``balanced_accuracy``, ``f1``, ``baseline_accuracy``,
        ``positive_rate``).
    """
    metrics = attribute_metrics(probabilities >= 0.5, target)
    baseline = majority_baseline(train_attributes, target)
    rows = [
        {
            "name": name,
            "accuracy": float(metrics["accuracy"][a]),
            "balanced_accuracy": float(metrics["balanced_accuracy"][a]),
            "f1": float(metrics["f1"][a]),
            "baseline_accuracy": float(baseline[a]),
            "positive_rate": float(target[:, a].mean()),
        }
        for a, name in enumerate(names)
    ]
    return {
        "mean_accuracy": float(metrics["accuracy"].mean()),
        "mean_balanced_accuracy": float(metrics["balanced_accuracy"].mean()),
        "mean_f1": float(metrics["f1"].mean()),
        "baseline_mean_accuracy": float(baseline.mean()),
        "num_images": int(len(target)),
        "attributes": rows,
    }


def format_report(report: dict[str, Any]) -> str:
    """The per-attribute table of :func:`classification_report` and the means, as plain text."""
    width = max((len(row["name"]) for row in report["attributes"]), default=9)
    lines = [f"{'attribute':<{width}}  accuracy  balanced       f1  baseline  positive"]
    for row in report["attributes"]:
        lines.append(f"{row['name']:<{width}}  {row['accuracy']:8.3f}  {row['balanced_accuracy']:8.3f}  "
                     f"{row['f1']:7.3f}  {row['baseline_accuracy']:8.3f}  {row['positive_rate']:8.3f}")
    lines.append(f"{'mean':<{width}}  {report['mean_accuracy']:8.3f}  {report['mean_balanced_accuracy']:8.3f}  "
                 f"{report['mean_f1']:7.3f}  {report['baseline_mean_accuracy']:8.3f}")
    lines.append(f"mean accuracy {report['mean_accuracy']:.4f} vs majority baseline "
                 f"{report['baseline_mean_accuracy']:.4f} on {report['num_images']} images")
    return "\n".join(lines)


def _train_epoch(model, optimizer, data, order, config, pos_weight, augment, device, bar) -> float:
    """One pass over ``data`` in ``order``; returns the mean training loss (BCE, nats per attribute)."""
    model.train()
    total, count = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        index = order[start : start + config.batch_size]
        batch = torch.from_numpy(data.images_uint8(index))
        if augment is not None:
            batch = torch.stack([augment(image) for image in batch])
        x = _to_float(batch, device)
        y = torch.from_numpy(data.attributes[index]).to(device).float()
        logits, aux = model.logits_and_aux(x)
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
        if aux is not None:
            loss = loss + AUX_WEIGHT * F.binary_cross_entropy_with_logits(aux, y, pos_weight=pos_weight)
        if not torch.isfinite(loss):
            raise DivergenceError(bar.n, loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
        count += len(index)
        bar.update(1)
    return total / max(count, 1)


def train_classifier(
    train_data,
    val_data,
    model_config: ClassifierConfig,
    train_config: ClassifierTrainConfig,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> ClassifierResult:
    """Train an attribute classifier with early stopping on the val partition.

    After each epoch a record is appended to the history and passed to ``callback(record)``:
    ``epoch``, ``train_loss`` (mean BCE over the epoch, nats per attribute, including the
    auxiliary term), ``val_mean_accuracy``, ``val_mean_balanced_accuracy``, ``val_mean_f1``,
    ``baseline_mean_accuracy``, ``elapsed_s``. This is the hook for experiment tracking (MLflow
    is wired by :mod:`betasweep.tracking`, not here).

    Args:
        train_data, val_data: :class:`~betasweep.data.celeba.CelebA` partitions (or anything with
            ``images_uint8(indices)``, ``attributes`` and ``len``) at ``model_config.image_size``.
        model_config, train_config: the run's configuration.
        callback: called with each epoch's record.
        progress: show a progress bar.

    Returns:
        :class:`ClassifierResult` with the best epoch's model and its val report.

    Raises:
        MissingWeightsError: ImageNet initialisation without the local weights file.
        DataError: the data's images are not ``model_config.image_size``.
        DivergenceError: a step's loss is not finite.
    """
    for name, data in (("train", train_data), ("val", val_data)):
        side = data.images_uint8(np.arange(1)).shape[-1]
        if side != model_config.image_size:
            raise DataError(f"{name} images are {side} px but the classifier expects {model_config.image_size}")
    device = resolve_device(train_config.device)
    init_seed, order_seed, augment_seed = np.random.SeedSequence(train_config.seed).spawn(3)
    names = tuple(getattr(train_data, "attribute_names", ())) or tuple(f"a{i}" for i in range(model_config.num_attributes))
    train_attributes = np.asarray(train_data.attributes, bool)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed.generate_state(1)[0]))
        model = build_classifier(model_config).to(device)
        torch.manual_seed(int(augment_seed.generate_state(1)[0]))  # v2 transforms draw from torch's global rng
        optimizer = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate,
                                     weight_decay=train_config.weight_decay)
        pos_weight = positive_weight(train_attributes).to(device) if train_config.pos_weight else None
        augment = augmentation(model_config.image_size) if train_config.augment else None
        rng = np.random.default_rng(order_seed)
        steps = math.ceil(len(train_data) / train_config.batch_size)
        history, best, best_state, best_epoch, start = [], -1.0, None, 0, time.perf_counter()
        with tqdm(total=steps * train_config.epochs, desc="classifier", unit="step", disable=not progress,
                  leave=False) as bar:
            for epoch in range(1, train_config.epochs + 1):
                order = rng.permutation(len(train_data))
                loss = _train_epoch(model, optimizer, train_data, order, train_config, pos_weight, augment, device, bar)
                probabilities = predict_probabilities(model, val_data.images_uint8, len(val_data))
                report = classification_report(probabilities, np.asarray(val_data.attributes, bool),
                                               train_attributes, names)
                record = {
                    "epoch": epoch,
                    "train_loss": loss,
                    "val_mean_accuracy": report["mean_accuracy"],
                    "val_mean_balanced_accuracy": report["mean_balanced_accuracy"],
                    "val_mean_f1": report["mean_f1"],
                    "baseline_mean_accuracy": report["baseline_mean_accuracy"],
                    "elapsed_s": time.perf_counter() - start,
                }
                history.append(record)
                bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{report['mean_accuracy']:.4f}")
                if callback is not None:
                    callback(record)
                if report["mean_accuracy"] > best:
                    best, best_epoch, best_report = report["mean_accuracy"], epoch, report
                    best_state = copy.deepcopy(model.state_dict())
                elif epoch - best_epoch >= train_config.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    return ClassifierResult(model=model, best_epoch=best_epoch, history=history, report=best_report)


def save_classifier(path: str | os.PathLike, model: AttributeClassifier, **extra: Any) -> Path:
    """Write the classifier atomically: ``format``, ``kind``, ``model_config``, ``model_state`` and ``extra``.

    ``extra`` must hold only JSON-like values (train config, data info, attribute names,
    metrics) so that ``torch.load(weights_only=True)`` reads the file back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CLASSIFIER_FORMAT, "kind": "attribute_classifier", "model_config": model.config.to_dict(),
             "model_state": model.state_dict(), **extra}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_classifier(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[AttributeClassifier, dict[str, Any]]:
    """Rebuild a classifier from its checkpoint alone (``weights_only=True``; no ImageNet file needed).

    Returns:
        ``(model, state)``: the classifier in eval mode, and the whole checkpoint dict.

    Raises:
        DataError: the file is missing or not a betasweep classifier checkpoint.
    """
    state = load_state(path, map_location, what="classifier checkpoint")
    if not isinstance(state, dict) or state.get("kind") != "attribute_classifier" or "model_config" not in state:
        raise DataError(f"{path}: not a betasweep attribute-classifier checkpoint")
    model = AttributeClassifier(ClassifierConfig(**state["model_config"]))
    model.load_state_dict(state["model_state"])
    return model.to(map_location).eval(), state
