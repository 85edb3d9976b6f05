"""Discovery statistics of CelebA's 40 attributes: positive rates, imbalance, correlations.

The first step of the seeds' CelebA work: before training anything, see how rare each attribute
is per partition (which sets the majority-class baseline a classifier must beat) and which
attributes move together (which limits how "independent" any learned factor can be; see
:mod:`betasweep.metrics.weak_label`). Everything is vectorised numpy on the label arrays; the full
202,599-row file takes about a second, almost all of it parsing.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from betasweep.data.celeba import PARTITIONS, CelebALabels

__all__ = [
    "AttributeStats",
    "attribute_correlation",
    "attribute_stats",
    "format_stats_table",
    "imbalance_ratio",
    "positive_rates",
    "top_correlated_pairs",
    "write_stats_report",
]


@dataclass(frozen=True)
class AttributeStats:
    """Per-attribute statistics of one CelebA root.

    Attributes:
        attribute_names: the ``A`` attribute names.
        counts: images per partition (``{"train": 162770, ...}``) and ``"all"``.
        rates: positive rate (fraction of 1s), float64 ``(A,)``, per partition name and ``"all"``.
        imbalance: :func:`imbalance_ratio` of the rates over all rows, float64 ``(A,)``.
        correlation: :func:`attribute_correlation` over all rows, float64 ``(A, A)``.
    """

    attribute_names: tuple[str, ...]
    counts: dict[str, int]
    rates: dict[str, np.ndarray]
    imbalance: np.ndarray
    correlation: np.ndarray


def positive_rates(attributes: np.ndarray) -> np.ndarray:
    """Fraction of images with each attribute: bool ``(N, A)`` → float64 ``(A,)`` in [0, 1] (nan when N = 0)."""
    if len(attributes) == 0:
        return np.full(attributes.shape[1], np.nan)
    return attributes.mean(axis=0, dtype=np.float64)


def imbalance_ratio(rates: np.ndarray) -> np.ndarray:
    """Majority-to-minority ratio ``max(p, 1 − p) / min(p, 1 − p)`` of each positive rate ``p``.

    1 means balanced; 9 means a 90/10 split (the majority-class baseline is then 90 % accurate);
    ``inf`` means the attribute never (or always) occurs.

    Args:
        rates: float ``(A,)`` in [0, 1].

    Returns:
        float64 ``(A,)`` >= 1.
    """
    rates = np.asarray(rates, dtype=np.float64)
    majority, minority = np.maximum(rates, 1 - rates), np.minimum(rates, 1 - rates)
    with np.errstate(divide="ignore"):
        return majority / minority


def attribute_correlation(attributes: np.ndarray) -> np.ndarray:
    """Pearson correlation between attributes coded ±1 (the phi coefficient of each 2x2 table).

    Args:
        attributes: bool ``(N, A)``.

    Returns:
        float64 ``(A, A)`` in [-1, 1], ones on the diagonal; nan in the rows and columns of an
        attribute that is constant over the N images.
    """
    x = attributes.astype(np.float64)
    x -= x.mean(axis=0)
    cov = x.T @ x
    std = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(std, std)
    return np.clip(corr, -1.0, 1.0)


def top_correlated_pairs(
    correlation: np.ndarray, names: tuple[str, ...], k: int = 15
) -> list[tuple[str, str, float]]:
    """The ``k`` attribute pairs with the largest ``|correlation|``, largest first.

    Returns:
        ``[(name_i, name_j, r_ij), ...]`` with ``i < j``; pairs with an undefined (nan)
        correlation are left out.
    """
    i, j = np.triu_indices(len(names), k=1)
    r = correlation[i, j]
    keep = np.isfinite(r)
    i, j, r = i[keep], j[keep], r[keep]
    order = np.argsort(-np.abs(r), kind="stable")[:k]
    return [(names[i[o]], names[j[o]], float(r[o])) for o in order]


def attribute_stats(labels: CelebALabels) -> AttributeStats:
    """Positive rates per partition and over all rows, imbalance and correlation of a root's labels."""
    counts, rates = {}, {}
    for name in labels.partition_names():
        rows = labels.partition == PARTITIONS[name]
        counts[name] = int(rows.sum())
        rates[name] = positive_rates(labels.attributes[rows])
    counts["all"] = labels.num_rows
    rates["all"] = positive_rates(labels.attributes)
    return AttributeStats(
        attribute_names=labels.attribute_names,
        counts=counts,
        rates=rates,
        imbalance=imbalance_ratio(rates["all"]),
        correlation=attribute_correlation(labels.attributes),
    )


def format_stats_table(stats: AttributeStats) -> str:
    """A plain-text table: one line per attribute with its positive rate per partition and the imbalance."""
    columns = list(stats.rates)
    width = max(len(name) for name in stats.attribute_names)
    header = f"{'attribute':<{width}}  " + "  ".join(f"{c:>7}" for c in columns) + "  imbalance"
    counts = f"{'(images)':<{width}}  " + "  ".join(f"{stats.counts[c]:>7}" for c in columns)
    lines = [header, counts]
    for a, name in enumerate(stats.attribute_names):
        rates = "  ".join(f"{stats.rates[c][a]:>7.3f}" for c in columns)
        lines.append(f"{name:<{width}}  {rates}  {stats.imbalance[a]:>9.1f}")
    lines.append("positive rate = fraction of images with the attribute; imbalance = majority/minority count "
                 "over all images (1 = balanced)")
    return "\n".join(lines)


def _heatmap_figure(stats: AttributeStats):
    import plotly.graph_objects as go

    names = list(stats.attribute_names)
    figure = go.Figure(go.Heatmap(
        z=stats.correlation, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu_r",
        colorbar={"title": "phi"}, hovertemplate="%{y} / %{x}: %{z:.2f}<extra></extra>",
    ))
    figure.update_layout(
        title="Attribute correlation (Pearson on ±1 = phi coefficient), all images",
        width=900, height=900, yaxis={"autorange": "reversed"},
    )
    return figure


def write_stats_report(stats: AttributeStats, path: str | os.PathLike, *, root: str = "", top: int = 15) -> Path:
    """Write a self-contained HTML report (plotly.js embedded, no network needed to view it).

    Holds the correlation heatmap, the ``top`` most correlated pairs and the rate table.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heatmap = _heatmap_figure(stats).to_html(full_html=False, include_plotlyjs=True)
    pairs = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{r:+.3f}</td></tr>"
        for a, b, r in top_correlated_pairs(stats.correlation, stats.attribute_names, top)
    )
    document = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>CelebA attribute statistics</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,td:nth-child(2){text-align:left}</style>"
        f"</head><body><h1>CelebA attribute statistics</h1><p>root: {html.escape(root)}</p>"
        f"{heatmap}<h2>Most correlated pairs</h2><table><tr><th>attribute</th><th>attribute</th><th>phi</th></tr>"
        f"{pairs}</table><h2>Positive rate per partition</h2><pre>{html.escape(format_stats_table(stats))}</pre>"
        "</body></html>"
    )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(document, encoding="utf-8")
    os.replace(tmp, path)
    return path
