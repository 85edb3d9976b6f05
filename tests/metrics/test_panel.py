"""The metric panel on the real dSprites grid: control representations with known answers.

Representations are given as codes of every grid image (``GridEncoding.from_codes``): the factor
class indices as floats (as disentanglement_lib's tests do), a random one, the factor values
without shape, and the factor values with posX/posY rotated by 45°. Figures in comments are
disentanglement_lib's own on the same representations at its defaults; the tests use fewer points
(2,000 / 1,000, DCI 500 / 250) except MIG, which is cheap and runs at its default 10,000.
"""

from __future__ import annotations

import numpy as np
import pytest

from betasweep.errors import ConfigError
from betasweep.metrics import (
    DEFAULT_PANEL,
    PANEL_METRICS,
    GridEncoding,
    LabelledEncoding,
    MetricConfig,
    beta_vae_score,
    dci,
    evaluate_model,
    factor_vae_score,
    mig,
    panel_scores,
    sap_score,
)
from betasweep.models import BetaVAE, ModelConfig

SMALL = {"num_train": 2000, "num_eval": 1000}
DCI_SMALL = {"num_train": 500, "num_eval": 250}


@pytest.fixture(scope="module")
def controls(dsprites) -> dict[str, np.ndarray]:
    """Codes of all 46,080 grid images, row = flat index, for each control representation."""
    factors = dsprites.factors_from_flat_index(np.arange(dsprites.num_images)).astype(np.float64)
    mixed = factors.copy()
    mixed[:, 3] = (factors[:, 3] + factors[:, 4]) / np.sqrt(2)
    mixed[:, 4] = (factors[:, 3] - factors[:, 4]) / np.sqrt(2)
    return {
        "factors": factors,
        "random": np.random.default_rng(123).normal(size=(dsprites.num_images, 10)),
        "no_shape": factors[:, 1:],
        "mixed": mixed,
    }


def scores(dsprites, codes, *, with_dci=False, **kwargs) -> dict[str, float]:
    encoding = GridEncoding.from_codes(dsprites, codes)
    out = {
        "beta_vae": beta_vae_score(dsprites, encoding, np.random.default_rng(0), **SMALL)["eval_accuracy"],
        "factor_vae": factor_vae_score(dsprites, encoding, np.random.default_rng(0), num_variance_estimate=2000,
                                       **SMALL)["eval_accuracy"],
        "mig": mig(dsprites, encoding, np.random.default_rng(0))["mig"],
        "sap": sap_score(dsprites, encoding, np.random.default_rng(0), **SMALL)["sap"],
    }
    if with_dci:
        out.update(dci(dsprites, encoding, np.random.default_rng(0), **DCI_SMALL))
    return out


@pytest.fixture(scope="module")
def control_scores(dsprites, controls):
    return {name: scores(dsprites, codes, with_dci=name in ("factors", "mixed")) for name, codes in controls.items()}


def test_factor_values_score_perfectly(control_scores):
    got = control_scores["factors"]
    assert got["beta_vae"] >= 0.99
    assert got["factor_vae"] >= 0.99  # dlib 1.0
    assert got["mig"] >= 0.99  # dlib 0.997
    assert got["dci_disentanglement"] >= 0.99 and got["dci_completeness"] >= 0.99
    assert got["dci_informativeness"] >= 0.99


def test_random_representation_scores_chance(control_scores):
    got = control_scores["random"]
    assert abs(got["factor_vae"] - 0.2) < 0.05  # dlib 0.18
    assert got["mig"] < 0.02
    assert got["sap"] < 0.02  # dlib 0.00


def test_leaving_a_factor_out_fools_the_higgins_score_only(control_scores):
    got = control_scores["no_shape"]
    assert got["beta_vae"] >= 0.99  # dlib 1.0: the flaw Kim & Mnih 2018 (Sec. 4) describe
    # Every shape point votes for a dimension that belongs to another factor: accuracy = 1 - share of
    # shape points (1/5 in expectation; the tolerance is 2.5 binomial sd at 1,000 eval points).
    assert got["factor_vae"] <= 0.8 + 0.032  # dlib 0.79
    assert got["mig"] <= 0.8  # dlib 0.80: shape's gap is 0, each other gap <= 1
    assert got["mig"] >= 0.75


def test_mixing_two_factors_lowers_mig_and_dci_disentanglement(control_scores):
    mixed, factors = control_scores["mixed"], control_scores["factors"]
    assert mixed["mig"] < factors["mig"] - 0.3  # dlib 0.60
    assert mixed["dci_disentanglement"] < factors["dci_disentanglement"] - 0.1


