"""The panel's registry: every metric with its full (disentanglement_lib) and fast settings, and a
panel asked for a fast score really runs each metric at its fast settings."""

from __future__ import annotations

import numpy as np
import pytest

from betasweep.metrics import (PANEL_KEYS, PANEL_METRICS, REGISTRY, GridEncoding, MetricConfig, mig, panel_scores,
                               sap_score)
from betasweep.metrics.registry import make_metric

# disentanglement_lib's gin bindings (unsupervised_study_v1/metric_configs): the full settings.
DLIB = {
    "beta_vae": {"batch_size": 64, "num_train": 10_000, "num_eval": 5_000},
    "factor_vae": {"batch_size": 64, "num_train": 10_000, "num_eval": 5_000},
    "mig": {"num_train": 10_000},
    "sap": {"num_train": 10_000, "num_eval": 5_000},
    "dci": {"num_train": 10_000, "num_eval": 5_000},
    "modularity": {"num_train": 10_000, "num_eval": 5_000},
    "irs": {"num_train": 10_000},
    "unsupervised": {"num_train": 10_000},
}


def test_the_registry_lists_every_panel_metric_in_the_panels_order_with_full_and_fast_settings():
    assert tuple(REGISTRY) == PANEL_METRICS == (
        "beta_vae", "factor_vae", "mig", "sap", "dci", "modularity", "irs", "unsupervised")
    for name, metric in REGISTRY.items():
        assert metric.name == name and metric.keys == PANEL_KEYS[name]
        counts = {key: value for key, value in metric.full.items() if key != "attribute_subset"}
        assert counts == DLIB[name]
        assert metric.settings(MetricConfig()) == dict(metric.full)  # MetricConfig's defaults are dlib's
        assert metric.fast and set(metric.fast) <= set(metric.full)
        assert all(metric.fast[key] < metric.full[key] for key in metric.fast), name
        assert metric.draws(**metric.settings(fast=True)) < metric.draws(**metric.settings())


def test_settings_take_the_configs_counts_and_fast_replaces_only_the_counts():
    higgins = REGISTRY["beta_vae"]
    config = MetricConfig(num_train=300, num_eval=150, batch_size=16, attribute_subset=("Smiling", "Male"))
    assert higgins.settings(config) == {"batch_size": 16, "num_train": 300, "num_eval": 150,
                                        "attribute_subset": ("Smiling", "Male")}
    assert higgins.settings(config, fast=True) == {"batch_size": 16, "num_train": 1_000, "num_eval": 500,
                                                   "attribute_subset": ("Smiling", "Male")}


def test_a_metric_registers_once_and_its_fast_settings_must_be_full_ones():
    with pytest.raises(ValueError, match="'mig' is registered already"):
        make_metric("mig", keys=("mig",), full={"num_train": 1}, fast={}, draws=lambda **_: 0)(lambda *a, **k: {})
    with pytest.raises(ValueError, match="num_eval"):
        make_metric("x_test_only", keys=(), full={"num_train": 1}, fast={"num_eval": 1}, draws=lambda **_: 0)(
            lambda *a, **k: {})
    assert "x_test_only" not in REGISTRY


def test_a_fast_panel_runs_each_metric_at_its_fast_settings(dsprites):
    codes = np.random.default_rng(1).normal(size=(dsprites.num_images, 4))
    encoding = GridEncoding.from_codes(dsprites, codes)
    config = MetricConfig(num_train=300, num_eval=150, panel=("mig", "sap"))
    children = dict(zip(PANEL_METRICS, np.random.default_rng(0).spawn(len(PANEL_METRICS))))
    fast = panel_scores(dsprites, encoding, np.random.default_rng(0), config=config, fast=True)
    assert fast["mig"] == mig(dsprites, encoding, children["mig"], **REGISTRY["mig"].fast)["mig"]
    children = dict(zip(PANEL_METRICS, np.random.default_rng(0).spawn(len(PANEL_METRICS))))
    assert fast["sap"] == sap_score(dsprites, encoding, children["sap"], num_train=2_000, num_eval=1_000)["sap"]
    children = dict(zip(PANEL_METRICS, np.random.default_rng(0).spawn(len(PANEL_METRICS))))
    slow = panel_scores(dsprites, encoding, np.random.default_rng(0), config=config)
    assert slow["mig"] == mig(dsprites, encoding, children["mig"], num_train=300)["mig"]
    assert slow["mig"] != fast["mig"]
