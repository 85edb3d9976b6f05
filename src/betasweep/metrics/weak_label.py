"""The Higgins et al. β-VAE metric with labelled attributes as weak factors (for CelebA).

Higgins et al. 2017 (ICLR, "β-VAE: Learning basic visual concepts with a constrained variational
framework", Sec. 3) define the metric on a simulator: fix one generative factor ``k``, draw the
others independently, and check that a linear classifier can tell ``k`` from the mean absolute
difference of the two images' codes. For real data without a simulator they suggest using
labelled attributes as weak factors. Here, for each point:

1. pick an attribute ``k`` uniformly from the (optional) subset;
2. draw ``batch_size`` pairs: ``x1`` uniformly from all images, then ``x2`` uniformly from the
   *other* images that have the same value of ``k`` as ``x1`` (``x1`` itself only when it is the
   sole image with that value). The shared value is therefore drawn per pair, with the
   probability of its empirical frequency, exactly as the simulator protocol draws factor ``k``
   of the first image from the data distribution;
3. feature = mean over the pairs of ``|mu(x1) − mu(x2)|``, label = ``k``.

A logistic regression (scikit-learn defaults, as in :mod:`betasweep.metrics.beta_vae` and
disentanglement_lib) is fitted on ``num_train`` points and scored on ``num_train`` and on
``num_eval`` further points.

**This approximates the simulator protocol, it does not reproduce it.** The other attributes of
``x2`` are not resampled independently: they follow the data's conditional distribution given
attribute ``k``, so correlated attributes (Heavy_Makeup with Wearing_Lipstick, Male with No_Beard,
phi ≈ ±0.5 to 0.8 on CelebA) are shared more often than chance and make some labels hard to tell
apart whatever the representation; the many factors CelebA does not label (pose, lighting,
background, identity) vary freely. Compare scores across models on the same images and rng, not
with the simulator datasets' scores.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from betasweep.metrics.beta_vae import fit_and_score
from betasweep.metrics.encoding import RepresentationFn, encode_images

__all__ = ["encode_images", "sample_attribute_pairs", "weak_label_features", "weak_label_score"]


def sample_attribute_pairs(
    attributes: np.ndarray, rng: np.random.Generator, num_points: int, batch_size: int, subset: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the metric's labels and image pairs (steps 1 and 2 of the module docstring).

    Args:
        attributes: bool ``(N, A)``.
        rng: the metric's randomness.
        num_points: points to draw.
        batch_size: pairs per point.
        subset: int ``(K,)`` attribute columns that may be labels.

    Returns:
        ``(labels, first, second)``: int64 ``(num_points,)`` attribute columns, and int64
        ``(num_points, batch_size)`` image indices with
        ``attributes[first[i], labels[i]] == attributes[second[i], labels[i]]``.
    """
    num_images = len(attributes)
    labels = subset[rng.integers(len(subset), size=num_points)]
    first = rng.integers(num_images, size=(num_points, batch_size))
    second = np.empty_like(first)
    for k in np.unique(labels):
        points = np.flatnonzero(labels == k)
        x1 = first[points]  # (p, batch_size)
        value = attributes[x1, k]
        # Images sorted by value of k: the pool of value v is a contiguous block of `order`.
        order = np.argsort(attributes[:, k], kind="stable")
        rank = np.empty(num_images, dtype=np.int64)
        rank[order] = np.arange(num_images)
        num_false = int(num_images - attributes[:, k].sum())
        start = np.where(value, num_false, 0)
        size = np.where(value, num_images - num_false, num_false)
        # Uniform over the pool without x1: draw from size - 1 slots and skip x1's slot.
        offset = np.floor(rng.random(x1.shape) * np.maximum(size - 1, 1)).astype(np.int64)
        own = rank[x1] - start
        offset = np.where((size > 1) & (offset >= own), offset + 1, offset)
        second[points] = order[start + offset]
    return labels, first, second


