"""Attribute statistics on the real CelebA labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from betasweep.data.celeba_stats import (
    attribute_correlation,
    attribute_stats,
    format_stats_table,
    imbalance_ratio,
    top_correlated_pairs,
    write_stats_report,
)

SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "celeba-sample"


@pytest.fixture(scope="module")
def labels(celeba_labels):
    return celeba_labels


def test_rates_per_partition_and_imbalance(labels):
    stats = attribute_stats(labels)
    assert list(stats.rates) == ["train", "val", "all"]
    train = labels.attributes[labels.partition == 0]
    np.testing.assert_allclose(stats.rates["train"], train.sum(0) / len(train))
    assert stats.counts["train"] + stats.counts["val"] == stats.counts["all"] == labels.num_rows
    male = labels.attribute_names.index("Male")
    p = labels.attributes[:, male].mean()
    assert stats.imbalance[male] == pytest.approx(max(p, 1 - p) / min(p, 1 - p))
    np.testing.assert_allclose(imbalance_ratio(np.array([0.5, 0.1, 0.9, 0.0])), [1.0, 9.0, 9.0, np.inf])


def test_correlation_is_phi_on_plus_minus_one(labels):
    corr = attribute_correlation(labels.attributes)
    signed = np.where(labels.attributes, 1.0, -1.0)
    np.testing.assert_allclose(corr, np.corrcoef(signed, rowvar=False), atol=1e-12)
    # A constant attribute has no correlation: nan, and it is left out of the ranking.
    constant = labels.attributes.copy()
    constant[:, 0] = True
    corr = attribute_correlation(constant)
    assert np.isnan(corr[0]).all() and np.isfinite(corr[1:, 1:]).all()
    assert all(labels.attribute_names[0] not in pair[:2] for pair in top_correlated_pairs(corr, labels.attribute_names, 50))


def test_top_pairs_are_sorted_by_absolute_correlation(labels):
    stats = attribute_stats(labels)
    pairs = top_correlated_pairs(stats.correlation, stats.attribute_names, 10)
    strengths = [abs(r) for _, _, r in pairs]
    assert len(pairs) == 10 and strengths == sorted(strengths, reverse=True)
    i, j = np.triu_indices(40, 1)
    assert strengths[0] == pytest.approx(np.abs(stats.correlation[i, j]).max())


def test_report_is_offline_html_with_table(labels, tmp_path):
    stats = attribute_stats(labels)
    table = format_stats_table(stats)
    assert all(name in table for name in labels.attribute_names)
    path = write_stats_report(stats, tmp_path / "r" / "report.html", root=str(SAMPLE))
    text = path.read_text()
    assert "<script src=" not in text and "Plotly.newPlot" in text and "Most correlated pairs" in text
