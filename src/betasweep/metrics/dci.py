"""Disentanglement, Completeness and Informativeness of Eastwood & Williams 2018 ("A Framework for
the Quantitative Evaluation of Disentangled Representations", ICLR, Sec. 2), as
disentanglement_lib computes them.

Protocol and defaults follow google-research/disentanglement_lib, ``evaluation/metrics/dci.py``
(``compute_dci``, ``compute_importance_gbt``) with the gin bindings of its
``unsupervised_study_v1`` (``dci.num_train = 10000``, ``dci.num_test = 5000``):

1. ``num_train`` and ``num_eval`` points: factor vectors drawn uniformly and their codes;
2. per factor ``k``, a ``GradientBoostingClassifier()`` (scikit-learn defaults: 100 stages of depth-3
   trees) predicts the factor's class from the whole code; the importance matrix ``R[j, k]`` is
   the absolute feature importance of dimension ``j``;
3. disentanglement = ``Σ_j ρ_j (1 − H_K(R[j, :]))`` with ``ρ_j`` dimension ``j``'s share of all
   importance and ``H_K`` the entropy in base ``K`` of the row normalised; completeness the same
   over columns (base ``d``); informativeness = mean over factors of the classifier's accuracy on
   the eval points (dlib's ``informativeness_test``, an accuracy, not an error).

**Cost.** scikit-learn's ``GradientBoostingClassifier`` fits one tree per class per stage (one for a
binary factor): dSprites' factors have 3 + 6 + 10 + 16 + 16 = 51 classes, so 5,100 trees on 10,000
points, single-threaded; see :func:`dci` for measured times. dlib's estimator is kept as the default
so that values stay comparable with published ones.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier

from betasweep.metrics.encoding import Encoding, RepresentationFn, check_counts, encoding_of

__all__ = ["dci", "dci_completeness", "dci_disentanglement", "importance_matrix"]


def importance_matrix(codes_train: np.ndarray, factors_train: np.ndarray, codes_eval: np.ndarray,
                      factors_eval: np.ndarray, rng: np.random.Generator,
                      n_jobs: int | None = -1) -> tuple[np.ndarray, float, float]:
    """Gradient-boosted trees' importances (dlib's ``compute_importance_gbt``).

    Args:
        codes_train, codes_eval: float ``(n, d)``.
        factors_train, factors_eval: int ``(n, K)``.
        rng: seeds each classifier (``random_state``; scikit-learn breaks ties between equally good
            splits at random, and dlib leaves it unseeded).
        n_jobs: processes fitting the factors' classifiers side by side (joblib; -1: every CPU this
            process may use, 1 or None: in this process). Each classifier has its own seed, drawn
            before any is fitted, so the result does not depend on ``n_jobs``.

    Returns:
        ``(R, train_accuracy, eval_accuracy)``: float64 ``(d, K)`` importances, and the mean over
        factors of the classifiers' accuracies. Factors with a single value among the train points
        get an importance column of zeros and are left out of the accuracies.
    """
    d, num_factors = codes_train.shape[1], factors_train.shape[1]
    matrix = np.zeros((d, num_factors))
    seeds = rng.integers(2**31 - 1, size=num_factors)
    fitted = [k for k in range(num_factors) if len(np.unique(factors_train[:, k])) >= 2]
    # The factors with most classes (most trees) first, so that parallel workers finish together.
    fitted.sort(key=lambda k: -len(np.unique(factors_train[:, k])))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_factor)(codes_train, factors_train[:, k], codes_eval, factors_eval[:, k], int(seeds[k]))
        for k in fitted
    )
    for k, (importances, _, _) in zip(fitted, results):
        matrix[:, k] = importances
    train_acc = [train for _, train, _ in results]
    eval_acc = [evaluated for _, _, evaluated in results]
    mean = (lambda values: float(np.mean(values)) if values else float("nan"))
    return matrix, mean(train_acc), mean(eval_acc)


def _fit_factor(codes_train: np.ndarray, factor_train: np.ndarray, codes_eval: np.ndarray,
                factor_eval: np.ndarray, seed: int) -> tuple[np.ndarray, float, float]:
    """One factor's classifier: ``(|feature importances| (d,), train accuracy, eval accuracy)``."""
    model = GradientBoostingClassifier(random_state=seed)
    model.fit(codes_train, factor_train)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(codes_train) == factor_train)),
            float(np.mean(model.predict(codes_eval) == factor_eval)))


