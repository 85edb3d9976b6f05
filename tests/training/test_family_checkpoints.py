"""Checkpoints of every family reload to identical outputs; checkpoints from before families load as beta_vae."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from betasweep.errors import DataError
from betasweep.models import BetaVAE, ModelConfig
from betasweep.training import TrainConfig, load_checkpoint, train
from betasweep.training.checkpoint import CHECKPOINT_FORMAT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIGS = {
    "beta_vae": ModelConfig(latent_dim=4, width=8, hidden_dim=32),
    "cvae": ModelConfig(model="cvae", latent_dim=4, width=8, hidden_dim=32),
    "nvae": ModelConfig(model="nvae", width=8, nvae_latent_channels=2),
}


@pytest.mark.parametrize("family", list(CONFIGS))
def test_checkpoint_of_every_family_reloads_to_identical_outputs(dsprites, tmp_path, family):
    path = tmp_path / "checkpoint.pt"
    result = train(dsprites, CONFIGS[family], TrainConfig(batch_size=16, train_samples=64, seed=1), checkpoint_path=path)
    model, state = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert type(model) is type(result.model) and state["model_config"]["model"] == family
    assert state["model_config"] == result.model_config.to_dict()  # cvae: label_dim and factor resolved
    torch.load(path, weights_only=True)
    x = torch.from_numpy(dsprites.sample_observations(6, np.random.default_rng(0)))
    y = torch.eye(3)[[0, 1, 2, 0, 1, 2]] if model.conditional else None
    with torch.no_grad():
        code = model.representation(x, y)
        assert torch.equal(code, result.model.representation(x, y))
        assert torch.equal(model.decode(code, y), result.model.decode(code, y))
        assert torch.equal(model.reconstruct(x, y), result.model.reconstruct(x, y))
        generator = lambda: torch.Generator().manual_seed(3)  # noqa: E731
        a, b = model.elbo_terms(x, y, generator()), result.model.elbo_terms(x, y, generator())
        assert torch.equal(a.recon_loss, b.recon_loss) and torch.equal(a.kl, b.kl)


def test_checkpoint_from_before_model_families_loads_as_beta_vae(tmp_path):
    """The format written before this change: a model_config without ``model`` or any family field."""
    torch.manual_seed(0)
    old_config = {"latent_dim": 3, "width": 4, "hidden_dim": 8, "num_channels": 1, "image_size": 64}
    net = BetaVAE(ModelConfig(**old_config))
    path = tmp_path / "old.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": old_config,
                "train_config": {"beta": 4.0, "batch_size": 64}, "data": {"dataset": "shapes"},
                "model_state": net.state_dict(), "optimizer_state": {}, "step": 1, "samples_seen": 64,
                "rng": {}, "history": [], "metrics": {}}, path)
    model, state = load_checkpoint(path)
    assert isinstance(model, BetaVAE) and model.config.model == "beta_vae" and model.config.latent_dim == 3
    x = torch.rand(2, 1, 64, 64)
    net.eval()
    with torch.no_grad():
        assert torch.equal(model.representation(x), net.encode(x)[0])


def test_checkpoint_with_a_field_unknown_to_this_version_says_so(tmp_path):
    path = tmp_path / "future.pt"
    config = {**ModelConfig(latent_dim=2, width=4, hidden_dim=8).to_dict(), "flows": 2}
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": config, "model_state": {}}, path)
    with pytest.raises(DataError, match="model_config field 'flows' is unknown"):
        load_checkpoint(path)
