"""The Mutual Information Gap of Chen et al. 2018 ("Isolating Sources of Disentanglement in
Variational Autoencoders", NeurIPS, Sec. 5), as disentanglement_lib computes it.

Protocol and defaults follow google-research/disentanglement_lib, ``evaluation/metrics/mig.py``
(``compute_mig``) with ``evaluation/metrics/utils.py`` and the gin bindings of its
``unsupervised_study_v1`` (``mig.num_train = 10000``, ``histogram_discretizer``, 20 bins):

1. ``num_train`` points: factor vectors drawn uniformly and the codes of their images;
2. every code dimension discretised into 20 equal-width bins over its own range
   (``np.digitize(z, np.histogram(z, 20)[1][:-1])``, dlib's ``_histogram_discretize``);
3. the discrete mutual information ``I(z_j; v_k)`` of every dimension and factor class
   (``sklearn.metrics.mutual_info_score``, nats) and each factor's entropy ``H(v_k)``;
4. MIG = mean over factors of ``(I_(1) − I_(2)) / H(v_k)``, the gap between the two dimensions
   most informative about factor ``k``, normalised by its entropy.

The factors are the class indices (discrete), as in dlib; it is the discrete estimate of Chen et
al.'s MIG (they estimate ``I`` from the encoder's distribution), dlib's ``discrete_mig``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score

from betasweep.metrics.encoding import Encoding, RepresentationFn, check_counts, encoding_of

__all__ = ["discrete_entropy", "discrete_mutual_info", "histogram_discretize", "mig"]


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin index of every value, per column: ``codes`` float ``(n, d)`` → int64 ``(n, d)`` in ``[1, num_bins]``.

    Equal-width bins over each column's range, the maximum in the last bin (dlib's ``_histogram_discretize``).
    """
    codes = np.asarray(codes, dtype=np.float64)
    return np.stack([np.digitize(column, np.histogram(column, num_bins)[1][:-1]) for column in codes.T], axis=1)


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``I(codes_j; factors_k)`` in nats for every pair: int ``(n, d)``, int ``(n, K)`` → float64 ``(d, K)``."""
    return np.array([[mutual_info_score(factor, code) for factor in factors.T] for code in codes.T]).reshape(
        codes.shape[1], factors.shape[1])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """``H(factors_k)`` in nats of every column: int ``(n, K)`` → float64 ``(K,)``."""
    return np.array([mutual_info_score(factor, factor) for factor in factors.T])


def mig(data, representation_fn: RepresentationFn | Encoding, rng: np.random.Generator, *,
        num_train: int = 10_000, num_bins: int = 20) -> dict[str, float]:
    """Chen et al. 2018 Mutual Information Gap (dlib's discrete estimate), from one shared encoding.

    Args:
        data: ground-truth data (factors drawn uniformly), or a labelled image set such as CelebA's
            val partition (its attributes as 0/1 factors; up to ``num_train`` of its images, each once).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or an
            :class:`~betasweep.metrics.encoding.Encoding` of ``data`` shared with other metrics.
        rng: the metric's randomness.
        num_train: points (10,000).
        num_bins: equal-width bins per code dimension (20).

    Returns:
        ``{"mig": float}`` in ``[0, 1]`` (1: each factor captured by one dimension alone). Factors
        that take a single value among the points (entropy 0: possible for a rare CelebA attribute)
        are left out of the mean (dlib would divide by 0); NaN if no factor is left. A
        representation with one dimension scores its best dimension's ``I / H`` (no second one).

    Raises:
        ValueError: a count < 1 (``num_bins`` < 1); a representation that is not ``(n, d)``.
    """
    check_counts(num_train=num_train, num_bins=num_bins)
    encoding = encoding_of(data, representation_fn)
    codes, factors, _, _ = encoding.observations(num_train, 0, rng)
    info = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)  # (d, K)
    entropy = discrete_entropy(factors)  # (K,)
    ranked = np.sort(info, axis=0)[::-1]
    gap = ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)
    keep = entropy > 0
    return {"mig": float(np.mean(gap[keep] / entropy[keep])) if keep.any() else float("nan")}
