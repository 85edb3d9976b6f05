"""The decoder's output bias started at the data's mean pixel logit (``TrainConfig.output_bias_init``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from betasweep.errors import ConfigError
from betasweep.models import ModelConfig, build_model, mean_pixel_logit
from betasweep.training import TrainConfig, load_checkpoint, train
from betasweep.training.loop import OUTPUT_BIAS_SAMPLE, seed_sequences


def test_mean_pixel_logit_closed_form():
    images = np.zeros((4, 3, 8, 8), np.float32)
    images[:, 0] = 0.25  # logit(1/4) = -ln 3
    images[:2, 1] = 1.0  # mean 1/2: logit 0
    out = mean_pixel_logit(images)  # channel 2 blank: clipped to logit(1e-4)
    assert out.dtype == torch.float32 and out.shape == (3,)
    assert out.tolist() == pytest.approx([-math.log(3), 0.0, math.log(1e-4 / (1 - 1e-4))], abs=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        mean_pixel_logit(np.zeros((0, 1, 8, 8)))


@pytest.mark.parametrize("config", [ModelConfig(width=4, hidden_dim=8, latent_dim=2),
                                    ModelConfig(model="nvae", width=4, num_channels=3),
                                    ModelConfig(model="cvae", width=4, hidden_dim=8, latent_dim=2, label_dim=3)])
def test_every_family_starts_at_the_constant_that_minimises_the_recon_loss(config):
    """With the decoder's weights zeroed, its logits are the bias alone: the best constant image's."""
    model = build_model(config)
    images = np.random.default_rng(0).uniform(0, 0.3, (16, config.num_channels, 64, 64)).astype(np.float32)
    model.init_output_bias(images)
    mean = images.mean(axis=(0, 2, 3))
    assert model.output_bias().detach().numpy() == pytest.approx(np.log(mean / (1 - mean)), abs=1e-5)


def test_train_starts_at_the_data_mean_and_the_checkpoint_rebuilds_it(dsprites, tmp_path):
    model_config = ModelConfig(width=4, hidden_dim=16, latent_dim=2)
    base = dict(batch_size=8, train_samples=8, learning_rate=1e-4, seed=3, log_every=1, device="cpu")
    records = {}
    for init in ("data_mean", "default"):
        path = tmp_path / f"{init}.pt"
        result = train(dsprites, model_config, TrainConfig(output_bias_init=init, **base), checkpoint_path=path)
        records[init] = result.history[0]["recon_loss"]
        bias = result.model.output_bias().detach()
        loaded, state = load_checkpoint(path)  # the config alone rebuilds it; the bias is in the weights
        assert torch.equal(loaded.output_bias(), bias)
        assert state["train_config"]["output_bias_init"] == init
        if init == "data_mean":  # one Adam step of lr 1e-4 from the sample's mean pixel logit
            sample = dsprites.sample_observations(OUTPUT_BIAS_SAMPLE, np.random.default_rng(seed_sequences(3)["bias"]))
            assert bias.item() == pytest.approx(mean_pixel_logit(sample).item(), abs=2e-4)
            assert bias.item() < -2  # dSprites is mostly black
        else:
            assert abs(bias.item()) <= 0.25 + 2e-4  # PyTorch: uniform(±1/sqrt(fan_in)), fan_in 1·4·4: about grey
    # grey costs about ln 2 nats a pixel; the mean image far less: the first step's recon loss shows it
    assert records["data_mean"] < 0.5 * records["default"]


def test_output_bias_init_changes_nothing_else(dsprites):
    """Same seed: the same initial weights but the bias, and the same data order (the bias sample has its own seed)."""
    model_config = ModelConfig(width=4, hidden_dim=16, latent_dim=2)
    seen = {}
    for init in ("data_mean", "default"):
        batches = []

        class Spy:
            num_channels = 1

            def sample_observations(self, n, rng):
                images = dsprites.sample_observations(n, rng)
                batches.append(images)
                return images

        train(Spy(), model_config, TrainConfig(batch_size=4, train_samples=8, seed=1, device="cpu",
                                               output_bias_init=init))
        seen[init] = batches[-2:]  # the two training batches
    assert all(np.array_equal(a, b) for a, b in zip(seen["data_mean"], seen["default"]))
    with pytest.raises(ConfigError, match="output_bias_init must be one of data_mean, default, got 'zero'"):
        TrainConfig(output_bias_init="zero")
