"""disentanglement_lib's other methods (FactorVAE, DIP-VAE-I/II, β-TCVAE, AnnealedVAE): each loss against
its formula on fixed tensors (values by hand or by the formula in numpy, not by our code), what each
regulariser pushes in a short run, configs and checkpoints.

Formulas: google-research/disentanglement_lib, methods/unsupervised/vae.py (``compute_covariance_z_mean``,
``regularize_diag_off_diag_dip``, ``total_correlation``, ``FactorVAE.model_fn``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from betasweep.data import Shapes
from betasweep.errors import ConfigError
from betasweep.models import ModelConfig, build_model
from betasweep.models import dip_vae
from betasweep.models.beta_tcvae import total_correlation
from betasweep.models.dip_vae import covariance_z_mean, dip_regularizer
from betasweep.models.factor_vae import FcDiscriminator, discriminator_loss, factor_vae_tc, shuffle_codes
from betasweep.models.regularized import MethodTerms
from betasweep.training import TrainConfig, train
from betasweep.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"latent_dim": 4, "width": 8, "hidden_dim": 32}
METHODS = ("annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tcvae")

# mu rows (1, 2), (-1, -2), (0, 0), (0, 0): mean 0, E[x^2] = 0.5, E[y^2] = 2, E[xy] = 1.
MU = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [0.0, 0.0], [0.0, 0.0]])


def terms(mu, logvar, z=None):
    b = len(mu)
    return MethodTerms(torch.zeros(b), torch.zeros_like(mu), mu, logvar, mu if z is None else z)


def test_covariance_of_mu_is_the_biased_batch_covariance():
    assert torch.allclose(covariance_z_mean(MU), torch.tensor([[0.5, 1.0], [1.0, 2.0]]))


def test_dip_vae_i_penalty_by_hand():
    # lambda_od 2, lambda_d 10 * 2: 2 * (1^2 + 1^2) + 20 * ((0.5 - 1)^2 + (2 - 1)^2) = 4 + 25
    model = build_model(ModelConfig(model="dip_vae_i", lambda_od=2.0, latent_dim=2, width=4, hidden_dim=8))
    penalty, stats = model.penalty(terms(MU, torch.zeros_like(MU)))
    assert penalty.item() == pytest.approx(29.0)
    assert stats["cov_mu_offdiag"].item() == pytest.approx(2.0)
    assert dip_regularizer(torch.eye(3), 5.0, 7.0).item() == 0.0


def test_dip_vae_ii_adds_the_mean_encoder_variance_to_the_diagonal():
    # E[diag sigma^2] = 0.5: C = [[1, 1], [1, 2.5]]; lambda_od = lambda_d = 2: 2 * 2 + 2 * (0 + 1.5^2) = 8.5
    model = build_model(ModelConfig(model="dip_vae_ii", lambda_od=2.0, latent_dim=2, width=4, hidden_dim=8))
    penalty, _ = model.penalty(terms(MU, torch.full_like(MU, math.log(0.5))))
    assert penalty.item() == pytest.approx(8.5)


def test_total_correlation_equals_the_minibatch_weighted_formula():
    rng = np.random.default_rng(0)
    z, mu, logvar = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(scale=0.5, size=(6, 3))
    # log q(z_i,k | x_j): (i, j, k)
    log_q = -0.5 * ((z[:, None] - mu[None]) ** 2 / np.exp(logvar[None]) + logvar[None] + np.log(2 * np.pi))
    expected = np.mean(logsumexp(log_q.sum(axis=2), axis=1) - logsumexp(log_q, axis=1).sum(axis=1))
    got = total_correlation(*(torch.tensor(a) for a in (z, mu, logvar)))
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # one dimension: the joint is its own product, TC 0
    assert total_correlation(*(torch.tensor(a[:, :1]) for a in (z, mu, logvar))).item() == pytest.approx(0.0, abs=1e-12)


def test_beta_tcvae_penalty_is_beta_minus_one_times_tc_and_zero_at_beta_one():
    rng = torch.Generator().manual_seed(2)
    mu, logvar, z = torch.randn(3, 8, 4, generator=rng)
    t = terms(mu, logvar, z)
    tc = total_correlation(z, mu, logvar).item()
    for beta in (1.0, 6.0):
        model = build_model(ModelConfig(model="beta_tcvae", tc_beta=beta, **SMALL))
        assert model.penalty(t)[0].item() == pytest.approx((beta - 1) * tc)


def test_factor_vae_tc_and_discriminator_loss_by_hand():
    logits = torch.tensor([[2.0, 0.5], [0.0, 1.0]])
    assert factor_vae_tc(logits).item() == pytest.approx((1.5 - 1.0) / 2)
    # equal logits: p = 1/2 on both sides, loss -(1/2 log 1/2 + 1/2 log 1/2) = log 2
    assert discriminator_loss(torch.zeros(5, 2), torch.zeros(7, 2)).item() == pytest.approx(math.log(2))
    # p_0(z) = sigmoid(3), p_1(shuffled) = sigmoid(1)
    got = discriminator_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item()
    assert got == pytest.approx(-(0.5 * math.log(1 / (1 + math.exp(-3))) + 0.5 * math.log(1 / (1 + math.exp(-1)))))


def test_factor_vae_discriminator_is_dlibs_fc_discriminator():
    d = FcDiscriminator(10)
    linears = [m for m in d.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    assert all(m.negative_slope == 0.2 for m in d.net if isinstance(m, torch.nn.LeakyReLU))
    model = build_model(ModelConfig(model="factor_vae", **SMALL))
    opt = model.discriminator_optimizer()
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.9) and opt.defaults["eps"] == 1e-8
    assert not {id(p) for p in model.discriminator.parameters()} & {id(p) for p in model.vae_parameters()}


def test_shuffle_codes_permutes_each_column_independently():
    z = torch.arange(200.0).reshape(100, 2)
    shuffled = shuffle_codes(z, torch.Generator().manual_seed(0))
    for k in range(2):
        assert sorted(shuffled[:, k].tolist()) == z[:, k].tolist()
    assert not torch.equal(shuffled, z)
    assert not torch.equal(torch.argsort(shuffled[:, 0]), torch.argsort(shuffled[:, 1]))  # not one shared order


def test_method_loss_is_recon_plus_kl_plus_penalty():
    model = build_model(ModelConfig(model="dip_vae_i", lambda_od=2.0, latent_dim=2, width=4, hidden_dim=8))
    t = MethodTerms(torch.tensor([10.0, 30.0]), torch.tensor([[1.0, 2.0], [3.0, 0.0]]), MU[:2], torch.zeros(2, 2), MU[:2])
    loss, d_loss, _ = model.method_loss(t)
    penalty = model.penalty(t)[0].item()
    assert d_loss is None and loss.item() == pytest.approx(20.0 + 3.0 + penalty)


def test_strengths_are_refused_outside_their_range_and_on_another_method():
    with pytest.raises(ConfigError, match="^tc_gamma must be a number >= 0 for model factor_vae, got -1"):
        ModelConfig(model="factor_vae", tc_gamma=-1)
    with pytest.raises(ConfigError, match="^tc_beta must be a number >= 1"):
        ModelConfig(model="beta_tcvae", tc_beta=0.5)
    with pytest.raises(ConfigError, match="^lambda_od must be a number >= 0"):
        ModelConfig(model="dip_vae_ii", lambda_od=float("nan"))
    with pytest.raises(ConfigError, match="^tc_gamma is a field of model factor_vae, not of dip_vae_i$"):
        ModelConfig(model="dip_vae_i", tc_gamma=20)
    with pytest.raises(ConfigError, match="^lambda_od is a field of model dip_vae_i, not of beta_vae$"):
        ModelConfig(lambda_od=5)
    with pytest.raises(ConfigError, match="model must be one of .*beta_tcvae, got 'dip_vae_iii'"):
        ModelConfig(model="dip_vae_iii")


# --- short training runs on the procedural shapes ------------------------------------------------

@pytest.fixture(scope="module")
def shapes():
    return Shapes()


def run(shapes, tmp_path=None, *, steps=200, **model):
    config = TrainConfig(batch_size=32, train_samples=32 * steps, learning_rate=1e-3, seed=3, log_every=50, device="cpu")
    return train(shapes, ModelConfig(**{**SMALL, **model}), config,
                 checkpoint_path=None if tmp_path is None else tmp_path / "model.pt")


def test_beta_tcvae_at_beta_one_trains_as_the_plain_vae(shapes):
    tc = run(shapes, steps=60, model="beta_tcvae", tc_beta=1.0)
    plain_config = TrainConfig(beta=1.0, batch_size=32, train_samples=32 * 60, learning_rate=1e-3, seed=3,
                               log_every=50, device="cpu")
    plain = train(shapes, ModelConfig(**SMALL), plain_config)
    assert [r["loss"] for r in tc.history] == pytest.approx([r["loss"] for r in plain.history], rel=1e-6)
    for (name, a), b in zip(tc.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_dip_vae_off_diagonal_term_lowers_the_off_diagonal_covariance_of_mu(shapes, monkeypatch):
    # Against the same run without the off-diagonal term (lambda_d as before): its diagonal term alone drives
    # Var[mu_i] to 1 and the off-diagonals up with it; lambda_od * sum_{i!=j} Cov^2 holds them down.
    full = run(shapes, model="dip_vae_i", lambda_od=20.0)
    original = dip_vae.dip_regularizer
    monkeypatch.setattr(dip_vae, "dip_regularizer", lambda cov, lambda_od, lambda_d: original(cov, 0.0, lambda_d))
    diagonal_only = run(shapes, model="dip_vae_i", lambda_od=20.0)
    assert full.history[-1]["cov_mu_offdiag"] < 0.5 * diagonal_only.history[-1]["cov_mu_offdiag"]


def test_factor_vae_lowers_the_discriminators_tc_estimate(shapes):
    weak = run(shapes, model="factor_vae", tc_gamma=0.0)
    strong = run(shapes, model="factor_vae", tc_gamma=50.0)
    assert {"tc", "discriminator_loss"} <= set(strong.history[-1])
    assert strong.history[-1]["tc"] < weak.history[-1]["tc"]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_checkpoints_and_rebuilds_from_the_file_alone(shapes, tmp_path, method):
    result = run(shapes, tmp_path, steps=4, model=method)
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert type(model) is type(result.model) and model.config.model == method
    x = torch.from_numpy(shapes.sample_observations(5, np.random.default_rng(0)))
    with torch.no_grad():
        assert torch.equal(model.eval().representation(x), result.model.representation(x))


def test_factor_vae_resumes_bit_for_bit_with_its_discriminators_optimizer(shapes, tmp_path):
    straight = run(shapes, steps=8, model="factor_vae", tc_gamma=30.0)
    config = dict(batch_size=32, learning_rate=1e-3, seed=3, log_every=50, device="cpu")
    path = tmp_path / "resume.pt"
    model_config = ModelConfig(**SMALL, model="factor_vae", tc_gamma=30.0)
    train(shapes, model_config, TrainConfig(train_samples=32 * 8, checkpoint_every=4, **config), checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    assert "discriminator_optimizer_state" in state
    path.unlink()
    # stop at 4 steps (checkpoint), then continue to 8 from the file
    train(shapes, model_config, TrainConfig(train_samples=32 * 4, **config), checkpoint_path=path)
    resumed = train(shapes, model_config, TrainConfig(train_samples=32 * 8, **config), checkpoint_path=path)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
