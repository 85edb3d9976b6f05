"""The Separated Attribute Predictability (SAP) score of Kumar et al. 2018 ("Variational Inference
of Disentangled Latent Concepts from Unlabeled Observations", ICLR, Sec. 3), as disentanglement_lib
computes it.

Protocol and defaults follow google-research/disentanglement_lib,
``evaluation/metrics/sap_score.py`` (``compute_sap``) with the gin bindings of its
``unsupervised_study_v1`` (``num_train = 10000``, ``num_test = 5000``,
``continuous_factors = False``):

1. ``num_train`` and ``num_eval`` points: factor vectors drawn uniformly and their codes;
2. for every code dimension ``j`` and factor ``k``, a linear SVM on the single feature ``z_j``
   (``LinearSVC(C=0.01, class_weight="balanced")``) fitted on the train points; the score matrix
   entry is its accuracy on the eval points (the "discrete factors" path);
3. SAP = mean over factors of the gap between the two best dimensions' accuracies.

One feature and a linear boundary can only cut ``z_j`` once per one-vs-rest class, so a factor
with many values (dSprites' 40 orientations, 32 positions) is predicted poorly even from its
own dimension: the score is small in absolute terms (disentanglement_lib gives 0.28 for the factor
values themselves on dSprites); compare models with each other.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from betasweep.metrics.encoding import Encoding, RepresentationFn, check_counts, encoding_of

__all__ = ["sap_score", "sap_score_matrix"]


def sap_score_matrix(codes_train: np.ndarray, factors_train: np.ndarray, codes_eval: np.ndarray,
                     factors_eval: np.ndarray) -> np.ndarray:
    """Eval accuracy of a one-feature ``LinearSVC(C=0.01, class_weight="balanced")`` per (dimension, factor).

    Args:
        codes_train, codes_eval: float ``(n, d)``.
        factors_train, factors_eval: int ``(n, K)``.

    Returns:
        float64 ``(d, K)``; a factor with a single value among the train points gets NaN (nothing to classify).
    """
    d, num_factors = codes_train.shape[1], factors_train.shape[1]
    matrix = np.full((d, num_factors), np.nan)
    # dual=False: the primal problem, what scikit-learn's dual="auto" picks for n_samples > n_features,
    # deterministic (the dual solver shuffles with a random state); same optimum as dlib's default.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(num_factors):
            if len(np.unique(factors_train[:, k])) < 2:
                continue
            for j in range(d):
                classifier = LinearSVC(C=0.01, class_weight="balanced", dual=False)
                classifier.fit(codes_train[:, j : j + 1], factors_train[:, k])
                matrix[j, k] = np.mean(classifier.predict(codes_eval[:, j : j + 1]) == factors_eval[:, k])
    return matrix


def sap_score(data, representation_fn: RepresentationFn | Encoding, rng: np.random.Generator, *,
              num_train: int = 10_000, num_eval: int = 5_000) -> dict[str, float]:
    """Kumar et al. 2018 SAP score (discrete factors, as dlib's default), from one shared encoding.

    Args:
        data: ground-truth data (factors drawn uniformly), or a labelled image set such as CelebA's
            val partition (attributes as 0/1 factors; disjoint train and eval images, see
            :meth:`~betasweep.metrics.encoding.LabelledEncoding.observations`).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or an
            :class:`~betasweep.metrics.encoding.Encoding` of ``data`` shared with other metrics.
        rng: the metric's randomness.
        num_train, num_eval: points to fit and to score the classifiers (10,000 and 5,000; dlib's
            ``num_test``).

    Returns:
        ``{"sap": float}`` in ``[0, 1]``; factors constant among the train points are left out of
        the mean (NaN if none is left). With one dimension, the gap is to 0.

    Raises:
        ValueError: a count < 1; a representation that is not ``(n, d)``.

    Cost: ``d × sum(factor sizes)`` one-vs-rest SVM fits of ``num_train`` points (dSprites, d = 10:
    400 fits, about 2 s on one core).
    """
    check_counts(num_train=num_train, num_eval=num_eval)
    encoding = encoding_of(data, representation_fn)
    codes_train, factors_train, codes_eval, factors_eval = encoding.observations(num_train, num_eval, rng)
    matrix = sap_score_matrix(codes_train, factors_train, codes_eval, factors_eval)  # (d, K)
    keep = ~np.isnan(matrix).any(axis=0)
    if not keep.any():
        return {"sap": float("nan")}
    ranked = np.sort(matrix[:, keep], axis=0)[::-1]
    gap = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)
    return {"sap": float(np.mean(gap))}