def weak_label_features(representation: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Mean absolute code difference of each point's pairs: ``(N, d)`` codes → float64 ``(points, d)``."""
    features = np.empty((first.shape[0], representation.shape[1]), dtype=np.float64)
    step = max(1, 2**22 // max(1, first.shape[1] * representation.shape[1]))  # bound the (p, b, d) temporary
    for start in range(0, len(first), step):
        block = slice(start, start + step)
        features[block] = np.abs(representation[first[block]] - representation[second[block]]).mean(axis=1)
    return features


def weak_label_score(
    attributes: np.ndarray,
    representation: np.ndarray | RepresentationFn,
    rng: np.random.Generator,
    *,
    images: Callable[[np.ndarray], np.ndarray] | np.ndarray | None = None,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    attribute_subset: list[int] | list[str] | None = None,
    attribute_names: tuple[str, ...] | None = None,
    encode_batch_size: int = 512,
) -> dict[str, float]:
    """The weak-label Higgins score (see the module docstring for the protocol and its limits).

    Args:
        attributes: bool ``(N, A)``, the images' labels (e.g. ``CelebA.attributes``).
        representation: the codes, float ``(N, d)``, row ``i`` for image ``i``; or a
            representation function ``(n, C, H, W) float32 → (n, d)``, which then encodes each of
            the ``images`` once (:func:`encode_images`).
        rng: the metric's randomness; pass a freshly seeded one to score every model on the same pairs.
        images: the ``N`` images (array or function of indices); required with a representation function.
        batch_size: pairs averaged into one feature (64, as the core metric).
        num_train, num_eval: points to fit and to score the classifier (10,000 and 5,000).
        attribute_subset: attribute columns (ints) or names that may be labels; default all.
        attribute_names: names of the ``A`` columns, needed when the subset is given by name.
        encode_batch_size: images per call of a representation function.

    Returns:
        ``{"train_accuracy": float, "eval_accuracy": float}`` in [0, 1]; chance is
        ``1 / number of attributes in the subset``.

    Raises:
        ValueError: bad counts, shapes, or subset.
    """
    attributes = np.asarray(attributes, dtype=bool)
    if attributes.ndim != 2 or len(attributes) < 2:
        raise ValueError(f"attributes must be a bool (N >= 2, A) array, got shape {attributes.shape}")
    if min(batch_size, num_train, num_eval) < 1:
        raise ValueError(f"batch_size, num_train and num_eval must be >= 1, got {batch_size}, {num_train}, {num_eval}")
    subset = _subset_columns(attribute_subset, attribute_names, attributes.shape[1])
    if callable(representation):
        if images is None:
            raise ValueError("a representation function needs the images to encode")
        representation = encode_images(representation, images, len(attributes), batch_size=encode_batch_size)
    representation = np.asarray(representation, dtype=np.float64)
    if representation.ndim != 2 or len(representation) != len(attributes):
        raise ValueError(f"representation must be (N={len(attributes)}, d), got shape {representation.shape}")
    labels, first, second = sample_attribute_pairs(attributes, rng, num_train + num_eval, batch_size, subset)
    features = weak_label_features(representation, first, second)
    return fit_and_score(features[:num_train], labels[:num_train], features[num_train:], labels[num_train:])


def _subset_columns(subset, names: tuple[str, ...] | None, num_attributes: int) -> np.ndarray:
    """Attribute columns of ``subset`` (ints or names): sorted unique int64 ``(K,)``, K >= 2."""
    if subset is None:
        return np.arange(num_attributes)
    columns = []
    for item in subset:
        if isinstance(item, str):
            if names is None or item not in names:
                raise ValueError(f"unknown attribute {item!r} (pass attribute_names to select by name)")
            columns.append(names.index(item))
        elif 0 <= int(item) < num_attributes:
            columns.append(int(item))
        else:
            raise ValueError(f"attribute column {item} out of range [0, {num_attributes})")
    columns = np.unique(columns)
    if len(columns) < 2:
        raise ValueError("the attribute subset needs at least 2 attributes (the score classifies among them)")
    return columns
