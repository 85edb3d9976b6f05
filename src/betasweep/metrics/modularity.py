"""Modularity and explicitness of Ridgeway & Mozer 2018 ("Learning deep disentangled embeddings with
the F-statistic loss", NeurIPS, Sec. 3), as disentanglement_lib computes them.

Protocol and defaults follow google-research/disentanglement_lib,
``evaluation/metrics/modularity_explicitness.py`` (``compute_modularity_explicitness``, ``modularity``,
``explicitness_per_factor``) and the gin bindings of its ``unsupervised_study_v1``
(``num_train = 10000``, ``num_test = 5000``, ``histogram_discretizer`` with 20 bins):

1. ``num_train`` and ``num_eval`` points: factor vectors drawn uniformly and the codes of their images;
2. modularity: the discrete mutual information ``I(z_j; v_k)`` of the train codes (20 equal-width bins
   per dimension, as MIG) and the factor classes; per dimension ``1 − Σ_{k≠k*} I_jk² / (I_jk*² (K − 1))``
   with ``k*`` its most informative factor (0 for a dimension with no information); the mean over dimensions;
3. explicitness: per factor, a logistic regression (scikit-learn's defaults, as dlib calls it) from the
   train codes standardised by the train mean and SD to the factor's class; the macro ROC AUC of its
   class probabilities on the eval points (one-vs-rest); the mean over factors.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

from betasweep.metrics.encoding import Encoding, RepresentationFn, check_counts, encoding_of
from betasweep.metrics.mig import discrete_mutual_info, histogram_discretize

__all__ = ["modularity_explicitness", "modularity_of"]


def modularity_of(mutual_information: np.ndarray) -> float:
    """Ridgeway & Mozer's modularity of a ``(d, K)`` mutual-information matrix (dlib's ``modularity``): float in [0, 1]."""
    squared = np.square(np.asarray(mutual_information, dtype=np.float64))
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - top) / (top * (squared.shape[1] - 1.0))
    score = 1.0 - delta
    score[top == 0.0] = 0.0
    return float(np.mean(score))


def _explicitness(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> tuple[float, float]:
    """Train and test ROC AUC of one factor's logistic regression (dlib's ``explicitness_per_factor``)."""
    clf = LogisticRegression().fit(train, y_train)
    classes = clf.classes_

    def auc(x, y):
        proba = clf.predict_proba(x)
        if len(classes) == 2:  # dlib's MultiLabelBinarizer gives two columns for two classes
            target = np.stack([y == classes[0], y == classes[1]], axis=1).astype(int)
        else:
            target = label_binarize(y, classes=classes)
        present = target.sum(axis=0) > 0  # a class absent from these points has no AUC (dlib would fail)
        return float(roc_auc_score(target[:, present], proba[:, present], average="macro"))

    return auc(train, y_train), auc(test, y_test)


def modularity_explicitness(data, representation_fn: RepresentationFn | Encoding, rng: np.random.Generator, *,
                            num_train: int = 10_000, num_eval: int = 5_000, num_bins: int = 20) -> dict[str, float]:
    """Ridgeway & Mozer 2018 modularity and explicitness (dlib's protocol), from one shared encoding.

    Args:
        data: ground-truth data (factors drawn uniformly).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or an
            :class:`~betasweep.metrics.encoding.Encoding` of ``data`` shared with other metrics.
        rng: the metric's randomness.
        num_train, num_eval: points (10,000 and 5,000: dlib's ``num_train``, ``num_test``).
        num_bins: equal-width bins per code dimension for the mutual information (20).

    Returns:
        ``{"modularity", "explicitness", "explicitness_train"}``, each in [0, 1]: dlib's
        ``modularity_score``, ``explicitness_score_test``, ``explicitness_score_train``. A factor
        with one class among the train points is left out of explicitness (no classifier to fit).

    Raises:
        ValueError: a count < 1; a representation that is not ``(n, d)``.
    """
    check_counts(num_train=num_train, num_eval=num_eval, num_bins=num_bins)
    encoding = encoding_of(data, representation_fn)
    codes, factors, codes_eval, factors_eval = encoding.observations(num_train, num_eval, rng)
    info = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)  # (d, K)
    mean, sd = codes.mean(axis=0), codes.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)  # a constant dimension stays 0 (dlib divides by 0 and gets NaN)
    train, test = (codes - mean) / sd, (codes_eval - mean) / sd
    scores = [_explicitness(train, factors[:, k], test, factors_eval[:, k])
              for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    return {"modularity": modularity_of(info),
            "explicitness": float(np.mean([s[1] for s in scores])) if scores else float("nan"),
            "explicitness_train": float(np.mean([s[0] for s in scores])) if scores else float("nan")}
