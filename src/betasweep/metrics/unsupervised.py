"""disentanglement_lib's unsupervised scores: Gaussian total correlation, Wasserstein correlation and the
mean pairwise mutual information of the code's dimensions (no factors used).

Protocol and defaults follow google-research/disentanglement_lib, ``evaluation/metrics/unsupervised_metrics.py``
(``unsupervised_metrics``, ``gaussian_total_correlation``, ``gaussian_wasserstein_correlation``) and its
``unsupervised_study_v1`` gin bindings (``num_train = 10000``, ``histogram_discretizer`` with 20 bins),
reported by Locatello et al. 2019 (Sec. 4, "unsupervised scores"):

- ``gaussian_total_correlation``: ``½ (Σ_j log Σ_jj − log det Σ)`` of the codes' covariance ``Σ``
  (``np.cov``, divided by ``n − 1``): the total correlation of a Gaussian with that covariance, nats;
- ``wasserstein_correlation``: ``2 tr Σ − 2 tr (Σ diag(Σ))^½``, the squared 2-Wasserstein distance
  between that Gaussian and the one with only its diagonal; ``wasserstein_correlation_norm`` divides by ``tr Σ``;
- ``mutual_info_score``: the mean over ordered pairs ``i ≠ j`` of the discrete mutual information of
  dimensions ``i`` and ``j`` (20 equal-width bins each), nats.

All three are 0 for independent dimensions and grow with their dependence (lower is "more disentangled").
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from betasweep.metrics.encoding import Encoding, RepresentationFn, check_counts, encoding_of
from betasweep.metrics.mig import discrete_mutual_info, histogram_discretize

__all__ = ["gaussian_total_correlation", "gaussian_wasserstein_correlation", "unsupervised_scores"]


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """``½ (Σ_j log cov_jj − log det cov)`` of a ``(d, d)`` covariance, nats (dlib's ``gaussian_total_correlation``)."""
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """``2 tr cov − 2 tr sqrtm(cov · diag(cov)[:, None])`` (dlib's ``gaussian_wasserstein_correlation``)."""
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(np.real(2 * np.trace(cov) - 2 * np.trace(root)))


def unsupervised_scores(data, representation_fn: RepresentationFn | Encoding, rng: np.random.Generator, *,
                        num_train: int = 10_000, num_bins: int = 20) -> dict[str, float]:
    """The unsupervised scores of ``num_train`` codes (dlib's protocol), from one shared encoding.

    Args:
        data: ground-truth data (factors drawn uniformly; only their images are used).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or an
            :class:`~betasweep.metrics.encoding.Encoding` of ``data`` shared with other metrics.
        rng: the metric's randomness.
        num_train: points (10,000).
        num_bins: equal-width bins per dimension for the mutual information (20).

    Returns:
        ``{"gaussian_total_correlation", "wasserstein_correlation", "wasserstein_correlation_norm",
        "mutual_info_score"}`` (floats, >= 0; nats where they are information). A constant dimension
        makes the Gaussian scores NaN or infinite (as dlib's); a 1-dimensional code has no pairs
        (mutual_info_score NaN).

    Raises:
        ValueError: a count < 1; a representation that is not ``(n, d)``.
    """
    check_counts(num_train=num_train, num_bins=num_bins)
    encoding = encoding_of(data, representation_fn)
    codes, _, _, _ = encoding.observations(num_train, 0, rng)
    d = codes.shape[1]
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = gaussian_total_correlation(cov)
        wasserstein = gaussian_wasserstein_correlation(cov)
        norm = wasserstein / np.trace(cov)
    binned = histogram_discretize(codes, num_bins)
    info = discrete_mutual_info(binned, binned)
    np.fill_diagonal(info, 0.0)
    return {"gaussian_total_correlation": tc, "wasserstein_correlation": wasserstein,
            "wasserstein_correlation_norm": float(norm),
            "mutual_info_score": float(info.sum() / (d * d - d)) if d > 1 else float("nan")}
