"""The β-VAE disentanglement metric of Higgins et al. 2017, Sec. 3 ("linear classifier" score).

Protocol and defaults follow google-research/disentanglement_lib,
``evaluation/metrics/beta_vae.py`` (``compute_beta_vae_sklearn``): each point picks a factor ``k``
uniformly, draws two batches of ``batch_size`` factor vectors, copies factor ``k`` of the first
batch into the second, and takes the mean over the batch of ``|rep(x1) − rep(x2)|`` as the feature
with label ``k``. A logistic regression (scikit-learn defaults) is fitted on ``num_train`` points
and scored on ``num_train`` (``train_accuracy``) and on ``num_eval`` further points
(``eval_accuracy``).

:func:`beta_vae_score` draws every factor vector first and encodes each distinct image once: the
representation is deterministic, so this gives the same features as re-encoding all
``(num_train + num_eval) · 2 · batch_size`` images (1.92 million at the defaults), which
:func:`beta_vae_score_reference` does, on the same pairs, for comparison. The codes live in a
:class:`~betasweep.metrics.encoding.GridEncoding`, which the other metrics of a panel share.
"""

from __future__ import annotations

import warnings
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from betasweep.data.base import GroundTruthData
from betasweep.metrics.encoding import GridEncoding, RepresentationFn, check_counts, encoding_of

__all__ = ["beta_vae_score", "beta_vae_score_reference", "fit_and_score", "sample_pair_factors"]

def sample_pair_factors(
    data: GroundTruthData, rng: np.random.Generator, num_points: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the metric's factor pairs: for each point a factor ``k`` uniformly, two batches of factor
    vectors uniformly, and factor ``k`` of the first batch copied into the second.

    Vectorised over the points (disentanglement_lib draws them one point at a time from a
    ``RandomState``; the distribution is the same).

    Returns:
        ``(labels, factors1, factors2)``: int64 ``(num_points,)``, and two int64 arrays
        ``(num_points, batch_size, num_factors)`` that agree on factor ``labels[i]`` in point ``i``.
    """
    labels = rng.integers(data.num_factors, size=num_points)
    shape = (num_points, batch_size)
    factors1 = np.stack([rng.integers(0, size, size=shape) for size in data.factor_sizes], axis=-1)
    factors2 = np.stack([rng.integers(0, size, size=shape) for size in data.factor_sizes], axis=-1)
    points = np.arange(num_points)
    factors2[points, :, labels] = factors1[points, :, labels]
    return labels, factors1, factors2


def fit_and_score(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray) -> dict[str, float]:
    """The Higgins score's classifier step: fit a logistic regression, report its accuracies.

    scikit-learn's defaults (lbfgs, 100 iterations, L2 with ``C=1``), as disentanglement_lib's
    ``compute_beta_vae_sklearn`` (Higgins et al. 2017, Sec. 3); shared by :func:`beta_vae_score`,
    :func:`beta_vae_score_reference` and the weak-label variant
    (:func:`~betasweep.metrics.weak_label.weak_label_score`).

    Args:
        train_x, eval_x: float features ``(points, d)``.
        train_y, eval_y: int labels ``(points,)`` (the fixed factor or attribute).

    Returns:
        ``{"train_accuracy": float, "eval_accuracy": float}`` in ``[0, 1]``.
    """
    model = LogisticRegression()
    # The matrices are small (points x d): multi-threaded BLAS made the fit ~40x slower (9 s instead
    # of 0.2 s for 2,000 points) on 2 shared cores, so it runs single-threaded.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # lbfgs may stop at its default 100 iterations on unscaled features; disentanglement_lib
        # keeps these defaults, and so do we, so that scores stay comparable with published ones.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x, train_y)
    return {
        "train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
        "eval_accuracy": float(np.mean(model.predict(eval_x) == eval_y)),
    }


def beta_vae_score(
    data: GroundTruthData,
    representation_fn: RepresentationFn | GridEncoding,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    encode_batch_size: int = 2048,
) -> dict[str, float]:
    """Higgins et al. 2017 β-VAE metric, encoding each distinct image once.

    Args:
        data: ground-truth data whose images are a deterministic function of the factors.
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or a
            :class:`~betasweep.metrics.encoding.GridEncoding` of ``data`` shared with other metrics
            (images it already holds are not encoded again).
        rng: the metric's randomness; pass a freshly seeded one to score every model on the same
            factor pairs.
        batch_size: image pairs averaged into one feature (64).
        num_train, num_eval: points to fit and to score the classifier (10,000 and 5,000).
        encode_batch_size: images per call of ``representation_fn``.

    Returns:
        ``{"train_accuracy": float, "eval_accuracy": float}``, each in ``[0, 1]``; chance is
        ``1 / data.num_factors``.

    Raises:
        ValueError: a count is < 1; the representation is not ``(n, d)``.
    """
    check_counts(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    encoding = encoding_of(data, representation_fn, encode_batch_size=encode_batch_size)
    if not isinstance(encoding, GridEncoding):
        raise ValueError("the Higgins score needs ground-truth data (a simulator); on CelebA use weak_label_score")
    labels, factors1, factors2 = sample_pair_factors(data, rng, num_train + num_eval, batch_size)
    flat = np.stack([data.flat_index(factors1.reshape(-1, data.num_factors)),
                     data.flat_index(factors2.reshape(-1, data.num_factors))])  # (2, points * batch)
    encoding.codes(np.unique(flat))  # every distinct image encoded once, in one pass
    flat = flat.reshape(2, len(labels), batch_size)
    features = np.empty((len(labels), encoding.num_dims))  # (points, d)
    step = max(1, 2**21 // batch_size)  # bounds the (step, batch, d) temporaries
    for start in range(0, len(labels), step):
        block = slice(start, start + step)
        features[block] = np.abs(encoding.codes(flat[0, block]) - encoding.codes(flat[1, block])).mean(axis=1)
    return fit_and_score(features[:num_train], labels[:num_train], features[num_train:], labels[num_train:])


def beta_vae_score_reference(
    data: GroundTruthData,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
) -> dict[str, float]:
    """The same score computed as disentanglement_lib does: render and encode both batches of every point.

    Scores the same factor pairs as :func:`beta_vae_score` (same ``rng``, same
    :func:`sample_pair_factors`) but renders and encodes all ``(num_train + num_eval) · 2 ·
    batch_size`` images, one point at a time; kept as the baseline of ``benchmarks/run.py`` and
    the check of the fast path.
    """
    labels, factors1, factors2 = sample_pair_factors(data, rng, num_train + num_eval, batch_size)
    features = np.stack([
        np.abs(np.asarray(representation_fn(data.images_from_factors(f1, rng)), dtype=np.float64)
               - np.asarray(representation_fn(data.images_from_factors(f2, rng)), dtype=np.float64)).mean(axis=0)
        for f1, f2 in zip(factors1, factors2)
    ])  # (points, d)
    train_x, train_y = features[:num_train], labels[:num_train]
    eval_x, eval_y = features[num_train:], labels[num_train:]
    return fit_and_score(train_x, train_y, eval_x, eval_y)
