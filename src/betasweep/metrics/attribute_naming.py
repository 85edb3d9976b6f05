"""Naming latent dimensions by measurement: which CelebA attribute does each dimension encode?

Two complementary measurements for latent dimension ``j`` and attribute ``a``:

* **Encoding (AUC).** The ROC AUC of ``mu_j`` as a score for attribute ``a`` on held-out images
  (Hanley & McNeil 1982: the probability that a random positive image has a larger ``mu_j`` than
  a random negative one). Reported as ``max(AUC, 1 − AUC)`` with the direction (+1 when larger
  ``mu_j`` means the attribute, −1 when smaller), so 0.5 is no association and 1 is perfect.
* **Decoding (Δp).** Traverse ``z_j`` from ``−limit`` to ``+limit`` around real images' codes
  (as in the traversal figures of Higgins et al. 2017, Fig. 1–2), decode, and let the attribute
  classifier (:mod:`betasweep.models.classifier`) say how the probability of ``a`` changes:
  ``Δp = mean over images of p(a | decode(z_j = +limit)) − p(a | decode(z_j = −limit))``.

A dimension is named by the attribute with the largest AUC, e.g. ``dim 16 -> Black_Hair (AUC 0.81,
Δp +0.42)``. Everything here is a pure function of arrays, a model and a classifier function; it
imports no tracking code.
"""

from __future__ import annotations

import csv
import html
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

__all__ = [
    "DimensionName",
    "attribute_auc",
    "format_naming_table",
    "measure_dimension_names",
    "name_dimensions",
    "traversal_effect",
    "write_naming_csv",
    "write_naming_heatmap",
]

ClassifierFn = Callable[[np.ndarray], np.ndarray]
"""``(n, 3, H, W) float32 in [0, 1] → (n, A) float probabilities`` of the attributes."""


@dataclass(frozen=True)
class DimensionName:
    """One row of the naming table.

    Attributes:
        dim: latent dimension index ``j``.
        attribute: name of the attribute with the largest AUC for ``mu_j``.
        auc: ``max(AUC, 1 − AUC)`` of ``mu_j`` for that attribute, in [0.5, 1].
        direction: +1 when larger ``mu_j`` means the attribute is present, −1 otherwise.
        delta_p: classifier Δp of that attribute along the traversal of ``z_j`` (−limit → +limit),
            in [−1, 1]; nan when no traversal was measured.
        kl: KL of the dimension in nats when given (to sort by, and to spot inactive dimensions).
    """

    dim: int
    attribute: str
    auc: float
    direction: int
    delta_p: float
    kl: float | None = None

    def __str__(self) -> str:
        delta = f", Δp {self.delta_p:+.2f}" if np.isfinite(self.delta_p) else ""
        kl = f", KL {self.kl:.2f}" if self.kl is not None else ""
        return (f"dim {self.dim} -> {self.attribute} (AUC {self.auc:.2f}, "
                f"direction {'+' if self.direction > 0 else '-'}{delta}{kl})")


