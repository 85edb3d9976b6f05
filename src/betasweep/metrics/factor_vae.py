"""The FactorVAE disentanglement score of Kim & Mnih 2018 ("Disentangling by Factorising", ICML, Sec. 4).

Protocol and defaults follow google-research/disentanglement_lib,
``evaluation/metrics/factor_vae.py`` (``compute_factor_vae``) with the gin bindings of its
``unsupervised_study_v1`` (batch 64, 10,000 train and 5,000 eval points, 10,000 images for the
global variances, ``prune_dims.threshold = 0.05``):

1. the variance of every code dimension over ``num_variance_estimate`` images (``ddof=1``);
   dimensions whose **standard deviation** is below ``prune_threshold`` are pruned (dlib's
   ``_prune_dims`` compares ``sqrt(variance)`` with the threshold);
2. each point picks a factor ``k`` uniformly, draws ``batch_size`` factor vectors with factor ``k``
   fixed to one value, and votes for the active dimension of least variance relative to its global
   variance (``argmin_j Var_batch[z_j] / Var[z_j]``);
3. the majority-vote classifier maps each dimension to the factor it got most votes from; the
   accuracy is the share of votes it gets right, on the ``num_train`` points it was built from
   (``train_accuracy``) and on ``num_eval`` further points (``eval_accuracy``).

Unlike the Higgins score, a representation that leaves a factor out cannot score 1: the points of
that factor vote for dimensions that belong to other factors (Kim & Mnih 2018, Sec. 4).
"""

from __future__ import annotations

import numpy as np

from betasweep.metrics.encoding import Encoding, GridEncoding, RepresentationFn, check_counts, encoding_of

__all__ = ["factor_vae_score"]


def factor_vae_score(
    data,
    representation_fn: RepresentationFn | Encoding,
    rng: np.random.Generator,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
) -> dict[str, float]:
    """Kim & Mnih 2018 FactorVAE score on ground-truth data, each distinct image encoded once.

    Args:
        data: ground-truth data (:class:`~betasweep.data.base.GroundTruthData`). The score needs a
            simulator (a factor held fixed while the others vary): it is not defined on CelebA.
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or a
            :class:`~betasweep.metrics.encoding.GridEncoding` of ``data`` shared with other metrics.
        rng: the metric's randomness.
        batch_size: images per point, one factor fixed (64).
        num_train, num_eval: points that build and that test the majority-vote classifier (10,000, 5,000).
        num_variance_estimate: images for the global variances (10,000).
        prune_threshold: dimensions with a standard deviation below it are pruned (0.05).

    Returns:
        ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``: accuracies in ``[0, 1]``
        (chance about ``1 / num_factors``; 0.0 when no dimension is active), and the number of
        unpruned dimensions (an int; dlib reports ``len`` of its boolean mask, i.e. all ``d``).

    Raises:
        ValueError: a count < 2 for the batch (a variance needs two images), < 1 otherwise;
            ``prune_threshold`` < 0; data that is not ground-truth data; a representation that is not ``(n, d)``.
    """
    check_counts(num_train=num_train, num_eval=num_eval, num_variance_estimate=num_variance_estimate)
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 2):
        raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 2 (a variance needs two images)")
    if not num_variance_estimate >= 2:
        raise ValueError(f"num_variance_estimate={num_variance_estimate!r}: expected an integer >= 2")
    if not prune_threshold >= 0:
        raise ValueError(f"prune_threshold={prune_threshold!r}: expected a number >= 0")
    encoding = encoding_of(data, representation_fn)
    if not isinstance(encoding, GridEncoding):
        raise ValueError("the FactorVAE score needs ground-truth data (a simulator that holds one factor fixed); "
                         f"got {type(data).__name__}")
    grid = encoding.data
    variance_codes = encoding.codes_of_factors(grid.sample_factors(num_variance_estimate, rng))
    global_variances = np.var(variance_codes, axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold  # (d,)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    train_votes = _votes(encoding, rng, batch_size, num_train, global_variances, active)
    classifier = np.argmax(train_votes, axis=0)  # (num_active,): the factor each dimension stands for
    eval_votes = _votes(encoding, rng, batch_size, num_eval, global_variances, active)
    columns = np.arange(train_votes.shape[1])
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": int(active.sum()),
    }


def _votes(encoding: GridEncoding, rng: np.random.Generator, batch_size: int, num_points: int,
           global_variances: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Votes int64 ``(num_factors, num_active)``: row = the fixed factor, column = the argmin dimension.

    Draws, per point, the fixed factor ``k`` and ``batch_size`` factor vectors whose ``k``-th
    column is set to the first vector's, as dlib's ``_generate_training_sample`` (vectorised over
    points; the distribution is the same).
    """
    grid = encoding.data
    labels = rng.integers(grid.num_factors, size=num_points)
    factors = np.stack([rng.integers(0, size, size=(num_points, batch_size)) for size in grid.factor_sizes], axis=-1)
    points = np.arange(num_points)
    factors[points, :, labels] = factors[points, :1, labels]  # (points, batch, num_factors)
    scale = global_variances[active]
    argmin = np.empty(num_points, dtype=np.int64)
    step = max(1, 2**21 // batch_size)  # bounds the (step, batch, d) temporaries
    for start in range(0, num_points, step):
        block = slice(start, start + step)
        local = np.var(encoding.codes_of_factors(factors[block])[..., active], axis=1, ddof=1)  # (step, num_active)
        with np.errstate(divide="ignore", invalid="ignore"):  # a constant dimension kept by prune_threshold=0
            argmin[block] = np.argmin(local / scale, axis=1)
    votes = np.zeros((grid.num_factors, int(active.sum())), dtype=np.int64)
    np.add.at(votes, (labels, argmin), 1)
    return votes
