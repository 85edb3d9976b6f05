import pytest
import torch

from betasweep.errors import ConfigError
from betasweep.models import BetaVAE, ModelConfig


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_of_encode_decode_forward(channels):
    model = BetaVAE(ModelConfig(latent_dim=7, width=8, num_channels=channels))
    x = torch.rand(5, channels, 64, 64)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 7)
    assert model.decode(mu).shape == (5, channels, 64, 64)
    logits, mu2, logvar2, z = model(x)
    assert logits.shape == x.shape and z.shape == (5, 7)


def test_eval_mode_returns_mu_and_train_mode_samples():
    model = BetaVAE(ModelConfig(latent_dim=4, width=8))
    x = torch.rand(3, 1, 64, 64)
    model.eval()
    _, mu, _, z = model(x)
    assert torch.equal(z, mu)
    model.train()
    _, mu, _, z = model(x)
    assert not torch.equal(z, mu)


def test_width_is_the_conv_channel_count():
    model = BetaVAE(ModelConfig(width=12))
    assert model.encoder[0].out_channels == 12 and model.decoder[-1].in_channels == 12


@pytest.mark.parametrize("kwargs", [{"latent_dim": 0}, {"width": 0}, {"num_channels": 2}, {"image_size": 32}])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        ModelConfig(**kwargs)
