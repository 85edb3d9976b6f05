"""The model families behind one interface: closed forms, configs, the loss the loop minimises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from betasweep.data import Shapes
from betasweep.errors import ConfigError
from betasweep.models import (
    CVAE,
    NVAE,
    BetaVAE,
    ModelConfig,
    build_model,
    residual_normal_kl,
    resolve_conditioning,
)
from betasweep.training.loop import TrainConfig, _torch_seed, seed_sequences, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_residual_normal_kl_equals_a_monte_carlo_estimate_within_1_percent():
    """Vahdat & Kautz 2020, Eq. 2 against E_q[log q(z) - log p(z)] from 2 million samples."""
    mu_p, log_sigma_p = torch.tensor([0.3, -1.0, 0.0]), torch.tensor([-0.4, 0.5, 0.0])
    d_mu, d_log_sigma = torch.tensor([0.8, -1.5, 0.4]), torch.tensor([0.3, -0.6, 0.2])
    closed = residual_normal_kl(d_mu, d_log_sigma, log_sigma_p)
    p = torch.distributions.Normal(mu_p, log_sigma_p.exp())
    q = torch.distributions.Normal(mu_p + d_mu, (log_sigma_p + d_log_sigma).exp())
    z = q.sample(torch.Size([2_000_000]))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(dim=0)
    assert torch.allclose(closed, torch.distributions.kl_divergence(q, p), rtol=1e-5)
    assert torch.all((closed - monte_carlo).abs() <= 0.01 * closed), (closed, monte_carlo)


def test_unknown_family_and_a_field_of_another_family_are_refused_naming_it():
    with pytest.raises(ConfigError, match="model must be one of beta_vae, cvae, nvae"):
        ModelConfig(model="vq_vae")
    with pytest.raises(ConfigError, match="^nvae_groups is a field of model nvae, not of beta_vae$"):
        ModelConfig(nvae_groups=2)
    with pytest.raises(ConfigError, match="^conditioned_factor is a field of model cvae, not of nvae$"):
        ModelConfig(model="nvae", conditioned_factor="shape")
    with pytest.raises(ConfigError, match="^latent_dim is a field of model beta_vae"):
        ModelConfig(model="nvae", latent_dim=6)


def test_cvae_conditioning_resolves_against_the_data(dsprites, celeba_labels):
    resolved = resolve_conditioning(ModelConfig(model="cvae"), dsprites)
    assert resolved.conditioned_factor == "shape" and resolved.label_dim == 3
    assert resolve_conditioning(ModelConfig(model="cvae", conditioned_factor="scale"), dsprites).label_dim == 6
    with pytest.raises(ConfigError, match="unknown factor 'colour'"):
        resolve_conditioning(ModelConfig(model="cvae", conditioned_factor="colour"), dsprites)
    procedural = Shapes()  # the embedded simulator: its full 40 orientations, not the grid's 10
    assert resolve_conditioning(ModelConfig(model="cvae", conditioned_factor="orientation"), procedural).label_dim == 40
    with pytest.raises(ConfigError, match="label_dim 10 does not match the data's labels \\(40\\)"):
        resolve_conditioning(ModelConfig(model="cvae", conditioned_factor="orientation", label_dim=10), procedural)
    with pytest.raises(ConfigError, match="conditioned_attributes applies to CelebA"):
        resolve_conditioning(ModelConfig(model="cvae", conditioned_attributes=["Smiling"]), procedural)
    attributes = resolve_conditioning(ModelConfig(model="cvae", num_channels=3), celeba_labels)
    assert attributes.label_dim == 40 and attributes.conditioned_attributes == celeba_labels.attribute_names
    with pytest.raises(ConfigError, match="unknown CelebA attribute 'Smilling'"):
        resolve_conditioning(ModelConfig(model="cvae", num_channels=3, conditioned_attributes=["Smilling"]), celeba_labels)
    with pytest.raises(ConfigError, match="label_dim is unknown"):
        build_model(ModelConfig(model="cvae"))


@pytest.mark.parametrize("config", [
    ModelConfig(latent_dim=5, width=8, hidden_dim=32),
    ModelConfig(model="cvae", latent_dim=5, width=8, hidden_dim=32, conditioned_factor="shape", label_dim=3),
    ModelConfig(model="nvae", width=8, nvae_latent_channels=2, nvae_scales=2, nvae_groups=2),
    ModelConfig(model="nvae", width=8, nvae_latent_channels=2, nvae_representation="all"),
], ids=["beta_vae", "cvae", "nvae", "nvae-all"])
def test_every_family_offers_the_interface_with_its_shapes(config):
    model = build_model(config)
    assert isinstance(model, {"beta_vae": BetaVAE, "cvae": CVAE, "nvae": NVAE}[config.model])
    x = torch.rand(4, 1, 64, 64)
    y = torch.eye(3)[[0, 1, 2, 0]] if model.conditional else None
    terms = model.elbo_terms(x, y)
    assert terms.recon_loss.shape == (4,) and terms.kl.shape == (4, model.kl_dim)
    assert torch.all(terms.kl >= 0)
    model.eval()
    code = model.representation(x, y)
    assert code.shape == (4, model.representation_dim)
    assert torch.equal(code, model.representation(x, y))  # deterministic
    assert model.decode(code, y).shape == x.shape and model.reconstruct(x, y).shape == x.shape
    if config.model == "nvae":
        groups = config.nvae_groups * config.nvae_scales
        sizes = [config.nvae_latent_channels * r * r for r in model.resolutions]
        assert model.kl_dim == config.latent_size == sum(sizes) and len(sizes) == groups
        assert model.representation_dim == (sizes[0] if config.nvae_representation == "top" else sum(sizes))
        assert len(model.kl_groups(terms.kl.mean(0).tolist())) == groups


def test_nvae_top_group_kl_is_the_standard_normal_kl_and_lower_groups_are_residual():
    """The top group's prior is N(0, I); a zero-initialised posterior starts every group at KL 0."""
    model = build_model(ModelConfig(model="nvae", width=8, nvae_latent_channels=2))
    assert torch.count_nonzero(model.elbo_terms(torch.rand(2, 1, 64, 64)).kl) == 0
    torch.nn.init.normal_(model.posterior[0].bias)
    d_mu, d_log_sigma = model.posterior[0].bias.detach().chunk(2)
    kl = model.elbo_terms(torch.rand(2, 1, 64, 64)).kl[:, : model.group_sizes[0]]
    top = (0.5 * (d_mu**2 + torch.exp(2 * 5 * torch.tanh(d_log_sigma / 5)) - 2 * 5 * torch.tanh(d_log_sigma / 5) - 1))
    expected = top[:, None, None].expand(2, 4, 4).flatten()
    assert torch.allclose(kl, expected.expand_as(kl), rtol=1e-5, atol=1e-6)


