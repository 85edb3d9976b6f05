"""Conditional generation a test can check: a cvae conditioned on dSprites' shape draws the shape it is given.

The measure is :func:`betasweep.metrics.conditioned_value_wins`; two control decoders with known
answers pin it down, then a cvae trained briefly on the real grid is measured with it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from betasweep.data import Shapes
from betasweep.data.base import GroundTruthData
from betasweep.metrics import conditioned_value_wins
from betasweep.metrics.conditional import pack_labels, unpack_labels
from betasweep.models import ModelConfig
from betasweep.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class WithFactors(GroundTruthData):
    """dSprites whose images carry their factors in a second channel (:func:`pack_labels`)."""

    def __init__(self, data):
        self.data = data

    factor_names = property(lambda self: self.data.factor_names)
    factor_sizes = property(lambda self: self.data.factor_sizes)
    num_channels = property(lambda self: self.data.num_channels + 1)

    def images_from_factors(self, factors, rng=None):
        return pack_labels(self.data.images_from_factors(factors, rng), np.asarray(factors, np.float32))


class ControlDecoder(nn.Module):
    """A cvae stand-in with a known answer: ``z`` is the image's factors; the decoder renders the
    real image of ``z`` with the value ``y`` says (``obeys_y``) or of ``z`` alone (ignores ``y``)."""

    conditional = True

    def __init__(self, data, obeys_y: bool):
        super().__init__()
        self.data, self.obeys_y = data, obeys_y
        self.config = ModelConfig(model="cvae", conditioned_factor="shape", label_dim=3)
        self.anchor = nn.Parameter(torch.zeros(1))  # a device for the metric to read

    def representation(self, x, y):
        return unpack_labels(x, 5)[1]

    def decode(self, z, y):
        factors = z.round().long().numpy()
        if self.obeys_y:
            factors[:, 0] = y.argmax(dim=1).numpy()
        return torch.from_numpy(self.data.images_from_factors(factors)) * 40 - 20  # logits of the 0/1 image


def test_conditioned_value_wins_on_decoders_with_known_answers(dsprites):
    data = WithFactors(dsprites)
    factors = dsprites.sample_factors(300, np.random.default_rng(1))
    obeys = conditioned_value_wins(ControlDecoder(dsprites, obeys_y=True), data, factors)
    assert obeys == {"shape_0": 1.0, "shape_1": 1.0, "shape_2": 1.0}
    # A decoder that draws the source image whatever y says wins value v exactly on the images of shape v.
    ignores = conditioned_value_wins(ControlDecoder(dsprites, obeys_y=False), data, factors)
    share = np.bincount(factors[:, 0], minlength=3) / len(factors)
    assert ignores == pytest.approx({f"shape_{v}": share[v] for v in range(3)})
    with pytest.raises(ValueError, match=r"factors must be \(n, 5\), got shape \(300, 4\)"):
        conditioned_value_wins(ControlDecoder(dsprites, obeys_y=True), data, factors[:, 1:])


@pytest.fixture(scope="module")
def cvae_wins(dsprites):
    """A cvae conditioned on shape, trained once for this module (β 8, 750 steps of 16 on real dSprites without
    150 held-out images); the rate at which each conditioned shape wins on those images, and the rate at which a
    decoder that ignores y would win it (the share of that shape among them: the control test above)."""
    rng = np.random.default_rng(0)
    held_out = dsprites.sample_factors(150, rng)
    config = ModelConfig(model="cvae", latent_dim=6, width=16, hidden_dim=64, conditioned_factor="shape")
    result = train(dsprites.without(held_out), config,
                   TrainConfig(beta=8.0, batch_size=16, train_samples=12_000, learning_rate=1e-3, seed=0))
    # The targets are the procedural Shapes renderer's images (the check), on the grid of the
    # downsampled file: every 4th orientation and every 2nd position of the full grid.
    wins = conditioned_value_wins(result.model, dsprites, held_out,
                                  render=Shapes(subsample=(1, 1, 4, 2, 2)).images_from_factors)
    share = np.bincount(held_out[:, 0], minlength=3) / len(held_out)
    print(f"\nconditioned shape has the highest IoU on: {wins}; a decoder ignoring y: {share}")
    return wins, {f"shape_{v}": share[v] for v in range(3)}


def test_cvae_decodes_with_the_shape_it_is_given(cvae_wins):
    """What holds at a CPU budget: the decoder uses y. The square and the heart it is given win clearly more
    often than a decoder ignoring y would let them (measured 0.47 and 0.56 against 0.29 and 0.37 at 750 steps;
    0.41 and 0.65 at 1,500)."""
    wins, ignoring_y = cvae_wins
    for shape in ("shape_0", "shape_2"):
        assert wins[shape] >= ignoring_y[shape] + 0.05, (shape, wins, ignoring_y)


@pytest.mark.xfail(strict=True, reason=(
    "measured (benchmarks/cvae_conditioning.py): at 750 steps the conditioned shape wins on 47% (square), "
    "17% (ellipse), 56% (heart) of 150 held-out images; at 1,500 steps 41/15/65%. The decoder does use y "
    "(the test above), but z does not encode orientation yet, so it draws each shape averaged over orientations: "
    "a disk that the square and the heart match and the ellipse does not. At 20,000 steps (beta 8): 97/13/55%; "
    "at beta 0.25, 20,000 steps: 39/37/37%, the shape has moved into z and the decoder ignores y. Not a majority "
    "for the ellipse at any CPU budget tried. Strict: the day the ellipse wins too, this fails and says so"))
def test_cvae_decodes_the_same_z_with_each_shape_as_that_shape(cvae_wins):
    wins, _ = cvae_wins
    assert all(rate > 0.5 for rate in wins.values()), wins