def attribute_auc(mu: np.ndarray, attributes: np.ndarray, *, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC of each latent mean for each attribute, folded to [0.5, 1] with its direction.

    Args:
        mu: float ``(n, d)`` encoder means of held-out images.
        attributes: bool ``(n, A)`` the same images' attributes.
        min_count: attributes with fewer positive or negative images than this get no AUC. With
            a handful of positives (Bald has 8 of the sample's 780 val images) a noise dimension
            reaches AUC 0.7–0.8 by chance and would win the naming; 20 is a sensible floor.

    Returns:
        ``(auc, direction)``: float64 ``(d, A)`` ``max(AUC, 1 − AUC)`` (nan where attribute ``a``
        has fewer than ``min_count`` positives or negatives, or is constant, as AUC is then
        undefined), and int8 ``(d, A)`` +1/−1 (+1 when AUC >= 0.5, i.e. larger ``mu_j`` goes with
        the attribute).
    """
    mu, attributes = np.asarray(mu, dtype=np.float64), np.asarray(attributes, dtype=bool)
    if len(mu) != len(attributes):
        raise ValueError(f"mu has {len(mu)} rows but attributes has {len(attributes)}")
    raw = np.full((mu.shape[1], attributes.shape[1]), np.nan)
    for a in range(attributes.shape[1]):
        positives = int(attributes[:, a].sum())
        if min(positives, len(attributes) - positives) < max(min_count, 1):
            continue
        for j in range(mu.shape[1]):
            raw[j, a] = roc_auc_score(attributes[:, a], mu[:, j])
    direction = np.where(np.isnan(raw) | (raw >= 0.5), 1, -1).astype(np.int8)
    return np.maximum(raw, 1.0 - raw), direction


@torch.no_grad()
def traversal_effect(
    model, classifier: ClassifierFn, base_mu: np.ndarray, *, limit: float = 3.0, batch_size: int = 256
) -> np.ndarray:
    """Classifier Δp of every attribute along every latent dimension's traversal.

    For each dimension ``j``: copies of the base codes with ``z_j = −limit`` and with
    ``z_j = +limit`` are decoded (``sigmoid(model.decode(z))``, the Bernoulli means, float32 in
    [0, 1]) and classified; Δp is the mean over the base codes of the difference.

    Args:
        model: a :class:`~betasweep.models.BetaVAE` with 3 channels (used in eval mode; its mode
            is restored).
        classifier: images ``(n, 3, 64, 64)`` float32 in [0, 1] → probabilities ``(n, A)``.
        base_mu: float ``(n, d)`` codes of real images to traverse around.
        limit: traversal end, in units of the prior's standard deviation (±3 as in the figures).
        batch_size: codes decoded and classified at once.

    Returns:
        float64 ``(d, A)``: Δp in [−1, 1].
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    base = torch.as_tensor(np.asarray(base_mu, dtype=np.float32), device=device)
    n, d = base.shape
    try:
        effects = []
        for j in range(d):
            ends = base.repeat(2, 1)  # (2n, d): first n at -limit, last n at +limit
            ends[:n, j], ends[n:, j] = -limit, limit
            probs = np.concatenate([
                np.asarray(classifier(torch.sigmoid(model.decode(ends[i : i + batch_size])).cpu().numpy()),
                           dtype=np.float64)
                for i in range(0, 2 * n, batch_size)
            ])  # (2n, A)
            effects.append(probs[n:].mean(axis=0) - probs[:n].mean(axis=0))
    finally:
        model.train(was_training)
    return np.stack(effects)


def name_dimensions(
    auc: np.ndarray,
    direction: np.ndarray,
    delta_p: np.ndarray | None,
    attribute_names: tuple[str, ...],
    *,
    kl_per_dim: list[float] | np.ndarray | None = None,
) -> list[DimensionName]:
    """Name each dimension by its highest-AUC attribute.

    Args:
        auc, direction: from :func:`attribute_auc`, ``(d, A)``.
        delta_p: from :func:`traversal_effect`, ``(d, A)``, or None (Δp reported as nan).
        attribute_names: the ``A`` names.
        kl_per_dim: KL per dimension (nats); when given, rows are sorted by it, largest first.

    Returns:
        One :class:`DimensionName` per dimension (dimensions with no defined AUC are left out).
    """
    rows = []
    for j in range(auc.shape[0]):
        if np.isnan(auc[j]).all():
            continue
        a = int(np.nanargmax(auc[j]))
        rows.append(DimensionName(
            dim=j,
            attribute=attribute_names[a],
            auc=float(auc[j, a]),
            direction=int(direction[j, a]),
            delta_p=float(delta_p[j, a]) if delta_p is not None else float("nan"),
            kl=float(kl_per_dim[j]) if kl_per_dim is not None else None,
        ))
    if kl_per_dim is not None:
        rows.sort(key=lambda row: -row.kl)
    return rows


def measure_dimension_names(
    model,
    images: np.ndarray,
    attributes: np.ndarray,
    classifier: ClassifierFn,
    attribute_names: tuple[str, ...],
    rng: np.random.Generator,
    *,
    num_traversal_images: int = 32,
    limit: float = 3.0,
    kl_per_dim: list[float] | np.ndarray | None = None,
    min_count: int = 20,
    batch_size: int = 256,
) -> dict:
    """Both measurements and the naming table for a β-VAE on held-out images.

    Args:
        model: a 3-channel unconditional VAE (:class:`~betasweep.models.BetaVAE`, an nvae: its representation).
        images: float32 ``(n, 3, 64, 64)`` in [0, 1], held-out (e.g. the val partition).
        attributes: bool ``(n, A)`` of the same images.
        classifier: images → attribute probabilities (see :data:`ClassifierFn`), or None to skip Δp.
        attribute_names: the ``A`` names.
        rng: picks the ``num_traversal_images`` images traversed around.
        num_traversal_images: base codes per traversal.
        limit: traversal end (prior standard deviations).
        kl_per_dim: KL per dimension (nats), to sort the table by.
        min_count: fewest positive and negative images an attribute needs to be scored
            (see :func:`attribute_auc`).
        batch_size: images per encoder/decoder call.

    Returns:
        ``{"rows": [DimensionName], "auc": (d, A), "direction": (d, A), "delta_p": (d, A) or None}``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mu = np.concatenate([
                model.representation(torch.as_tensor(np.asarray(images[i : i + batch_size], np.float32), device=device))
                .float().cpu().numpy()
                for i in range(0, len(images), batch_size)
            ])
    finally:
        model.train(was_training)
    auc, direction = attribute_auc(mu, attributes, min_count=min_count)
    delta_p = None
    if classifier is not None:
        base = mu[rng.choice(len(mu), size=min(num_traversal_images, len(mu)), replace=False)]
        delta_p = traversal_effect(model, classifier, base, limit=limit, batch_size=batch_size)
    rows = name_dimensions(auc, direction, delta_p, attribute_names, kl_per_dim=kl_per_dim)
    return {"rows": rows, "auc": auc, "direction": direction, "delta_p": delta_p}


def format_naming_table(rows: list[DimensionName]) -> str:
    """One line per dimension: ``dim 16 -> Black_Hair (AUC 0.81, direction +, Δp +0.42)``."""
    return "\n".join(str(row) for row in rows)


def write_naming_csv(rows: list[DimensionName], path: str | os.PathLike) -> Path:
    """Write the table as CSV with columns ``dim, attribute, auc, direction, delta_p, kl``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["dim", "attribute", "auc", "direction", "delta_p", "kl"])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return path


def write_naming_heatmap(
    auc: np.ndarray,
    direction: np.ndarray,
    delta_p: np.ndarray | None,
    attribute_names: tuple[str, ...],
    path: str | os.PathLike,
    *,
    rows: list[DimensionName] | None = None,
) -> Path:
    """Write an offline HTML page (plotly.js embedded): heatmaps of signed AUC and of Δp, dims × attributes.

    The signed AUC is ``direction · (AUC − 0.5) · 2`` in [−1, 1] (0 = no association), so both
    maps share one diverging colour scale. The naming table follows when ``rows`` is given.
    """
    # plotly only when a heatmap is written: `import betasweep.metrics` (every CLI command) stays without it
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    signed = direction * (auc - 0.5) * 2
    dims = [f"dim {j}" for j in range(auc.shape[0])]
    panels = [("signed AUC of mu_j: 2·(AUC−0.5)·direction", signed)]
    if delta_p is not None:
        panels.append(("traversal Δp (classifier), z_j −limit → +limit", delta_p))
    figure = make_subplots(rows=len(panels), cols=1, subplot_titles=[title for title, _ in panels],
                           vertical_spacing=0.12)
    for i, (title, values) in enumerate(panels, start=1):
        figure.add_trace(go.Heatmap(z=values, x=list(attribute_names), y=dims, zmin=-1, zmax=1,
                                    colorscale="RdBu_r", showscale=i == 1,
                                    hovertemplate="%{y} / %{x}: %{z:+.2f}<extra></extra>"), row=i, col=1)
    figure.update_layout(height=350 + 40 * auc.shape[0] * len(panels), width=1100,
                         title="Latent dimensions vs CelebA attributes")
    table = f"<pre>{html.escape(format_naming_table(rows))}</pre>" if rows else ""
    document = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Latent dimension names</title></head>"
                f"<body>{figure.to_html(full_html=False, include_plotlyjs=True)}{table}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
