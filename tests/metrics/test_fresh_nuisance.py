"""Nuisance drawn as disentanglement_lib draws it: a fresh colour / noise per image (FreshEncoding) against
one cached code per grid point, on real colour and noisy dSprites."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from betasweep.data import load_dataset
from betasweep.metrics import MetricConfig, panel_scores
from betasweep.metrics.encoding import FreshEncoding, GridEncoding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mean_colour(images: np.ndarray) -> np.ndarray:
    """A 'representation' that reads the nuisance: each channel's mean over the sprite's pixels (colour
    dSprites' background is black), and the sprite's area."""
    mask = (images.max(axis=1) > 0).reshape(len(images), 1, -1)  # (n, 1, 4096)
    area = np.maximum(mask.sum(axis=2), 1)
    colour = (images.reshape(len(images), 3, -1) * mask).sum(axis=2) / area
    return np.concatenate([colour, area / 4096.0], axis=1)


@pytest.fixture(scope="module")
def color_dsprites(dsprites_path):
    return load_dataset("color_dsprites", path=str(dsprites_path))


def test_fresh_encoding_draws_a_new_nuisance_per_request(color_dsprites):
    fresh = FreshEncoding(color_dsprites, mean_colour, np.random.default_rng(0))
    cached = GridEncoding(color_dsprites, mean_colour)
    factors = np.repeat(color_dsprites.sample_factors(1, np.random.default_rng(1)), 50, axis=0)  # one grid point, 50 times
    fresh_codes, cached_codes = fresh.codes_of_factors(factors), cached.codes_of_factors(factors)
    assert np.ptp(cached_codes[:, :3], axis=0).max() == 0.0  # cached: one colour for the grid point
    assert np.ptp(fresh_codes[:, :3], axis=0).min() > 0.1  # fresh: dlib's uniform(0.5, 1) colour per image
    assert np.allclose(fresh_codes[:, 3], cached_codes[:, 3])  # the sprite itself is the grid point's
    assert fresh.images_encoded == 50 and fresh.num_dims == 4


def test_panel_with_fresh_nuisance_moves_a_nuisance_reading_code_and_costs_encodings(color_dsprites):
    config = MetricConfig(num_train=300, num_eval=150, batch_size=16, panel=("factor_vae", "mig"))
    cached = panel_scores(color_dsprites, mean_colour, np.random.default_rng(0), config=config)
    fresh = panel_scores(color_dsprites, mean_colour, np.random.default_rng(0), config=config, fresh_nuisance=True)
    assert set(fresh) == set(cached)
    # with one cached colour per grid point the colour is a function of the factors; drawn fresh it is noise
    assert fresh["mig"] <= cached["mig"] + 0.02
    with pytest.raises(ValueError, match="fresh_nuisance needs ground-truth data"):
        panel_scores(color_dsprites, GridEncoding(color_dsprites, mean_colour), np.random.default_rng(0),
                     config=config, fresh_nuisance=True)
