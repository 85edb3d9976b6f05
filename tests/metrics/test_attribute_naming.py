"""Naming latent dimensions: AUC of mu for each attribute, and classifier Δp along traversals."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from betasweep.metrics.attribute_naming import (
    attribute_auc,
    format_naming_table,
    measure_dimension_names,
    name_dimensions,
    traversal_effect,
    write_naming_csv,
    write_naming_heatmap,
)
from betasweep.models import BetaVAE, ModelConfig
from betasweep.models.classifier import AttributeClassifier, ClassifierConfig, probability_function



@pytest.fixture(scope="module")
def labels(celeba_labels):
    return celeba_labels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vae_and_classifier():
    torch.manual_seed(0)
    vae = BetaVAE(ModelConfig(latent_dim=4, width=8, hidden_dim=32, num_channels=3)).eval()
    classifier = AttributeClassifier(ClassifierConfig(arch="resnet18", image_size=32, pretrained=False)).eval()
    return vae, classifier


def test_auc_finds_the_attribute_a_dimension_copies(labels):
    attributes = labels.attributes[labels.partition == 1]  # held-out: the val partition
    names = labels.attribute_names
    male, smiling = names.index("Male"), names.index("Smiling")
    rng = np.random.default_rng(0)
    mu = np.stack([
        attributes[:, male].astype(float) + 0.1 * rng.normal(size=len(attributes)),  # encodes Male
        -attributes[:, smiling].astype(float) + 0.1 * rng.normal(size=len(attributes)),  # encodes Smiling, reversed
        rng.normal(size=len(attributes)),  # encodes nothing
    ], axis=1)
    auc, direction = attribute_auc(mu, attributes)
    assert auc.shape == direction.shape == (3, 40)
    assert auc[0, male] == pytest.approx(1.0) and direction[0, male] == 1
    assert auc[1, smiling] == pytest.approx(1.0) and direction[1, smiling] == -1
    raw = roc_auc_score(attributes[:, 5], mu[:, 2])
    assert auc[2, 5] == pytest.approx(max(raw, 1 - raw))
    assert np.nanmax(auc[2]) < 0.65

    rows = name_dimensions(auc, direction, None, names)
    assert [(r.dim, r.attribute, r.direction) for r in rows[:2]] == [(0, "Male", 1), (1, "Smiling", -1)]
    assert str(rows[0]) == "dim 0 -> Male (AUC 1.00, direction +)"  # no traversal measured: no Δp


def test_constant_or_rare_attribute_has_no_auc(labels):
    attributes = labels.attributes[:200].copy()
    attributes[:, 3] = False
    attributes[:, 4] = False
    attributes[:5, 4] = True  # 5 positives
    mu = np.random.default_rng(0).normal(size=(200, 2))
    auc, _ = attribute_auc(mu, attributes)
    assert np.isnan(auc[:, 3]).all() and np.isfinite(auc[:, 4]).all()
    auc, _ = attribute_auc(mu, attributes, min_count=20)
    assert np.isnan(auc[:, 4]).all()
    enough = (attributes.sum(0) >= 20) & ((~attributes).sum(0) >= 20)
    assert (np.isfinite(auc[0]) == enough).all()


def test_traversal_effect_is_zero_for_a_dimension_the_decoder_ignores(vae_and_classifier):
    vae, classifier = vae_and_classifier
    vae = copy.deepcopy(vae)
    with torch.no_grad():
        vae.decoder[0].weight[:, 2] = 0.0  # z_2 no longer reaches the image
    base = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    probabilities = probability_function(classifier)
    delta = traversal_effect(vae, probabilities, base, limit=3.0)
    assert delta.shape == (4, 40) and (np.abs(delta) <= 1).all()
    np.testing.assert_array_equal(delta[2], 0.0)
    assert np.abs(delta[[0, 1, 3]]).max() > 0

    # Δp for one dimension, computed directly.
    low, high = base.copy(), base.copy()
    low[:, 0], high[:, 0] = -3.0, 3.0
    decode = lambda z: torch.sigmoid(vae.decode(torch.from_numpy(z))).detach().numpy()
    expected = probabilities(decode(high)).mean(0) - probabilities(decode(low)).mean(0)
    np.testing.assert_allclose(delta[0], expected, atol=1e-6)


def test_measure_table_csv_and_heatmap(labels, vae_and_classifier, tmp_path):
    vae, classifier = vae_and_classifier
    rng = np.random.default_rng(0)
    images = rng.random((60, 3, 64, 64), dtype=np.float32)
    attributes = labels.attributes[:60]
    result = measure_dimension_names(vae, images, attributes, probability_function(classifier),
                                     labels.attribute_names, rng, num_traversal_images=4,
                                     kl_per_dim=[0.1, 2.0, 0.5, 1.0], min_count=5)
    rows = result["rows"]
    assert [row.dim for row in rows] == [1, 3, 2, 0]  # sorted by KL, largest first
    for row in rows:
        a = labels.attribute_names.index(row.attribute)
        assert row.auc == np.nanmax(result["auc"][row.dim]) and row.delta_p == result["delta_p"][row.dim, a]
    assert len(format_naming_table(rows).splitlines()) == 4

    path = write_naming_csv(rows, tmp_path / "names.csv")
    with path.open() as handle:
        read = list(csv.DictReader(handle))
    assert [int(r["dim"]) for r in read] == [1, 3, 2, 0] and read[0]["attribute"] == rows[0].attribute
    page = write_naming_heatmap(result["auc"], result["direction"], result["delta_p"], labels.attribute_names,
                                tmp_path / "names.html", rows=rows).read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page and f"dim {rows[0].dim} -&gt;" in page