def test_sap_orders_factor_values_above_one_left_out_above_random(control_scores):
    sap = {name: got["sap"] for name, got in control_scores.items()}
    assert sap["factors"] > sap["no_shape"] + 0.05 > sap["random"] + 0.1  # dlib 0.28 > 0.15 > 0.00


def test_permuting_latents_leaves_every_metric_unchanged(dsprites, controls, control_scores):
    permuted = scores(dsprites, controls["mixed"][:, [3, 0, 4, 2, 1]])
    for name, value in permuted.items():
        tolerance = 0.01 if name == "beta_vae" else 1e-12  # lbfgs on permuted columns: same optimum, other rounding
        assert value == pytest.approx(control_scores["mixed"][name], abs=tolerance), name


def test_rescaling_latents_leaves_factor_vae_mig_and_dci_disentanglement_unchanged(dsprites, controls, control_scores):
    rescaled = scores(dsprites, controls["mixed"] * np.array([2.5, 0.3, 7.0, 1.0, 0.5]))
    original = control_scores["mixed"]
    assert rescaled["factor_vae"] == original["factor_vae"]
    assert rescaled["mig"] == pytest.approx(original["mig"], abs=1e-9)


def test_dci_is_unchanged_by_permuting_and_rescaling_latents(dsprites, controls, control_scores):
    # Trees split on thresholds, so DCI is invariant to both; one run checks both (each DCI run costs ~5 s).
    codes = (controls["mixed"] * np.array([2.5, 0.3, 7.0, 1.0, 0.5]))[:, [3, 0, 4, 2, 1]]
    got = dci(dsprites, GridEncoding.from_codes(dsprites, codes), np.random.default_rng(0), **DCI_SMALL)
    for name in ("dci_disentanglement", "dci_completeness", "dci_informativeness"):
        # scikit-learn's trees break ties between equal splits at random: columns in another order
        # may tie differently, so allow a little.
        assert got[name] == pytest.approx(control_scores["mixed"][name], abs=0.02), name


def test_dci_does_not_depend_on_how_many_processes_fit_it(dsprites, controls, control_scores):
    # control_scores ran with the default n_jobs=-1 (one process per CPU); in this process alone:
    got = dci(dsprites, GridEncoding.from_codes(dsprites, controls["mixed"]), np.random.default_rng(0),
              n_jobs=1, **DCI_SMALL)
    assert got == {name: control_scores["mixed"][name]
                   for name in ("dci_disentanglement", "dci_completeness", "dci_informativeness")}


# --- the panel entry point -------------------------------------------------------------------

class CountingFactorLookup:
    """A representation function of images: the factor classes of each image (looked up by its
    bytes), counting the images it encodes. 14 of the 46,080 images have a pixel-identical twin
    and map to one of the two."""

    def __init__(self, dsprites_raw):
        packed = np.packbits(dsprites_raw["imgs"].reshape(46_080, -1), axis=1)
        self.table = {row.tobytes(): c for row, c in zip(packed, dsprites_raw["latents_classes"].astype(np.float64))}
        self.encoded = 0

    def __call__(self, images):
        self.encoded += len(images)
        keys = np.packbits(images.reshape(len(images), -1).astype(np.uint8), axis=1)
        return np.stack([self.table[key.tobytes()] for key in keys])


def test_panel_encodes_each_grid_image_once_and_gives_the_asked_keys(dsprites, dsprites_raw):
    represent = CountingFactorLookup(dsprites_raw)
    config = MetricConfig(num_train=500, num_eval=250, panel=PANEL_METRICS)
    got = panel_scores(dsprites, represent, np.random.default_rng(0), config=config)
    assert represent.encoded == dsprites.num_images
    assert set(got) == {"beta_vae", "train_accuracy", "eval_accuracy", "factor_vae", "mig", "sap",
                        "dci_disentanglement", "dci_completeness", "dci_informativeness",
                        "modularity", "explicitness", "explicitness_train", "irs", "irs_active_dims",
                        "gaussian_total_correlation", "wasserstein_correlation", "wasserstein_correlation_norm",
                        "mutual_info_score"}
    assert got["beta_vae"] == got["eval_accuracy"] >= 0.99
    assert got["factor_vae"] >= 0.98 and got["dci_disentanglement"] >= 0.98
    only_mig = panel_scores(dsprites, represent, np.random.default_rng(0), metrics=("mig",), config=config)
    assert only_mig == {"mig": got["mig"]}  # adding metrics to the panel leaves a metric's value as it was
    assert MetricConfig().panel == DEFAULT_PANEL == ("beta_vae", "factor_vae", "mig", "sap")


def test_unknown_panel_metric_is_refused_by_name(dsprites):
    with pytest.raises(ConfigError, match="'higgins'"):
        MetricConfig(panel=("beta_vae", "higgins"))
    with pytest.raises(ValueError, match="'mce'"):
        panel_scores(dsprites, lambda x: x[:, 0, 0, :2], np.random.default_rng(0), metrics=("mce",))