def test_spectral_regularisation_power_iteration_finds_the_largest_singular_value():
    model = build_model(ModelConfig(model="nvae", width=8, nvae_latent_channels=2, spectral_weight=0.5))
    model.train()
    for _ in range(60):
        estimate = model.spectral_norms()
    exact = torch.stack([torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2) for c in model._convs])
    assert torch.allclose(estimate.detach(), exact, rtol=0.02)
    assert model.regularization().item() == pytest.approx(0.5 * estimate.sum().item(), rel=1e-4)
    assert model.kl_weight(0, 100) == 0.0 and model.kl_weight(15, 100) == pytest.approx(0.5) and model.kl_weight(30, 100) == 1


class FixedBatch:
    """One real dSprites batch served for every request (with its factors for a cvae)."""

    def __init__(self, dsprites, n: int):
        self.factor_names, self.factor_sizes, self.num_channels = dsprites.factor_names, dsprites.factor_sizes, 1
        self.factors = dsprites.sample_factors(n, np.random.default_rng(7))
        self.images = dsprites.images_from_factors(self.factors)

    def sample_observations(self, n, rng):
        return self.images

    def sample_labelled(self, n, rng):
        return self.images, self.factors


@pytest.mark.parametrize("family", ["beta_vae", "cvae", "nvae"])
def test_the_loss_of_every_family_is_recon_plus_beta_kl_by_hand(dsprites, family):
    """The loop's first record against recon + β·KL written out from the networks' outputs."""
    data, beta = FixedBatch(dsprites, 8), 3.0
    config = {"beta_vae": ModelConfig(latent_dim=4, width=8, hidden_dim=32),
              "cvae": ModelConfig(model="cvae", latent_dim=4, width=8, hidden_dim=32),
              "nvae": ModelConfig(model="nvae", width=8, nvae_latent_channels=2, kl_warmup=0.0, spectral_weight=0.0)}[family]
    record = train(data, config, TrainConfig(beta=beta, batch_size=8, train_samples=8, log_every=1, seed=5)).last

    seeds = seed_sequences(5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_torch_seed(seeds["init"]))
        model = build_model(resolve_conditioning(config, data))
    model.init_output_bias(data.sample_observations(1_000, np.random.default_rng(seeds["bias"])))  # data_mean start
    model.train()
    noise = torch.Generator().manual_seed(_torch_seed(seeds["noise"]))
    x = torch.from_numpy(data.images)
    with torch.no_grad():
        if family == "nvae":
            terms = model.elbo_terms(x, generator=noise)  # the residual-normal KL: its own closed-form test
            recon, kl = terms.recon_loss.mean(), terms.kl.sum(dim=1).mean()
        else:
            y = torch.eye(3)[data.factors[:, 0]] if family == "cvae" else None
            mu, logvar = model.encode(x, y) if y is not None else model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=noise)
            logits = model.decode(z, y)
            recon = (torch.clamp(logits, min=0) - logits * x + torch.log1p(torch.exp(-logits.abs()))).sum(dim=(1, 2, 3)).mean()
            kl = (0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(dim=1).mean()
    assert record["recon_loss"] == pytest.approx(recon.item(), rel=1e-5)
    assert record["kl"] == pytest.approx(kl.item(), rel=1e-4, abs=1e-6)
    assert record["loss"] == pytest.approx(recon.item() + beta * kl.item(), rel=1e-5)
    if family == "nvae":
        assert set(record) >= {"kl_group_0_4x4", "kl_group_1_8x8", "spectral"}


def test_kl_warmup_ramps_beta_in_every_family_and_defaults_by_family():
    # KL annealing (Bowman et al. 2016): the weight on β grows linearly over the first fraction of the steps.
    for family in ("beta_vae", "nvae"):
        model = build_model(ModelConfig(model=family, width=8, kl_warmup=0.5))
        assert [model.kl_weight(step, 100) for step in (0, 25, 50, 99)] == [0.0, 0.5, 1.0, 1.0]
    # None means the family's default: off for beta_vae (as before the field existed), 0.3 for nvae.
    assert build_model(ModelConfig(width=8)).kl_weight(0, 100) == 1.0
    assert build_model(ModelConfig(model="nvae", width=8)).kl_weight(15, 100) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="kl_warmup must be a fraction"):
        ModelConfig(kl_warmup=1.5)
