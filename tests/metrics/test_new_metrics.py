"""Modularity & explicitness, IRS and the unsupervised scores: closed forms (disentanglement_lib's own test
cases), controls with known answers on the real dSprites grid (factor values as codes, one factor left out,
zeros, random), and parity with disentanglement_lib's code (tests/metrics/dlib_reference.py) on the same
points of a trained encoder, within 0.02."""

from __future__ import annotations

import math

import numpy as np
import pytest

from betasweep.metrics import GridEncoding, MetricConfig, irs, modularity_explicitness, panel_scores, unsupervised_scores
from betasweep.metrics.modularity import modularity_of
from betasweep.metrics.unsupervised import gaussian_total_correlation, gaussian_wasserstein_correlation
from betasweep.metrics.vae import representation_function
import dlib_reference as dlib

N = {"num_train": 3000, "num_eval": 1500}


# --- closed forms: disentanglement_lib's modularity_explicitness_test.py and unsupervised_metrics_test.py cases ---

def test_modularity_of_importance_matrices_as_dlibs_tests():
    diagonal = np.diag(5.0 * np.ones(5))
    assert modularity_of(diagonal) == pytest.approx(1.0)
    assert modularity_of(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])) == pytest.approx(2 / 3)  # an empty code
    assert modularity_of(np.zeros((10, 10))) == 0.0
    assert modularity_of(np.vstack([diagonal, diagonal])) == pytest.approx(1.0)  # redundant codes
    assert modularity_of(diagonal[:2]) == pytest.approx(1.0)  # missed factors
    assert modularity_of(np.hstack([diagonal, diagonal])) == pytest.approx(1 - 1 / 9)  # one code, two factors


def test_gaussian_correlations_by_hand():
    assert gaussian_total_correlation(np.eye(5)) == pytest.approx(0.0, abs=1e-12)
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * math.log(1 - 0.81))
    assert gaussian_wasserstein_correlation(np.diag([1.0, 4.0])) == pytest.approx(0.0, abs=1e-9)
    # diag(cov) = 1: sqrtm(cov) has eigenvalues sqrt(1.9), sqrt(0.1)
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(4 - 2 * (math.sqrt(1.9) + math.sqrt(0.1)))


# --- controls on the real dSprites grid ---

@pytest.fixture(scope="module")
def controls(dsprites):
    factors = dsprites.factors_from_flat_index(np.arange(dsprites.num_images)).astype(np.float64)
    mixed = factors.copy()
    mixed[:, 3] = (factors[:, 3] + factors[:, 4]) / np.sqrt(2)
    mixed[:, 4] = (factors[:, 3] - factors[:, 4]) / np.sqrt(2)
    return {"factors": factors, "no_shape": factors[:, 1:], "mixed": mixed,
            "zeros": np.zeros((dsprites.num_images, 5)),
            "random": np.random.default_rng(123).normal(size=(dsprites.num_images, 10))}


def score(dsprites, codes, fn, **kwargs):
    return fn(dsprites, GridEncoding.from_codes(dsprites, codes), np.random.default_rng(0), **kwargs)


def test_modularity_and_explicitness_controls(dsprites, controls):
    factors = score(dsprites, controls["factors"], modularity_explicitness, **N)
    assert factors["modularity"] >= 0.9 and factors["explicitness"] >= 0.9  # dlib's identity test: [0.9, 1.0]
    no_shape = score(dsprites, controls["no_shape"], modularity_explicitness, **N)
    assert no_shape["modularity"] >= 0.9  # each code still one factor's
    # shape is not predictable (AUC ~0.5) while the other four stay: mean ~ (0.5 + 4 x factors') / 5
    assert no_shape["explicitness"] < factors["explicitness"] - 0.05
    assert score(dsprites, controls["zeros"], modularity_explicitness, **N)["modularity"] == 0.0  # dlib's bad test: [0, 0.2]
    random = score(dsprites, controls["random"], modularity_explicitness, **N)
    assert abs(random["explicitness"] - 0.5) < 0.05
    assert score(dsprites, controls["mixed"], modularity_explicitness, **N)["modularity"] < factors["modularity"] - 0.05  # two of five codes mixed: (3 + 2 x 0.75) / 5


