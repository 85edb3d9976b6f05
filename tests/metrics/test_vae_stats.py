import numpy as np
import pytest

from betasweep.metrics import active_units, vae_statistics


def test_active_units_counts_dimensions_with_variance_above_001():
    rng = np.random.default_rng(0)
    mu = np.concatenate([rng.normal(0, 1.0, (1000, 3)), rng.normal(0, 0.01, (1000, 2))], axis=1)
    assert active_units(mu) == 3
    assert active_units(mu, threshold=1e-6) == 5


def test_vae_statistics_are_consistent_and_deterministic(dsprites, trained_small):
    model = trained_small[0].model
    a = vae_statistics(model, dsprites, np.random.default_rng(0), num_samples=600, batch_size=256)
    b = vae_statistics(model, dsprites, np.random.default_rng(0), num_samples=600, batch_size=256)
    assert a == b
    assert len(a["kl_per_dim"]) == 6 and a["kl"] == pytest.approx(sum(a["kl_per_dim"]))
    assert a["elbo"] == pytest.approx(-(a["recon_loss"] + a["kl"]))
    assert 0 < a["recon_loss"] < 64 * 64 * np.log(2)
    assert not model.training
