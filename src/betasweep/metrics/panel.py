"""The metric panel: every disentanglement metric of one call from one shared encoding.

Locatello et al. 2019 ("Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML) show that the metrics disagree and must be read together; the Higgins
score in particular saturates (Kim & Mnih 2018, Sec. 4). :func:`panel_scores` computes the ones
asked for from one :class:`~betasweep.metrics.encoding.Encoding` of the data, each with its own
child rng, so that a metric's value does not depend on which others ran beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.metrics.beta_vae import beta_vae_score
from betasweep.metrics.dci import dci
from betasweep.metrics.encoding import WHOLE_GRID_MAX, Encoding, FreshEncoding, GridEncoding, encoding_of, held_out
from betasweep.metrics.factor_vae import factor_vae_score
from betasweep.metrics.irs import irs
from betasweep.metrics.mig import mig
from betasweep.metrics.modularity import modularity_explicitness
from betasweep.metrics.sap import sap_score
from betasweep.metrics.unsupervised import unsupervised_scores
from betasweep.metrics.weak_label import weak_label_score

if TYPE_CHECKING:
    from betasweep.metrics.evaluate import MetricConfig

__all__ = ["DEFAULT_PANEL", "PANEL_KEYS", "PANEL_METRICS", "check_panel", "panel_scores"]

PANEL_METRICS = ("beta_vae", "factor_vae", "mig", "sap", "dci", "modularity", "irs", "unsupervised")
"""Every metric of the panel, in a fixed order: metric ``i`` draws from child ``i`` of the rng."""

DEFAULT_PANEL = ("beta_vae", "factor_vae", "mig", "sap")
"""All but DCI, the slow one (about 160 s of CPU per model on dSprites at its defaults)."""

PANEL_KEYS = {
    "beta_vae": ("beta_vae", "train_accuracy", "eval_accuracy"),
    "factor_vae": ("factor_vae",),
    "mig": ("mig",),
    "sap": ("sap",),
    "dci": ("dci_disentanglement", "dci_completeness", "dci_informativeness"),
    "modularity": ("modularity", "explicitness"),
    "irs": ("irs",),
    "unsupervised": ("gaussian_total_correlation", "wasserstein_correlation", "mutual_info_score"),
}
"""The keys each metric adds to :func:`panel_scores`' result on ground-truth data. On CelebA
``beta_vae`` adds ``weak_label``, ``train_accuracy``, ``eval_accuracy`` and ``factor_vae`` adds nothing."""


def check_panel(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple without repeats, or ValueError naming the first unknown one."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    for name in metrics:
        if name not in PANEL_METRICS:
            raise ValueError(f"unknown panel metric {name!r}; expected some of {', '.join(PANEL_METRICS)}")
    return tuple(dict.fromkeys(metrics))


def panel_scores(
    data,
    representation_fn,
    rng: np.random.Generator,
    *,
    metrics: Sequence[str] | None = None,
    config: "MetricConfig | None" = None,
    fresh_nuisance: bool = False,
) -> dict[str, float]:
    """Score one representation with the metrics of the panel, from one encoding of the data.

    Args:
        data: ground-truth data (dSprites, shapes), or CelebA (scored on its val partition,
            :func:`~betasweep.metrics.encoding.held_out`).
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic (the encoder mean),
            or an :class:`~betasweep.metrics.encoding.Encoding` of the scored data.
        rng: the metrics' randomness. Metric ``PANEL_METRICS[i]`` uses child ``i`` of
            ``rng.spawn(len(PANEL_METRICS))`` (``SeedSequence`` spawning), so adding a metric to
            the panel leaves the others' values as they were.
        metrics: names from :data:`PANEL_METRICS`; default ``config.panel``.
        fresh_nuisance: encode every image the metrics draw anew, with a fresh nuisance (colour, noise,
            smallNORB instance) from a child of the rng spawned after the metrics', as disentanglement_lib does
            (:class:`~betasweep.metrics.encoding.FreshEncoding`; ground-truth data only; no cache,
            so each metric encodes what it draws); default: one cached code per grid point.
        config: a :class:`~betasweep.metrics.evaluate.MetricConfig`: ``batch_size``, ``num_train``,
            ``num_eval`` for every metric (disentanglement_lib's defaults are 64, 10,000 and 5,000 for
            all of them; FactorVAE's global variances use ``num_train`` images, dlib's 10,000),
            ``attribute_subset`` for the weak-label score. Default ``MetricConfig()``.

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

        Modularity, IRS and the unsupervised scores need ground-truth data (skipped on CelebA).

        On CelebA (no simulator) ``beta_vae`` gives the weak-label variant under ``weak_label``
        (and ``train_accuracy``, ``eval_accuracy``; :func:`~betasweep.metrics.weak_label_score`),
        ``factor_vae`` is skipped (it needs a factor held fixed while the others vary), and MIG,
        SAP and DCI use the 40 attributes as 0/1 factors on the val images, encoded once.

    Encoding: when the grid has at most :data:`~betasweep.metrics.encoding.WHOLE_GRID_MAX` images
    and no more than the metrics draw (dSprites' 46,080 at the defaults, where the Higgins score
    alone draws 1.92 million), every image is encoded once up front, so every metric reads the same
    codes whichever others ran. Otherwise (a small budget, a large grid) each distinct image is
    encoded once, lazily, as the metrics ask for it; an encoder whose float output depends on the
    composition of its batch may then differ in the last bits between panels.

    Raises:
        ValueError: an unknown metric name; the metrics' own errors.
    """
    from betasweep.metrics.evaluate import MetricConfig

    config = config if config is not None else MetricConfig()
    metrics = check_panel(config.panel if metrics is None else metrics)
    scored = held_out(data)
    children = dict(zip(PANEL_METRICS, rng.spawn(len(PANEL_METRICS))))
    if fresh_nuisance:
        if not isinstance(scored, GroundTruthData) or isinstance(representation_fn, Encoding):
            raise ValueError("fresh_nuisance needs ground-truth data and a representation function")
        nuisance = rng.spawn(1)[0]  # the child after the metrics' own: their draws are unchanged
        encoding = FreshEncoding(scored, representation_fn, nuisance)
    else:
        encoding = encoding_of(scored, representation_fn)
    if not fresh_nuisance and isinstance(encoding, GridEncoding) and scored.num_images <= min(WHOLE_GRID_MAX, _draws(metrics, config)):
        encoding.encode_all()
    out: dict[str, float] = {}
    for name in metrics:
        child = children[name]
        if name == "beta_vae":
            out.update(_higgins(scored, encoding, child, config))
        elif name == "factor_vae":
            if isinstance(encoding, GridEncoding):
                score = factor_vae_score(scored, encoding, child, batch_size=config.batch_size,
                                         num_train=config.num_train, num_eval=config.num_eval,
                                         num_variance_estimate=max(2, config.num_train))
                out["factor_vae"] = score["eval_accuracy"]
        elif name == "mig":
            out.update(mig(scored, encoding, child, num_train=config.num_train))
        elif name == "sap":
            out.update(sap_score(scored, encoding, child, num_train=config.num_train, num_eval=config.num_eval))
        elif name == "dci":
            out.update(dci(scored, encoding, child, num_train=config.num_train, num_eval=config.num_eval))
        elif not isinstance(scored, GroundTruthData):
            continue  # modularity, irs, unsupervised: dlib defines them on ground-truth data
        elif name == "modularity":
            out.update(modularity_explicitness(scored, encoding, child, num_train=config.num_train,
                                               num_eval=config.num_eval))
        elif name == "irs":
            out.update(irs(scored, encoding, child, num_train=config.num_train))
        elif name == "unsupervised":
            out.update(unsupervised_scores(scored, encoding, child, num_train=config.num_train))
    return out


def _draws(metrics: tuple[str, ...], config) -> int:
    """Images the metrics draw (with repeats): Higgins 2·batch per point, FactorVAE batch per point
    plus its variance images, the others one per point."""
    points = config.num_train + config.num_eval
    per_metric = {"beta_vae": 2 * config.batch_size * points, "factor_vae": config.batch_size * points + config.num_train,
                  "mig": config.num_train, "sap": points, "dci": points, "modularity": points,
                  "irs": config.num_train, "unsupervised": config.num_train}
    return sum(per_metric[name] for name in metrics)


def _higgins(scored, encoding: Encoding, rng: np.random.Generator, config) -> dict[str, float]:
    if isinstance(scored, GroundTruthData):
        score = beta_vae_score(scored, encoding, rng, batch_size=config.batch_size,
                               num_train=config.num_train, num_eval=config.num_eval)
        return {"beta_vae": score["eval_accuracy"], **score}
    score = weak_label_score(
        scored.attributes, encoding.codes, rng, batch_size=config.batch_size, num_train=config.num_train,
        num_eval=config.num_eval, attribute_subset=list(config.attribute_subset) if config.attribute_subset else None,
        attribute_names=scored.attribute_names,
    )
    return {"weak_label": score["eval_accuracy"], **score}
