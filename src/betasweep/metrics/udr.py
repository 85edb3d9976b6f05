"""Unsupervised Disentanglement Ranking (UDR) of Duan et al. 2020 ("Unsupervised Model Selection for
Variational Disentangled Representation Learning", ICLR, Sec. 3), as disentanglement_lib computes it.

Protocol and defaults follow google-research/disentanglement_lib, ``evaluation/udr/metrics/udr.py``
(``compute_udr_sklearn``, ``relative_strength_disentanglement``, ``lasso_correlation_matrix``,
``spearman_correlation_conv``):

1. ``N >= 2`` models (e.g. the seeds of one configuration) encode the **same** images (dlib: 1,000);
2. each model's codes are standardised per dimension (``StandardScaler``); dimensions whose mean KL
   to the prior is at most 0.01 nats are zeroed and left out (inactive);
3. for every ordered pair ``(i, j)``, ``i != j``: a similarity matrix ``R`` between model ``i``'s
   and model ``j``'s dimensions, either the absolute coefficients of a Lasso (``alpha = 0.1``)
   regressing ``j``'s codes on ``i``'s (dlib's default) or the absolute Spearman correlations;
4. the pair's score is ``relative_strength_disentanglement(R)``: the mean over both axes of
   ``max(R_row)² / sum(R_row)`` restricted to active dimensions (1 for a one-to-one map of
   dimensions at full strength);
5. each model's score is the median of the scores of the pairs ``(i, j)`` that end in it
   (``j = model``), and the configuration's UDR is the mean over its models.

No labels are used: two models that found the same axes (up to permutation and sign) agree. Note the
Lasso's shrinkage: for standardised codes, ``R`` of a model against itself has ``1 − alpha = 0.9``
on its diagonal, so a perfect match scores 0.9 with ``correlation="lasso"`` (dlib's figures carry
the same factor) and 1 with ``"spearman"`` when the dimensions are uncorrelated.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import scipy.stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from betasweep.metrics.encoding import RepresentationFn, encode_images, held_out

__all__ = ["relative_strength_disentanglement", "udr", "udr_images", "udr_of_models"]

KL_THRESHOLD = 0.01
"""Nats of mean KL above which a dimension counts as active (dlib's ``kl_filter_threshold``)."""


def relative_strength_disentanglement(matrix: np.ndarray) -> float:
    """dlib's score of a similarity matrix ``(d_i, d_j)`` (nonnegative): the mean over columns and
    over rows of ``max² / sum``, averaged; 0/0 counts as 0. An empty matrix scores 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        score_x = np.nanmean(np.nan_to_num(matrix.max(axis=0) ** 2 / matrix.sum(axis=0), nan=0.0))
        score_y = np.nanmean(np.nan_to_num(matrix.max(axis=1) ** 2 / matrix.sum(axis=1), nan=0.0))
    return float((score_x + score_y) / 2)


def _lasso_matrix(codes_i: np.ndarray, codes_j: np.ndarray, seed: int) -> np.ndarray:
    """``|coef|`` of ``Lasso(alpha=0.1)`` fitting ``codes_j`` from ``codes_i``, as ``(d_i, d_j)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = Lasso(alpha=0.1, random_state=seed).fit(codes_i, codes_j)
    return np.abs(np.asarray(model.coef_).reshape(codes_j.shape[1], codes_i.shape[1])).T


def _spearman_matrix(codes_i: np.ndarray, codes_j: np.ndarray) -> np.ndarray:
    """``|Spearman ρ|`` between every dimension of ``codes_i`` and of ``codes_j``: ``(d_i, d_j)``;
    a constant dimension correlates 0."""
    ranks_i = scipy.stats.rankdata(codes_i, axis=0)
    ranks_j = scipy.stats.rankdata(codes_j, axis=0)
    ranks_i -= ranks_i.mean(axis=0)
    ranks_j -= ranks_j.mean(axis=0)
    norm = np.outer(np.linalg.norm(ranks_i, axis=0), np.linalg.norm(ranks_j, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(np.abs(ranks_i.T @ ranks_j) / norm, nan=0.0)


def udr(
    representations: Sequence[np.ndarray],
    kl_per_dim: Sequence[np.ndarray],
    rng: np.random.Generator | None = None,
    *,
    correlation: str = "lasso",
) -> dict:
    """Duan et al. 2020 UDR of ``N >= 2`` models from their codes of the same images.

    Args:
        representations: ``N`` arrays float ``(n, d_i)``, row ``r`` of every array the code of the
            same image ``r`` (the encoder means; dlib uses ``n = 1000``).
        kl_per_dim: ``N`` arrays float ``(d_i,)``, each model's mean KL per dimension in nats (e.g.
            ``vae_statistics(...)["kl_per_dim"]``); dimensions at or below 0.01 are inactive.
        rng: seeds the Lasso (its cyclic solver does not use it; kept for a pure signature).
        correlation: ``"lasso"`` (dlib's default) or ``"spearman"``.

    Returns:
        ``{"udr": float, "udr_per_model": list of N floats}``: each model's median pairwise score and
        their mean, in ``[0, 1]``. A pair in which either model has no active dimension scores 0.

    Raises:
        ValueError: fewer than 2 models, arrays of different ``n`` or not 2-d, a KL vector whose
            length is not its model's ``d``, ``n < 2``, or an unknown ``correlation``.
    """
    if correlation not in ("lasso", "spearman"):
        raise ValueError(f"correlation={correlation!r}: expected 'lasso' or 'spearman'")
    if len(representations) < 2:
        raise ValueError("UDR compares models with each other: needs at least 2 representations, "
                         f"got {len(representations)}")
    if len(kl_per_dim) != len(representations):
        raise ValueError(f"{len(representations)} representations but {len(kl_per_dim)} KL vectors")
    codes, active = [], []
    for index, (rep, kl) in enumerate(zip(representations, kl_per_dim)):
        rep = np.asarray(rep, dtype=np.float64)
        kl = np.asarray(kl, dtype=np.float64)
        if rep.ndim != 2 or rep.shape[0] < 2:
            raise ValueError(f"representation {index}: expected an (n >= 2, d) array, got shape {rep.shape}")
        if rep.shape[0] != np.shape(representations[0])[0]:
            raise ValueError(f"representation {index} has {rep.shape[0]} rows, representation 0 has "
                             f"{np.shape(representations[0])[0]}: all must encode the same images")
        if kl.shape != (rep.shape[1],):
            raise ValueError(f"kl_per_dim {index}: expected shape ({rep.shape[1]},), got {kl.shape}")
        std = rep.std(axis=0)
        standardised = (rep - rep.mean(axis=0)) / np.where(std > 0, std, 1.0)  # StandardScaler
        mask = kl > KL_THRESHOLD
        codes.append(standardised * mask)
        active.append(mask)
    seed = int((rng if rng is not None else np.random.default_rng(0)).integers(2**31 - 1))
    num_models = len(codes)
    pairwise = np.zeros((num_models, num_models))
    for i in range(num_models):
        for j in range(num_models):
            if i == j:
                continue
            if correlation == "lasso":
                matrix = _lasso_matrix(codes[i], codes[j], seed)
            else:
                matrix = _spearman_matrix(codes[i], codes[j])
            pairwise[i, j] = relative_strength_disentanglement(matrix[active[i]][:, active[j]])
    per_model = [float(np.median(np.delete(pairwise[:, m], m))) for m in range(num_models)]
    return {"udr": float(np.mean(per_model)), "udr_per_model": per_model}


def udr_images(data, rng: np.random.Generator, num_images: int = 1000) -> np.ndarray:
    """The held-out images UDR encodes: ``num_images`` drawn from ground-truth data (its
    ``sample_observations``) or uniformly from CelebA's val partition; float32 ``(num_images, C, 64, 64)``."""
    if num_images < 2:
        raise ValueError(f"num_images={num_images!r}: expected an integer >= 2")
    return held_out(data).sample_observations(num_images, rng)


def udr_of_models(
    representation_fns: Sequence[RepresentationFn],
    kl_per_dims: Sequence[np.ndarray],
    images: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    correlation: str = "lasso",
    encode_batch_size: int = 512,
) -> dict:
    """:func:`udr` of ``N >= 2`` models on the same ``images`` (e.g. :func:`udr_images`), each model
    encoding them once.

    Args:
        representation_fns: ``N`` functions ``(n, C, 64, 64) float32 → (n, d)`` (the encoder means).
        kl_per_dims: ``N`` vectors ``(d,)`` of mean KL per dimension, nats.
        images: float32 ``(n, C, 64, 64)`` in [0, 1] (1,000 held-out images in dlib's protocol).

    Raises:
        ValueError: as :func:`udr`; fewer than 2 images.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"images must be an (n >= 2, C, H, W) array, got shape {images.shape}")
    if len(representation_fns) < 2:
        raise ValueError(f"UDR compares models with each other: needs at least 2 models, got {len(representation_fns)}")
    codes = [encode_images(fn, images, len(images), batch_size=encode_batch_size) for fn in representation_fns]
    return udr(codes, kl_per_dims, rng, correlation=correlation)
