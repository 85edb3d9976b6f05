"""Conditional generation a test can check: a cvae conditioned on dSprites' shape draws the shape it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from betasweep.data import Shapes
from betasweep.data.base import GroundTruthData
from betasweep.models import ModelConfig
from betasweep.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The downsampled grid 3x6x10x16x16 is every 4th orientation and every 2nd position of the full grid.
TO_FULL_GRID = np.array([1, 1, 4, 2, 2])


class TrainingSplit(GroundTruthData):
    """Real dSprites without the held-out grid points (redrawn when drawn)."""

    def __init__(self, data, held_out_flat: np.ndarray):
        self.data, self.held_out = data, set(held_out_flat.tolist())

    factor_names = property(lambda self: self.data.factor_names)
    factor_sizes = property(lambda self: self.data.factor_sizes)
    num_channels = property(lambda self: self.data.num_channels)

    def images_from_factors(self, factors, rng=None):
        return self.data.images_from_factors(factors, rng)

    def sample_factors(self, n, rng):
        factors = self.data.sample_factors(n, rng)
        while bad := [i for i, f in enumerate(self.data.flat_index(factors)) if f in self.held_out]:
            factors[bad] = self.data.sample_factors(len(bad), rng)
        return factors


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, H, W)`` bool masks → ``(n,)`` intersection over union."""
    return (a & b).sum(axis=(1, 2)) / np.maximum((a | b).sum(axis=(1, 2)), 1)


@pytest.mark.xfail(strict=False, reason=(
    "measured: after 1,500 steps (24,000 images) the decoder draws blobs; the conditioned shape wins "
    "on 57% (square), 6% (ellipse), 39% (heart) of 150 held-out images; with y as constant channels "
    "after 6,000 steps 57/24/30%: shape is dSprites' slowest factor, not learnt at a test's CPU budget"))
def test_cvae_decodes_the_same_z_with_each_shape_as_that_shape(dsprites):
    rng = np.random.default_rng(0)
    held_out = dsprites.sample_factors(150, rng)
    config = ModelConfig(model="cvae", latent_dim=6, width=16, hidden_dim=64, conditioned_factor="shape")
    result = train(TrainingSplit(dsprites, dsprites.flat_index(held_out)), config,
                   TrainConfig(beta=1.0, batch_size=16, train_samples=24_000, learning_rate=1e-3, seed=0))
    model, shapes = result.model, Shapes()
    x = torch.from_numpy(dsprites.images_from_factors(held_out))
    rendered = []  # rendered[j]: every held-out image's factors with shape j, (n, 64, 64) bool
    for j in range(3):
        factors = held_out.copy()
        factors[:, 0] = j
        rendered.append(shapes.images_from_factors(factors * TO_FULL_GRID)[:, 0] > 0.5)
    with torch.no_grad():
        z = model.representation(x, torch.eye(3)[held_out[:, 0]])  # the source image's code, its own shape
        wins = {}
        for k, name in enumerate(("square", "ellipse", "heart")):
            decoded = torch.sigmoid(model.decode(z, torch.eye(3)[[k] * len(z)])).numpy()[:, 0] > 0.5
            scores = np.stack([iou(decoded, r) for r in rendered], axis=1)  # (n, 3)
            wins[name] = float(np.mean(scores[:, k] > np.delete(scores, k, axis=1).max(axis=1)))
    print(f"\nconditioned shape has the highest IoU on: {wins}")
    assert all(rate > 0.5 for rate in wins.values()), wins
