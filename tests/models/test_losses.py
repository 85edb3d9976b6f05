import math

import pytest
import torch

from betasweep.models import (
    bernoulli_recon_loss,
    beta_norm,
    beta_vae_loss,
    capacity,
    capacity_loss,
    gaussian_kl,
    kl_per_dim,
)


def test_kl_of_unit_mean_zero_logvar_over_10_dims_is_5_nats():
    mu, logvar = torch.ones(3, 10), torch.zeros(3, 10)
    assert gaussian_kl(mu, logvar).shape == (3, 10)
    assert kl_per_dim(mu, logvar).sum().item() == pytest.approx(5.0)


def test_kl_is_zero_at_the_prior_and_matches_closed_form_for_a_scale():
    assert gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max().item() == 0.0
    sigma2 = 4.0  # KL(N(0, s2) || N(0, 1)) = 0.5 (s2 - ln s2 - 1)
    expected = 0.5 * (sigma2 - math.log(sigma2) - 1)
    assert gaussian_kl(torch.zeros(1, 1), torch.full((1, 1), math.log(sigma2))).item() == pytest.approx(expected)


def test_recon_loss_of_perfect_logits_is_about_zero_and_of_zero_logits_is_n_ln2():
    x = (torch.rand(5, 1, 64, 64) > 0.5).float()
    perfect = (x * 2 - 1) * 50.0
    assert bernoulli_recon_loss(perfect, x).item() == pytest.approx(0.0, abs=1e-6)
    assert bernoulli_recon_loss(torch.zeros_like(x), x).item() == pytest.approx(64 * 64 * math.log(2), rel=1e-6)


def test_recon_loss_is_a_per_image_mean_so_it_does_not_grow_with_the_batch():
    x = (torch.rand(4, 1, 64, 64) > 0.5).float()
    logits = torch.randn(4, 1, 64, 64)
    single = bernoulli_recon_loss(logits[:2], x[:2])
    doubled = bernoulli_recon_loss(torch.cat([logits[:2]] * 8), torch.cat([x[:2]] * 8))
    assert doubled.item() == pytest.approx(single.item(), rel=1e-6)


def test_beta_and_capacity_losses():
    recon, kl = torch.tensor(100.0), torch.tensor(10.0)
    assert beta_vae_loss(recon, kl, 4.0).item() == pytest.approx(140.0)
    assert capacity(0, 25.0, 1000) == 0.0
    assert capacity(500, 25.0, 1000) == pytest.approx(12.5)
    assert capacity(5000, 25.0, 1000) == pytest.approx(25.0)
    # |10 - 12.5| * 1000 + 100
    assert capacity_loss(recon, kl, gamma=1000.0, step=500, capacity_max=25.0, capacity_steps=1000).item() == pytest.approx(2600.0)


def test_beta_norm_follows_higgins():
    # Higgins et al. 2017: beta_norm = beta * m / n with n = 64 * 64 pixels for dSprites.
    assert beta_norm(4.0, 10, 4096) == pytest.approx(40 / 4096)
