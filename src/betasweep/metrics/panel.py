"""The metric panel: every disentanglement metric of one call from one shared encoding.

Locatello et al. 2019 ("Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML) show that the metrics disagree and must be read together; the Higgins
score in particular saturates (Kim & Mnih 2018, Sec. 4). :func:`panel_scores` computes the ones
asked for from one :class:`~betasweep.metrics.encoding.Encoding` of the data, each with its own
child rng, so that a metric's value does not depend on which others ran beside it. The metrics,
their order and their full and fast settings are those of :mod:`betasweep.metrics.registry`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.metrics.config import MetricConfig
from betasweep.metrics.encoding import WHOLE_GRID_MAX, Encoding, FreshEncoding, GridEncoding, encoding_of, held_out
from betasweep.metrics.registry import DEFAULT_PANEL, PANEL_KEYS, PANEL_METRICS, REGISTRY, check_panel

__all__ = ["DEFAULT_PANEL", "PANEL_KEYS", "PANEL_METRICS", "check_panel", "panel_scores"]


def panel_scores(
    data,
    representation_fn,
    rng: np.random.Generator,
    *,
    metrics: Sequence[str] | None = None,
    config: MetricConfig | None = None,
    fresh_nuisance: bool = False,
    fast: bool = False,
) -> dict[str, float]:
    """Score one representation with the metrics of the panel, from one encoding of the data.

    Args:
        data: ground-truth data (dSprites, shapes), or CelebA (scored on its val partition,
            :func:`~betasweep.metrics.encoding.held_out`).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic (the encoder mean),
            or an :class:`~betasweep.metrics.encoding.Encoding` of the scored data.
        rng: the metrics' randomness. Metric ``PANEL_METRICS[i]`` (the registry's order) uses child ``i`` of
            ``rng.spawn(len(PANEL_METRICS))`` (``SeedSequence`` spawning), so adding a metric to
            the panel leaves the others' values as they were.
        metrics: names from :data:`PANEL_METRICS`; default ``config.panel``.
        fresh_nuisance: encode every image the metrics draw anew, with a fresh nuisance (colour, noise,
            smallNORB instance) from a child of the rng spawned after the metrics', as disentanglement_lib does
            (:class:`~betasweep.metrics.encoding.FreshEncoding`; ground-truth data only; no cache,
            so each metric encodes what it draws); default: one cached code per grid point.
        config: a :class:`~betasweep.metrics.config.MetricConfig`: ``batch_size``, ``num_train``,
            ``num_eval`` for every metric (disentanglement_lib's defaults are 64, 10,000 and 5,000 for
            all of them; FactorVAE's global variances use ``num_train`` images, dlib's 10,000),
            ``attribute_subset`` for the weak-label score. Default ``MetricConfig()``.
        fast: each metric at its registered :attr:`~betasweep.metrics.registry.PanelMetric.fast` settings (fewer
            points, quicker, noisier) instead of ``config``'s counts; ``config.attribute_subset`` still applies.

    Returns:
        Flat keys, only those of the metrics asked for (see :data:`PANEL_KEYS`):

        - ``beta_vae`` (= Higgins ``eval_accuracy``), ``train_accuracy``, ``eval_accuracy``:
          :func:`~betasweep.metrics.beta_vae_score` (Higgins et al. 2017);
        - ``factor_vae``: :func:`~betasweep.metrics.factor_vae.factor_vae_score`'s eval accuracy (Kim & Mnih 2018);
        - ``mig``: :func:`~betasweep.metrics.mig.mig` (Chen et al. 2018);
        - ``sap``: :func:`~betasweep.metrics.sap.sap_score` (Kumar et al. 2018);
        - ``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness``:
          :func:`~betasweep.metrics.dci.dci` (Eastwood & Williams 2018);
        - ``modularity``, ``explicitness`` (and ``explicitness_train``):
          :func:`~betasweep.metrics.modularity.modularity_explicitness` (Ridgeway & Mozer 2018);
        - ``irs`` (and ``irs_active_dims``): :func:`~betasweep.metrics.irs.irs` (Suter et al. 2019);
        - ``gaussian_total_correlation``, ``wasserstein_correlation`` (and ``wasserstein_correlation_norm``),
          ``mutual_info_score``: :func:`~betasweep.metrics.unsupervised.unsupervised_scores` (disentanglement_lib's
          unsupervised scores; lower is more factorised).

        On CelebA (no simulator) ``beta_vae`` gives the weak-label variant under ``weak_label``
        (and ``train_accuracy``, ``eval_accuracy``; :func:`~betasweep.metrics.weak_label_score`),
        ``factor_vae`` is skipped (it needs a factor held fixed while the others vary), MIG,
        SAP and DCI use the 40 attributes as 0/1 factors on the val images, encoded once, and
        modularity, IRS and the unsupervised scores are skipped (dlib defines them on ground-truth data).

    Encoding: when the grid has at most :data:`~betasweep.metrics.encoding.WHOLE_GRID_MAX` images
    and no more than the metrics draw (dSprites' 46,080 at the defaults, where the Higgins score
    alone draws 1.92 million), every image is encoded once up front, so every metric reads the same
    codes whichever others ran. Otherwise (a small budget, a large grid) each distinct image is
    encoded once, lazily, as the metrics ask for it; an encoder whose float output depends on the
    composition of its batch may then differ in the last bits between panels.

    Raises:
        ValueError: an unknown metric name; the metrics' own errors.
    """
    config = config if config is not None else MetricConfig()
    metrics = check_panel(config.panel if metrics is None else metrics)
    scored = held_out(data)
    children = dict(zip(PANEL_METRICS, rng.spawn(len(PANEL_METRICS))))
    settings = {name: REGISTRY[name].settings(config, fast=fast) for name in metrics}
    encoding = _shared_encoding(scored, representation_fn, rng, fresh_nuisance, settings)
    out: dict[str, float] = {}
    for name in metrics:
        metric = REGISTRY[name]
        if metric.ground_truth_only and not isinstance(scored, GroundTruthData):
            continue  # dlib defines them on ground-truth data
        out.update(metric.score(scored, encoding, children[name], **settings[name]))
    return out


def _shared_encoding(scored, representation_fn, rng: np.random.Generator, fresh_nuisance: bool,
                     settings: dict[str, dict]) -> Encoding:
    """The one encoding the metrics share (see :func:`panel_scores`); the whole grid encoded now when the
    metrics (at ``settings``, by name) draw at least as many images as it holds."""
    if fresh_nuisance:
        if not isinstance(scored, GroundTruthData) or isinstance(representation_fn, Encoding):
            raise ValueError("fresh_nuisance needs ground-truth data and a representation function")
        nuisance = rng.spawn(1)[0]  # the child after the metrics' own: their draws are unchanged
        return FreshEncoding(scored, representation_fn, nuisance)
    encoding = encoding_of(scored, representation_fn)
    draws = sum(REGISTRY[name].draws(**kwargs) for name, kwargs in settings.items())
    if isinstance(encoding, GridEncoding) and scored.num_images <= min(WHOLE_GRID_MAX, draws):
        encoding.encode_all()
    return encoding
