"""Conditional VAEs under the metrics: labels that travel with the images, control and leakage.

**How a representation function gets ``y``.** Every metric calls a representation function on
images only (disentanglement_lib's protocol), but a cvae's code is ``mu(x, y)``. The labels are a
function of what the metric sampled: on ground-truth data the conditioned factor's value (one-hot),
on CelebA the image's attributes. :func:`labelled_view` wraps a dataset so that the images it hands
out carry their ``y`` as one extra channel (:func:`pack_labels`; ``y`` in the first ``label_dim``
pixels of that channel, row-major), and :func:`~betasweep.metrics.representation_function`
unpacks it. So every panel metric scores ``z = mu(x, y_true)``, deterministic, without knowing
about labels, and unconditional families see the data unchanged.

**Control** (with an attribute classifier): set each conditioned attribute to +1 and to −1 on the
same ``z`` and let the classifier say how much ``p(attribute)`` of the decoded image moves; 1 is
full control, 0 none (the decoder ignores ``y``).

**Conditioned value wins** (ground-truth data): decode the code of a held-out image with each
value of the conditioned factor; the value wins on that image when the decode overlaps the image
of *that* value (other factors from the source) more than the images of the other values.

**Leakage**: the ROC AUC of the code for each conditioned label (the best single dimension's
``max(AUC, 1 − AUC)``, :func:`~betasweep.metrics.attribute_auc`): 0.5 means the attribute lives
in ``y`` only, not in ``z``; values near 1 mean ``z`` encodes it as well (the decoder can then
disregard ``y``). The code is a *sample* ``z ~ q(z | x, y)``, not ``mu``: the AUC is blind to
scale, and a collapsed dimension (KL ≈ 0, ``sigma`` ≈ 1) whose ``mu`` moves by 1e-4 with ``y``
ranked the labels perfectly (AUC 1.0) while carrying no information to the decoder; its sample
scores 0.5. The best of ``d`` dimensions sits slightly above 0.5 by chance.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from betasweep.data.base import GroundTruthData
from betasweep.metrics.attribute_naming import attribute_auc
from betasweep.models import label_names, labels_from

__all__ = ["conditioned_value_wins", "control", "labelled_view", "leakage", "pack_labels", "unpack_labels"]


def pack_labels(images: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Images float32 ``(n, C, H, W)`` and ``y`` ``(n, L)`` (``L <= H·W``) → ``(n, C + 1, H, W)``."""
    n, _, h, w = images.shape
    plane = np.zeros((n, 1, h * w), dtype=np.float32)
    plane[:, 0, : y.shape[1]] = y
    return np.concatenate([np.asarray(images, np.float32), plane.reshape(n, 1, h, w)], axis=1)