def test_irs_controls(dsprites, controls):
    assert score(dsprites, controls["factors"], irs, num_train=3000)["irs"] >= 0.9  # dlib's identity test: [0.9, 1.0]
    assert score(dsprites, controls["no_shape"], irs, num_train=3000)["irs"] >= 0.9
    assert score(dsprites, controls["zeros"], irs, num_train=3000) == {"irs": 0.0, "irs_active_dims": 0}
    # independent noise: a group's 99th-percentile deviation (~2.6 SD) against the largest (~3.5 SD): ~0.3
    assert score(dsprites, controls["random"], irs, num_train=3000)["irs"] < 0.5
    assert score(dsprites, controls["mixed"], irs, num_train=3000)["irs"] < 0.9


def test_unsupervised_controls(dsprites, controls):
    factors = score(dsprites, controls["factors"], unsupervised_scores, num_train=3000)
    random = score(dsprites, controls["random"], unsupervised_scores, num_train=3000)
    for got in (factors, random):  # independent dimensions: about 0; the plug-in MI of 20 x 20 bins on 3,000
        # points is biased up by about (20 - 1)^2 / (2 x 3000) = 0.06 nats
        assert abs(got["gaussian_total_correlation"]) < 0.01 and got["wasserstein_correlation_norm"] < 0.01
        assert got["mutual_info_score"] < 0.1
    # posX and posY rotated by 45 degrees: dependent dimensions
    mixed = score(dsprites, controls["mixed"], unsupervised_scores, num_train=3000)
    assert mixed["mutual_info_score"] > factors["mutual_info_score"] + 0.02  # 4x; uncorrelated, so Gaussian TC ~0
    assert abs(mixed["gaussian_total_correlation"]) < 0.01


# --- parity with disentanglement_lib's code on a trained encoder ---

@pytest.fixture(scope="module")
def encoded(dsprites, one_torch_thread):
    """Every grid image's code under a small β-VAE trained 150 steps on dSprites (seconds; any encoder serves parity)."""
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    result = train(dsprites, ModelConfig(latent_dim=5, width=8, hidden_dim=32),
                   TrainConfig(beta=1.0, batch_size=32, train_samples=4800, learning_rate=1e-3, seed=0, device="cpu"))
    return GridEncoding(dsprites, representation_function(result.model)).encode_all()


@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_disentanglement_libs_code_on_the_same_points(dsprites, encoded, seed):
    ours = modularity_explicitness(dsprites, encoded, np.random.default_rng(seed), **N)
    codes, factors, codes_eval, factors_eval = encoded.observations(N["num_train"], N["num_eval"], np.random.default_rng(seed))
    theirs = dlib.modularity_explicitness(codes.T, factors.T, codes_eval.T, factors_eval.T)
    assert ours["modularity"] == pytest.approx(theirs["modularity_score"], abs=0.02)
    assert ours["explicitness"] == pytest.approx(theirs["explicitness_score_test"], abs=0.02)
    assert ours["explicitness_train"] == pytest.approx(theirs["explicitness_score_train"], abs=0.02)

    ours = irs(dsprites, encoded, np.random.default_rng(seed), num_train=N["num_train"])
    codes, factors, _, _ = encoded.observations(N["num_train"], 0, np.random.default_rng(seed))
    assert ours["irs"] == pytest.approx(dlib.irs(codes.T, factors.T), abs=0.02)

    ours = unsupervised_scores(dsprites, encoded, np.random.default_rng(seed), num_train=N["num_train"])
    theirs = dlib.unsupervised(codes.T)
    for key, dlib_key in (("gaussian_total_correlation", "gaussian_total_correlation"),
                          ("wasserstein_correlation", "gaussian_wasserstein_correlation"),
                          ("mutual_info_score", "mutual_info_score")):
        assert ours[key] == pytest.approx(float(np.real(theirs[dlib_key])), abs=0.02), key


def test_panel_computes_them_from_its_one_encoding(dsprites, encoded):
    config = MetricConfig(num_train=500, num_eval=250, panel=("mig", "modularity", "irs", "unsupervised"))
    got = panel_scores(dsprites, encoded, np.random.default_rng(0), config=config)
    assert {"modularity", "explicitness", "irs", "gaussian_total_correlation", "wasserstein_correlation",
            "mutual_info_score"} <= set(got)
    alone = panel_scores(dsprites, encoded, np.random.default_rng(0), metrics=("irs",), config=config)
    assert alone["irs"] == got["irs"]  # each metric its own child rng
