"""ModelCentrality of Lin et al. 2020 ("InfoGAN-CR and ModelCentrality: self-supervised model training
and selection for disentangling GANs", ICML, Sec. 5): a label-free selector across a study's models.

As the authors' code (``fjxmlzn/InfoGAN-CR``, ``main_mc.py``) computes it: every model ``i`` serves as a
ground-truth simulator whose factors are its own latent units; the FactorVAE score (Kim & Mnih 2018,
protocol as :func:`~betasweep.metrics.factor_vae_score`: global variances, pruning at SD 0.05, one
latent fixed per batch, argmin of the normalised variance, majority vote) of every other model ``j``'s
encoder on images ``i``'s decoder generates is ``S[i, j]``; model ``i``'s ModelCentrality is the mean of
``S[i, j]`` over ``j ≠ i``. A model whose latents the others recover as separate axes is central.

For a VAE: the latents are drawn from the prior ``N(0, I)``, the fixed one's value from ``N(0, 1)``
(the first image's, as dlib's FactorVAE sampling), images are the decoder's Bernoulli means, and only
the generator's active units (mean KL > 0.01 nats, as UDR) are factors (an inactive unit changes no
image). Each generator's images are drawn once and encoded by every other model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from betasweep.metrics.encoding import RepresentationFn
from betasweep.metrics.vae import representation_function

__all__ = ["model_centrality_of_models", "KL_THRESHOLD"]

KL_THRESHOLD = 0.01
"""Nats of mean KL above which a generator's latent unit counts as a factor (UDR's threshold)."""


def _decode_images(model, z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        device = next(iter(model.parameters()), next(iter(model.buffers()), torch.empty(0))).device
        return torch.sigmoid(model.decode(torch.as_tensor(z, dtype=torch.float32, device=device))).float().cpu().numpy()


def _score(codes_var: np.ndarray, train: tuple[np.ndarray, np.ndarray], evaluation: tuple[np.ndarray, np.ndarray],
           num_factors: int, prune_threshold: float) -> float:
    """FactorVAE eval accuracy from codes: variance codes ``(n, d)``, points' codes ``(P, B, d)`` and labels ``(P,)``."""
    variances = np.var(codes_var, axis=0, ddof=1)
    active = np.sqrt(variances) >= prune_threshold
    if not active.any():
        return 0.0

    def votes(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
        local = np.var(codes[..., active], axis=1, ddof=1) / variances[active]
        out = np.zeros((num_factors, int(active.sum())), dtype=np.int64)
        np.add.at(out, (labels, np.argmin(local, axis=1)), 1)
        return out

    train_votes, eval_votes = votes(*train), votes(*evaluation)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return float(eval_votes[classifier, columns].sum() / eval_votes.sum())


def model_centrality_of_models(models: Sequence, kl_per_dims: Sequence[np.ndarray], rng: np.random.Generator, *,
                               representation_fns: Sequence[RepresentationFn] | None = None,
                               batch_size: int = 64, num_train: int = 500, num_eval: int = 250,
                               num_variance_estimate: int = 2_000, prune_threshold: float = 0.05) -> dict:
    """ModelCentrality of ``N >= 2`` models (see the module docstring).

    Args:
        models: :class:`~betasweep.models.VAEFamily` models in eval mode (their ``decode`` generates).
        kl_per_dims: each model's mean KL per latent unit (nats) ``(latent_dim,)``: its active units are the factors.
        rng: the randomness of the latents drawn.
        representation_fns: each model's ``(n, C, 64, 64) → (n, d)`` encoder; default
            :func:`~betasweep.metrics.representation_function` of each model.
        batch_size, num_train, num_eval, num_variance_estimate, prune_threshold: the FactorVAE score's
            settings (dlib's are 64, 10,000, 5,000, 10,000, 0.05; the defaults here are smaller: every
            pair costs ``(num_train + num_eval) · batch_size`` encodings).

    Returns:
        ``{"model_centrality_per_model": [N floats in [0, 1]], "model_centrality": mean of them,
        "pairwise": N x N list, row = generator, column = encoder (diagonal: the model scored on its own
        images)}``. A generator with no active unit scores 0 against every encoder.

    Raises:
        ValueError: fewer than 2 models, lengths that differ, a count below its minimum.
    """
    n = len(models)
    if n < 2 or len(kl_per_dims) != n:
        raise ValueError(f"ModelCentrality needs >= 2 models and one kl_per_dim each, got {n} and {len(kl_per_dims)}")
    if batch_size < 2 or num_train < 1 or num_eval < 1 or num_variance_estimate < 2:
        raise ValueError("batch_size and num_variance_estimate must be >= 2, num_train and num_eval >= 1")
    encoders = list(representation_fns) if representation_fns is not None else [representation_function(m) for m in models]
    pairwise = np.zeros((n, n))
    for i, generator in enumerate(models):
        factors = np.flatnonzero(np.asarray(kl_per_dims[i]) > KL_THRESHOLD)
        if factors.size == 0:
            continue
        m = len(kl_per_dims[i])

        def encode_all(z: np.ndarray) -> list[np.ndarray]:
            images = _decode_images(generator, z.reshape(-1, m))
            return [np.asarray(encode(images), dtype=np.float64) for encode in encoders]

        variance_codes = encode_all(rng.standard_normal((num_variance_estimate, m)))
        sets = []
        for points in (num_train, num_eval):
            labels = rng.integers(factors.size, size=points)
            z = rng.standard_normal((points, batch_size, m))
            z[np.arange(points), :, factors[labels]] = z[np.arange(points), :1, factors[labels]]
            codes = [np.empty((points, batch_size, 0))] * n
            chunks = [encode_all(z[s:s + 256]) for s in range(0, points, 256)]
            codes = [np.concatenate([c[j] for c in chunks]).reshape(points, batch_size, -1) for j in range(n)]
            sets.append((codes, labels))
        for j in range(n):
            pairwise[i, j] = _score(variance_codes[j], (sets[0][0][j], sets[0][1]), (sets[1][0][j], sets[1][1]),
                                    factors.size, prune_threshold)
    per_model = [float(np.mean([pairwise[i, j] for j in range(n) if j != i])) for i in range(n)]
    return {"model_centrality_per_model": per_model, "model_centrality": float(np.mean(per_model)),
            "pairwise": pairwise.tolist()}
