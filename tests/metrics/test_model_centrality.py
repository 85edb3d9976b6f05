"""ModelCentrality (Lin et al. 2020) on toy models with known answers: decoders that write each latent into its
own pixel block (image = sigmoid(z_k) there), encoders that read it back, exactly or rotated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from betasweep.metrics.model_centrality import model_centrality_of_models

M = 4
ROTATION = np.eye(M)
ROTATION[:2, :2] = np.array([[1, 1], [1, -1]]) / np.sqrt(2)  # latents 0 and 1 mixed by 45 degrees


class BlockModel(nn.Module):
    """Latent k fills rows 16k..16k+15 of a 64x64 image with logit z_k (after an optional rotation of z)."""

    def __init__(self, rotation: np.ndarray):
        super().__init__()
        self.register_buffer("rotation", torch.as_tensor(rotation, dtype=torch.float32))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        u = z @ self.rotation.T  # (b, M)
        return u[:, :, None, None].repeat_interleave(16, dim=2).expand(-1, -1, 16, 64).reshape(len(z), 1, 64, 64)

    def encode(self, images: np.ndarray) -> np.ndarray:
        p = np.clip(images.reshape(len(images), M, 16 * 64).mean(axis=2), 1e-6, 1 - 1e-6)
        u = np.log(p / (1 - p))
        return u @ self.rotation.numpy()  # the inverse rotation (orthogonal): z


def test_aligned_models_are_central_and_a_rotated_one_is_not():
    models = [BlockModel(np.eye(M)), BlockModel(np.eye(M)), BlockModel(ROTATION)]
    kl = [np.ones(M)] * 3
    got = model_centrality_of_models(models, kl, np.random.default_rng(0), representation_fns=[m.encode for m in models],
                                     batch_size=32, num_train=600, num_eval=300, num_variance_estimate=1000)
    pairwise = np.array(got["pairwise"])
    assert pairwise[0, 1] == pytest.approx(1.0) and pairwise[1, 0] == pytest.approx(1.0)
    assert np.diag(pairwise) == pytest.approx(np.ones(3))  # each model recovers its own latents
    # latents 0 and 1 read through a 45-degree rotation: both codes move by half the variance when either is
    # fixed, so half of those points (a quarter of all) go to the wrong axis: about 0.75
    assert pairwise[0, 2] < 0.85 and pairwise[2, 0] < 0.85
    mc = got["model_centrality_per_model"]
    assert mc[0] == pytest.approx((1.0 + pairwise[0, 2]) / 2) and mc[1] == pytest.approx((1.0 + pairwise[1, 2]) / 2)
    assert mc[2] == pytest.approx((pairwise[2, 0] + pairwise[2, 1]) / 2)
    assert mc[2] < min(mc[0], mc[1])  # about 0.75 against (1 + 0.75) / 2


def test_inactive_generator_scores_zero_and_bad_input_is_refused():
    models = [BlockModel(np.eye(M)), BlockModel(np.eye(M))]
    got = model_centrality_of_models(models, [np.zeros(M), np.ones(M)], np.random.default_rng(0),
                                     representation_fns=[m.encode for m in models], batch_size=8, num_train=20,
                                     num_eval=10, num_variance_estimate=100)
    assert got["pairwise"][0] == [0.0, 0.0] and got["model_centrality_per_model"][0] == 0.0
    with pytest.raises(ValueError, match=">= 2 models"):
        model_centrality_of_models(models[:1], [np.ones(M)], np.random.default_rng(0))
