"""UDR (Duan et al. 2020, dlib's compute_udr_sklearn) on controls built from real dSprites factors."""

from __future__ import annotations

import numpy as np
import pytest

from betasweep.metrics import udr, udr_images, udr_of_models
from betasweep.metrics.udr import relative_strength_disentanglement


@pytest.fixture(scope="module")
def model(dsprites):
    """A 'model' of 1,000 held-out grid images: 5 active dimensions (the factor values) and 3
    inactive ones (small noise, KL below the 0.01 threshold), with its KL per dimension."""
    rng = np.random.default_rng(0)
    factors = dsprites.sample_factors(1000, rng).astype(np.float64)
    codes = np.concatenate([factors, rng.normal(scale=0.01, size=(1000, 3))], axis=1)
    kl = np.array([2.0, 1.5, 1.0, 3.0, 3.0, 0.001, 0.002, 0.0])
    return codes, kl


def flipped_permutation(codes, kl, seed=1):
    rng = np.random.default_rng(seed)
    order = rng.permutation(codes.shape[1])
    return codes[:, order] * rng.choice([-1.0, 1.0], size=codes.shape[1]), kl[order]


def rotated(codes, kl, seed=2):
    """A random rotation of the active (standardised) dimensions: same information, other axes."""
    active = kl > 0.01
    z = codes[:, active]
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(active.sum(), active.sum())))
    out = codes.copy()
    out[:, active] = ((z - z.mean(0)) / z.std(0)) @ q
    return out, kl


def test_relative_strength_closed_forms():
    assert relative_strength_disentanglement(np.eye(3)) == 1.0
    assert relative_strength_disentanglement(np.ones((3, 3))) == pytest.approx(1 / 3)
    assert relative_strength_disentanglement(np.zeros((3, 3))) == 0.0
    assert relative_strength_disentanglement(np.zeros((0, 4))) == 0.0


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_a_model_agrees_with_itself_and_its_permuted_sign_flipped_copy(model, correlation):
    codes, kl = model
    itself = udr([codes, codes], [kl, kl], correlation=correlation)
    copy = udr([codes, *flipped_permutation(codes, kl)[:1]], [kl, flipped_permutation(codes, kl)[1]],
               correlation=correlation)
    assert copy["udr"] == pytest.approx(itself["udr"], abs=1e-9)
    if correlation == "lasso":
        # Lasso(alpha=0.1) on standardised codes shrinks a one-to-one map to 1 - alpha on the
        # diagonal, and max²/sum of a single entry c is c: dlib's own test asserts [0.8, 1.0].
        assert itself["udr"] == pytest.approx(0.9, abs=1e-6)
    else:
        assert itself["udr"] >= 0.85  # off-diagonal |rho| of independent factors on 1,000 images
    assert len(itself["udr_per_model"]) == 2


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_a_rotation_of_the_active_latents_scores_lower(model, correlation):
    codes, kl = model
    itself = udr([codes, codes], [kl, kl], correlation=correlation)["udr"]
    rotation = udr([codes, rotated(codes, kl)[0]], [kl, kl], correlation=correlation)["udr"]
    assert rotation < itself - 0.3


def test_each_model_scores_the_median_of_its_pairs(model):
    codes, kl = model
    copy, copy_kl = flipped_permutation(codes, kl)
    turned, _ = rotated(codes, kl)
    got = udr([codes, copy, turned], [kl, copy_kl, kl])
    per_model = got["udr_per_model"]
    # the two that agree each have one good pair and one poor one; the rotated model two poor ones
    assert per_model[0] == pytest.approx(per_model[1], abs=1e-6)
    assert per_model[0] > per_model[2] + 0.2
    assert got["udr"] == pytest.approx(np.mean(per_model))


def test_inactive_dimensions_are_left_out(model):
    codes, kl = model
    noisy = codes.copy()
    noisy[:, 5:] = np.random.default_rng(3).normal(size=(len(codes), 3))  # large but inactive (KL < 0.01)
    assert udr([noisy, noisy], [kl, kl])["udr"] == pytest.approx(0.9, abs=1e-6)
    collapsed = np.zeros(8)  # a model with no active dimension agrees with nothing
    assert udr([codes, codes], [kl, collapsed])["udr"] == 0.0


def test_bad_input_is_a_value_error(model):
    codes, kl = model
    with pytest.raises(ValueError, match="at least 2"):
        udr([codes], [kl])
    with pytest.raises(ValueError, match="same images"):
        udr([codes, codes[:500]], [kl, kl])
    with pytest.raises(ValueError, match=r"kl_per_dim 1: expected shape \(8,\)"):
        udr([codes, codes], [kl, kl[:3]])
    with pytest.raises(ValueError, match="'pearson'"):
        udr([codes, codes], [kl, kl], correlation="pearson")
    with pytest.raises(ValueError, match="at least 2 models"):
        udr_of_models([lambda x: x], [kl], np.zeros((4, 1, 64, 64), dtype=np.float32))


def test_udr_of_a_trained_encoder_and_its_permuted_copy(dsprites, trained_small, one_torch_thread):
    from betasweep.metrics import representation_function, vae_statistics

    result, _ = trained_small
    represent = representation_function(result.model)
    kl = np.array(vae_statistics(result.model, dsprites, np.random.default_rng(0), num_samples=1000)["kl_per_dim"])
    order = np.arange(len(kl))[::-1]
    images = udr_images(dsprites, np.random.default_rng(1))
    assert images.shape == (1000, 1, 64, 64)
    got = udr_of_models([represent, lambda x: -represent(x)[:, order]], [kl, kl[order]], images)
    assert (kl > 0.01).sum() >= 2
    assert got["udr"] == pytest.approx(udr_of_models([represent, represent], [kl, kl], images)["udr"], abs=1e-9)
    assert 0.5 < got["udr"] <= 0.9 + 1e-9
