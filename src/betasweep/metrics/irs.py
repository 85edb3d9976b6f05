"""The Interventional Robustness Score of Suter et al. 2019 ("Robustly disentangled causal mechanisms:
validating deep representations for interventional robustness", ICML, Sec. 4), as disentanglement_lib
computes it.

Protocol and defaults follow google-research/disentanglement_lib, ``evaluation/metrics/irs.py``
(``compute_irs``, ``scalable_disentanglement_score``) and its ``unsupervised_study_v1`` gin bindings
(``irs.num_train = 10000``, ``diff_quantile = 0.99``, ``histogram_discretizer`` with 20 bins):

1. ``num_train`` points: factors drawn uniformly and the codes of their images; the factors
   discretised into 20 equal-width bins (dlib discretises the factor classes too);
2. code dimensions that are constant over the points are dropped (none left: IRS 0);
3. for every factor ``i`` and each of its values ``g``: the 99th percentile over the points with
   ``v_i = g`` of ``|z_j − E[z_j | v_i = g]|``, averaged over the values: how far a dimension moves
   when every factor but ``i`` changes; normalised by the dimension's largest deviation from its mean;
4. a dimension's score is ``1 −`` its smallest normalised deviation over the factors; IRS is their
   mean weighted by each dimension's largest deviation.
"""

from __future__ import annotations

import numpy as np

from betasweep.metrics.encoding import Encoding, RepresentationFn, check_counts, encoding_of
from betasweep.metrics.mig import histogram_discretize

__all__ = ["irs", "irs_of"]


def irs_of(factors: np.ndarray, codes: np.ndarray, diff_quantile: float = 0.99) -> float:
    """IRS of discrete ``factors`` int ``(n, K)`` and ``codes`` ``(n, d)`` (non-constant columns), dlib's
    ``scalable_disentanglement_score(...)["avg_score"]``: float in [0, 1]."""
    codes = np.asarray(codes, dtype=np.float64)
    max_deviations = np.max(np.abs(codes - codes.mean(axis=0)), axis=0)  # (d,)
    cum = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(factors.shape[1]):
        values = np.unique(factors[:, i])
        for g in values:
            match = factors[:, i] == g
            diffs = np.abs(codes[match] - codes[match].mean(axis=0))
            cum[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum[:, i] /= len(values)
    irs_matrix = 1.0 - cum / max_deviations[:, None]
    scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0:
        return float(np.average(scores, weights=max_deviations))
    return float(np.mean(scores))


def irs(data, representation_fn: RepresentationFn | Encoding, rng: np.random.Generator, *,
        num_train: int = 10_000, diff_quantile: float = 0.99, num_bins: int = 20) -> dict[str, float]:
    """Suter et al. 2019 IRS (dlib's protocol), from one shared encoding.

    Args:
        data: ground-truth data (factors drawn uniformly).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic; or an
            :class:`~betasweep.metrics.encoding.Encoding` of ``data`` shared with other metrics.
        rng: the metric's randomness.
        num_train: points (10,000).
        diff_quantile: the quantile of a dimension's within-group deviation (0.99).
        num_bins: equal-width bins of the factors (20, dlib's discretizer).

    Returns:
        ``{"irs": float, "irs_active_dims": int}``: IRS in [0, 1] (0 when every dimension is constant)
        and the dimensions that are not constant.

    Raises:
        ValueError: a count < 1, ``diff_quantile`` outside (0, 1]; a representation that is not ``(n, d)``.
    """
    check_counts(num_train=num_train, num_bins=num_bins)
    if not 0 < diff_quantile <= 1:
        raise ValueError(f"diff_quantile must be in (0, 1], got {diff_quantile}")
    encoding = encoding_of(data, representation_fn)
    codes, factors, _, _ = encoding.observations(num_train, 0, rng)
    active = codes[:, codes.std(axis=0) > 0]
    if active.shape[1] == 0:
        return {"irs": 0.0, "irs_active_dims": 0}
    return {"irs": irs_of(histogram_discretize(factors, num_bins), active, diff_quantile),
            "irs_active_dims": int(active.shape[1])}