def test_evaluate_model_returns_the_panel_beside_the_statistics(dsprites, one_torch_thread):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = BetaVAE(ModelConfig(latent_dim=4, width=4, hidden_dim=16)).eval()
    config = MetricConfig(num_train=500, num_eval=250, num_stat_samples=256, panel=("mig", "sap"))
    got = evaluate_model(model, dsprites, config)
    assert {"train_accuracy", "eval_accuracy", "beta_vae", "mig", "sap", "recon_loss", "kl", "active_units"} <= set(got)
    assert "factor_vae" not in got and "dci_disentanglement" not in got
    assert all(0.0 <= got[key] <= 1.0 for key in ("beta_vae", "mig", "sap"))


# --- CelebA: attributes as 0/1 factors -------------------------------------------------------

def test_observational_metrics_on_celeba_attributes(celeba_labels):
    val = celeba_labels.attributes[celeba_labels.rows("val")][:, :10]  # bool (780, 10): 10 of the 40, to keep it fast
    noise = np.random.default_rng(0)
    as_codes = LabelledEncoding(val.astype(np.float64) + noise.normal(scale=0.01, size=val.shape), val)
    random = LabelledEncoding(noise.normal(size=(len(val), 10)), val)
    kwargs = {"num_train": 500, "num_eval": 280}
    attr_mig, random_mig = (mig(None, e, np.random.default_rng(0), num_train=500)["mig"] for e in (as_codes, random))
    assert attr_mig > 0.5 and random_mig < 0.1
    attr_sap, random_sap = (sap_score(None, e, np.random.default_rng(0), **kwargs)["sap"] for e in (as_codes, random))
    assert attr_sap > random_sap + 0.1
    with pytest.raises(ValueError, match="ground-truth data"):
        factor_vae_score(None, as_codes, np.random.default_rng(0))


def test_labelled_encoding_splits_a_small_set_into_disjoint_halves():
    codes = np.arange(20, dtype=np.float64)[:, None]
    encoding = LabelledEncoding(codes, np.arange(20)[:, None] % 2)
    train, _, held, _ = encoding.observations(10_000, 5_000, np.random.default_rng(0))
    assert len(train) + len(held) == 20 and len(train) == 13
    assert not set(train[:, 0]) & set(held[:, 0])


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("metric, kwargs", [
    (factor_vae_score, {"num_train": 0}), (factor_vae_score, {"batch_size": 1}), (mig, {"num_train": 0}),
    (mig, {"num_bins": 0}), (sap_score, {"num_eval": 0}), (dci, {"num_train": -3}), (beta_vae_score, {"num_eval": 0}),
])
def test_bad_counts_are_value_errors_naming_the_count(dsprites, metric, kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        metric(dsprites, lambda x: x.reshape(len(x), -1)[:, :2], np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("metric", [factor_vae_score, mig, sap_score, dci, beta_vae_score])
def test_a_representation_of_the_wrong_shape_is_a_value_error(dsprites, metric):
    with pytest.raises(ValueError, match=r"\(n=\d+, d\)"):
        metric(dsprites, lambda x: x.reshape(len(x), -1)[:, 0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="one row per grid image"):
        GridEncoding.from_codes(dsprites, np.zeros((10, 3)))


def test_panel_on_celeba_scores_the_val_images_with_attributes_as_factors(tmp_path, one_torch_thread):
    from betasweep.data.celeba import CelebA
    from helpers import small_celeba_root

    from conftest import CELEBA_SAMPLE

    if not (CELEBA_SAMPLE / "img_align_celeba").is_dir():
        pytest.skip(f"CelebA sample not found at {CELEBA_SAMPLE}")
    (tmp_path / "celeba").mkdir()
    root = small_celeba_root(CELEBA_SAMPLE, tmp_path / "celeba", n_train=8, n_val=60)
    data = CelebA(root, cache_dir=tmp_path / "cache", progress=False)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = BetaVAE(ModelConfig(latent_dim=4, width=4, hidden_dim=16, num_channels=3)).eval()
    seen = []

    def represent(images):
        seen.append(len(images))
        with torch.no_grad():
            return model.encode(torch.from_numpy(images))[0].numpy()

    config = MetricConfig(num_train=200, num_eval=100, panel=("beta_vae", "factor_vae", "mig", "sap"))
    got = panel_scores(data, represent, np.random.default_rng(0), config=config)
    assert sum(seen) == 60  # the val partition, each image once
    assert set(got) == {"weak_label", "train_accuracy", "eval_accuracy", "mig", "sap"}
    assert got["weak_label"] == got["eval_accuracy"] and all(0.0 <= v <= 1.0 for v in got.values())