def unpack_labels(packed: torch.Tensor, label_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_labels`: ``(n, C + 1, H, W)`` → images ``(n, C, H, W)``, ``y`` ``(n, label_dim)``."""
    return packed[:, :-1], packed[:, -1].flatten(1)[:, :label_dim]


class _LabelledGroundTruth(GroundTruthData):
    """Ground-truth data whose images carry the cvae's one-hot ``y`` (see the module docstring)."""

    def __init__(self, data: GroundTruthData, config):
        self.data, self.config = data, config

    factor_names = property(lambda self: self.data.factor_names)
    factor_sizes = property(lambda self: self.data.factor_sizes)
    num_channels = property(lambda self: self.data.num_channels)

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        factors = np.asarray(factors)
        return pack_labels(self.data.images_from_factors(factors, rng), labels_from(self.config, self.data, factors))


class _LabelledAttributes:
    """CelebA whose :meth:`images` carry the cvae's ±1 ``y``; everything else is the wrapped dataset's."""

    def __init__(self, data, config):
        self.data, self.config = data, config

    def __getattr__(self, name):
        return getattr(self.data, name)

    def __len__(self) -> int:
        return len(self.data)

    def images(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        return pack_labels(self.data.images(indices), labels_from(self.config, self.data, self.data.attributes[indices]))

    def with_partition(self, partition: str):
        return _LabelledAttributes(self.data.with_partition(partition), self.config)


def labelled_view(model, data):
    """``data`` for the metrics of ``model``: unchanged for unconditional families, else a view whose
    images carry ``y`` (ground-truth: ``images_from_factors``; CelebA: ``images``)."""
    if not getattr(model, "conditional", False):
        return data
    if isinstance(data, GroundTruthData):
        return _LabelledGroundTruth(data, model.config)
    return _LabelledAttributes(data, model.config)


@torch.no_grad()
def _sampled_codes(model, images: np.ndarray, y: np.ndarray, generator: torch.Generator, batch_size: int = 64) -> np.ndarray:
    """``z ~ q(z | x, y)`` ``(n, latent_dim)``, one sample per image."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        mu, logvar = model.encode(torch.as_tensor(images[i : i + batch_size], device=device),
                                  torch.as_tensor(y[i : i + batch_size], device=device))
        eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype)
        out.append((mu + torch.exp(0.5 * logvar) * eps).float().cpu().numpy())
    return np.concatenate(out)


def leakage(model, data, rng: np.random.Generator, *, num_images: int = 1000, min_count: int = 20) -> dict[str, float]:
    """ROC AUC of a sampled code ``z ~ q(z | x, y)`` for each conditioned label (see the module docstring).

    Args:
        model: a cvae (in eval mode is used; its mode is restored).
        data: held-out data with ``sample_labelled(n, rng)`` (CelebA's val partition, a ground-truth
            dataset).
        num_images: images drawn (with replacement on CelebA).
        min_count: labels with fewer positives or negatives get nan (see :func:`attribute_auc`).

    Returns:
        ``{label name: max over dimensions of max(AUC, 1 − AUC)}`` (float, nan when undefined).
    """
    was_training = model.training
    model.eval()
    try:
        images, labels = data.sample_labelled(num_images, rng)
        y = labels_from(model.config, data, labels)
        device = next(model.parameters()).device
        z = _sampled_codes(model, images, y, torch.Generator(device=device).manual_seed(int(rng.integers(2**63))))
    finally:
        model.train(was_training)
    auc, _ = attribute_auc(z, y > 0, min_count=min_count)
    return {name: float(np.nanmax(auc[:, a])) if not np.isnan(auc[:, a]).all() else float("nan")
            for a, name in enumerate(label_names(model.config))}


@torch.no_grad()
def control(model, data, classifier: Callable[[np.ndarray], np.ndarray], classifier_names: tuple[str, ...],
            rng: np.random.Generator, *, num_images: int = 256, batch_size: int = 64) -> dict[str, float]:
    """Classifier Δp of each conditioned attribute between ``y_a = +1`` and ``y_a = −1`` on the same ``z``.

    For real held-out images ``x`` with labels ``y``: ``z = mu(x, y)``; for each conditioned
    attribute ``a``, decode ``(z, y with y_a = +1)`` and ``(z, y with y_a = −1)`` (Bernoulli means),
    classify both, ``Δp_a`` = mean over images of ``p(a | +1) − p(a | −1)``.

    Args:
        model: a cvae conditioned on CelebA attributes.
        data: CelebA's val partition (``sample_labelled``).
        classifier: images ``(n, 3, 64, 64)`` in [0, 1] → probabilities ``(n, A)``.
        classifier_names: the ``A`` attribute names of the classifier's outputs.

    Returns:
        ``{attribute: Δp}`` in [−1, 1] for each conditioned attribute the classifier knows, and
        ``"mean"`` over them.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        images, labels = data.sample_labelled(num_images, rng)
        y = torch.as_tensor(labels_from(model.config, data, labels), device=device)
        out: dict[str, float] = {}
        for a, name in enumerate(model.config.conditioned_attributes or ()):
            if name not in classifier_names:
                continue
            k = classifier_names.index(name)
            deltas = []
            for i in range(0, len(images), batch_size):
                x = torch.as_tensor(images[i : i + batch_size], device=device)
                yb = y[i : i + batch_size]
                z = model.representation(x, yb)
                probs = []
                for value in (1.0, -1.0):
                    edited = yb.clone()
                    edited[:, a] = value
                    decoded = torch.sigmoid(model.decode(z, edited)).float().cpu().numpy()
                    probs.append(np.asarray(classifier(decoded), dtype=np.float64)[:, k])
                deltas.append(probs[0] - probs[1])
            out[name] = float(np.concatenate(deltas).mean())
    finally:
        model.train(was_training)
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bool masks ``(n, H, W)`` → intersection over union ``(n,)`` (0 where both are empty)."""
    return (a & b).sum(axis=(1, 2)) / np.maximum((a | b).sum(axis=(1, 2)), 1)


@torch.no_grad()
def conditioned_value_wins(model, data: GroundTruthData, factors: np.ndarray,
                           render: Callable[[np.ndarray], np.ndarray] | None = None, *,
                           threshold: float = 0.5, batch_size: int = 256) -> dict[str, float]:
    """How often a cvae draws the value of the conditioned factor it is given, on ground-truth images.

    For each image ``x`` (factors ``f``) and each value ``v`` of the conditioned factor: encode
    ``z = mu(x, y(f))`` with the image's own label, decode ``(z, onehot(v))``, threshold the
    Bernoulli means of the first channel at ``threshold``; render the targets ``f`` with the
    factor set to each value ``u`` (thresholded at 0.5). ``v`` *wins* on ``x`` when the decode's IoU with the target of ``v``
    is higher than with every other target. A decoder that ignores ``y`` wins each ``v`` on about
    the share of images whose own value is ``v``; one that draws what ``y`` says, on nearly all.
    (Conditional generation of a CVAE, Sohn et al. 2015, judged by the masks' IoU against the
    ground-truth renderer instead of by eye.)

    Args:
        model: a cvae conditioned on a factor of ``data`` (``config.conditioned_factor``).
        data: the ground-truth data the model was trained on (its ``images_from_factors`` gives the
            images that are encoded).
        factors: int ``(n, num_factors)``, the held-out images' factors.
        render: factors ``(n, num_factors)`` → images ``(n, C, H, W)`` in [0, 1] of the targets
            (default ``data.images_from_factors``; e.g. the procedural :class:`~betasweep.data.Shapes`
            renderer on the full-resolution grid).
        threshold: where a decoded Bernoulli mean counts as foreground.

    Returns:
        ``{"<factor>_<v>": share of the ``n`` images on which ``v`` wins}`` (floats in [0, 1]).

    Raises:
        ValueError: the model is not conditioned on a ground-truth factor, or ``factors`` is not
            ``(n, num_factors)``.
    """
    name = getattr(model.config, "conditioned_factor", None)
    if not getattr(model, "conditional", False) or name is None:
        raise ValueError("conditioned_value_wins needs a cvae conditioned on a ground-truth factor (conditioned_factor)")
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(data.factor_sizes):
        raise ValueError(f"factors must be (n, {len(data.factor_sizes)}), got shape {factors.shape}")
    render = render or data.images_from_factors
    column, values = data.factor_names.index(name), model.config.label_dim
    targets = []  # targets[u]: (n, H, W) bool, every image with the factor set to u
    for u in range(values):
        changed = factors.copy()
        changed[:, column] = u
        targets.append(np.asarray(render(changed))[:, 0] > 0.5)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        decoded = [[] for _ in range(values)]
        for i in range(0, len(factors), batch_size):
            f = factors[i : i + batch_size]
            x = torch.as_tensor(data.images_from_factors(f), device=device)
            z = model.representation(x, torch.as_tensor(labels_from(model.config, data, f), device=device))
            for v in range(values):
                logits = model.decode(z, torch.eye(values, device=device)[[v] * len(z)])
                decoded[v].append(torch.sigmoid(logits).float().cpu().numpy()[:, 0] > threshold)
    finally:
        model.train(was_training)
    wins = {}
    for v in range(values):
        masks = np.concatenate(decoded[v])
        scores = np.stack([_iou(masks, target) for target in targets], axis=1)  # (n, values)
        wins[f"{name}_{v}"] = float(np.mean(scores[:, v] > np.delete(scores, v, axis=1).max(axis=1)))
    return wins