def dci_disentanglement(matrix: np.ndarray) -> float:
    """``Σ_j ρ_j (1 − H_K(R[j, :]))`` of an importance matrix ``(d, K)`` (dlib's ``disentanglement``)."""
    per_code = 1.0 - scipy.stats.entropy(matrix.T + 1e-11, base=matrix.shape[1])
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    return float(np.sum(per_code * matrix.sum(axis=1) / matrix.sum()))


def dci_completeness(matrix: np.ndarray) -> float:
    """``Σ_k ρ_k (1 − H_d(R[:, k]))`` of an importance matrix ``(d, K)`` (dlib's ``completeness``)."""
    per_factor = 1.0 - scipy.stats.entropy(matrix + 1e-11, base=matrix.shape[0])
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    return float(np.sum(per_factor * matrix.sum(axis=0) / matrix.sum()))


def dci(data, representation_fn: RepresentationFn | Encoding, rng: np.random.Generator, *,
        num_train: int = 10_000, num_eval: int = 5_000, n_jobs: int | None = -1) -> dict[str, float]:
    """Eastwood & Williams 2018 DCI with gradient-boosted trees (dlib's estimator), from one shared encoding.

    Args:
        data: ground-truth data (factors drawn uniformly), or a labelled image set such as CelebA's
            val partition (attributes as 0/1 factors; disjoint train and eval images, see
            :meth:`~betasweep.metrics.encoding.LabelledEncoding.observations`).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or an
            :class:`~betasweep.metrics.encoding.Encoding` of ``data`` shared with other metrics.
        rng: the metric's randomness (points and the classifiers' seeds).
        num_train, num_eval: points to fit and to score the classifiers (10,000 and 5,000; dlib's ``num_test``).
        n_jobs: processes fitting the factors' classifiers side by side (see :func:`importance_matrix`;
            the values do not depend on it).

    Returns:
        ``{"dci_disentanglement", "dci_completeness", "dci_informativeness"}`` in ``[0, 1]``
        (informativeness: mean eval accuracy of the factor classifiers). With one code dimension,
        completeness is not defined (entropy in base 1) and is NaN.

    Raises:
        ValueError: a count < 1; a representation that is not ``(n, d)``.

    Cost (the slow metric of the panel): one ``GradientBoostingClassifier`` per factor, 100 stages,
    one tree per class per stage; on dSprites (51 classes, d = 10 continuous codes) at the defaults
    156 s of CPU per model (562 s wall on 2 heavily shared cores), 34 s at 2,000 / 1,000 points;
    20 s on codes with few distinct values (the factor values). The encoding is not the cost. The
    factors' classifiers are independent, so ``n_jobs`` processes fit them side by side (dSprites'
    two 16-class factors bound the gain: about 2x on 2 cores).
    """
    check_counts(num_train=num_train, num_eval=num_eval)
    encoding = encoding_of(data, representation_fn)
    codes_train, factors_train, codes_eval, factors_eval = encoding.observations(num_train, num_eval, rng)
    matrix, _, eval_accuracy = importance_matrix(codes_train, factors_train, codes_eval, factors_eval, rng, n_jobs)
    with np.errstate(divide="ignore", invalid="ignore"):
        completeness = dci_completeness(matrix) if matrix.shape[0] > 1 else float("nan")
    return {
        "dci_disentanglement": dci_disentanglement(matrix),
        "dci_completeness": completeness,
        "dci_informativeness": eval_accuracy,
    }
