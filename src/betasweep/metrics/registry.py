"""The registry of the metric panel: each metric's name, function, output keys and settings.

As disent's ``make_metric(name, fast_kwargs=...)`` (nmichlo/disent, ``disent/metrics/utils.py``),
a metric registers itself with :func:`make_metric` and declares two settings:

- **full**: disentanglement_lib's defaults (google-research/disentanglement_lib, the metric gin
  configs of ``unsupervised_study_v1``; cited in each metric's docstring), the settings
  :class:`~betasweep.metrics.config.MetricConfig` defaults to;
- **fast**: a smaller budget for quick looks (tests, smoke runs, notebooks), of the size disent's
  fast settings use (e.g. its IRS 700 / 350 points, DCI 1,000 / 500); scores are noisier and are
  not comparable with published ones.

The registry's order is the panel's: metric ``i`` of :data:`REGISTRY` draws from child ``i`` of the
panel's rng (:func:`~betasweep.metrics.panel.panel_scores`), so a metric is appended, never inserted.
The eight metrics of the panel are registered at the end of this module, each as a thin function that
calls the metric's own module on the panel's shared encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.metrics.beta_vae import beta_vae_score
from betasweep.metrics.dci import dci
from betasweep.metrics.encoding import Encoding, GridEncoding
from betasweep.metrics.factor_vae import factor_vae_score
from betasweep.metrics.irs import irs
from betasweep.metrics.mig import mig
from betasweep.metrics.modularity import modularity_explicitness
from betasweep.metrics.sap import sap_score
from betasweep.metrics.unsupervised import unsupervised_scores
from betasweep.metrics.weak_label import weak_label_score

__all__ = ["DEFAULT_PANEL", "PANEL_KEYS", "PANEL_METRICS", "PanelMetric", "REGISTRY", "check_panel", "make_metric"]

ScoreFn = Callable[..., dict[str, float]]
"""``(data, encoding, rng, **settings) → {key: float}``: one metric on the panel's shared encoding."""

DrawsFn = Callable[..., int]
"""``(**settings) → int``: images the metric draws (with repeats) at these settings."""


@dataclass(frozen=True)
class PanelMetric:
    """One metric of the panel.

    Attributes:
        name: the name a spec and ``--metrics`` use (``"beta_vae"``, ``"mig"``, ...).
        score: ``(data, encoding, rng, **settings) → {key: float}``; ``data`` is ground-truth data or a
            labelled image set (CelebA's val partition), ``encoding`` an
            :class:`~betasweep.metrics.encoding.Encoding` of it.
        keys: the keys it adds on ground-truth data (the panel's ``PANEL_KEYS``).
        full: disentanglement_lib's settings (point counts, batch size).
        fast: the settings that replace ``full``'s when a fast score is asked for; the keys are a
            subset of ``full``'s.
        draws: images the metric draws at given settings (decides whether the panel encodes the
            whole grid up front).
        ground_truth_only: defined on ground-truth data only (skipped on CelebA).
    """

    name: str
    score: ScoreFn
    keys: tuple[str, ...]
    full: Mapping[str, Any]
    fast: Mapping[str, Any]
    draws: DrawsFn
    ground_truth_only: bool = False

    def __post_init__(self):
        extra = set(self.fast) - set(self.full)
        if extra:
            raise ValueError(f"metric {self.name!r}: fast settings {sorted(extra)} are not among its full settings")
        object.__setattr__(self, "full", MappingProxyType(dict(self.full)))
        object.__setattr__(self, "fast", MappingProxyType(dict(self.fast)))

    def settings(self, config: Any = None, *, fast: bool = False) -> dict[str, Any]:
        """The keyword arguments :attr:`score` is called with.

        Args:
            config: an object whose attributes of the same names override :attr:`full`'s (a
                :class:`~betasweep.metrics.config.MetricConfig`: ``batch_size``, ``num_train``,
                ``num_eval``, ``attribute_subset``); None: :attr:`full` itself.
            fast: replace those by :attr:`fast`'s values (the others, e.g. the attribute subset, stay).
        """
        out = {name: getattr(config, name, value) for name, value in self.full.items()}
        if fast:
            out.update(self.fast)
        return out


REGISTRY: dict[str, PanelMetric] = {}
"""Every registered metric by name, in registration order (the panel's order)."""


def make_metric(name: str, *, keys: tuple[str, ...], full: Mapping[str, Any], fast: Mapping[str, Any],
                draws: DrawsFn, ground_truth_only: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator: register the decorated ``score`` function as panel metric ``name``.

    Returns the function unchanged (as disent's ``make_metric``, whose wrapper also keeps the
    function callable as before).

    Raises:
        ValueError: ``name`` is registered already; a fast setting that is not a full one.
    """
    def register(score: ScoreFn) -> ScoreFn:
        if name in REGISTRY:
            raise ValueError(f"panel metric {name!r} is registered already")
        REGISTRY[name] = PanelMetric(name, score, tuple(keys), full, fast, draws, ground_truth_only)
        return score

    return register


# --- the panel's metrics, in the panel's order ---------------------------------------------------
# full: disentanglement_lib's gin bindings (config/unsupervised_study_v1/metric_configs/*.gin);
# fast: of the size of disent's fast settings (its DCI 1,000 / 500 and IRS 700 / 350 points), a fifth to a
# fourteenth of full; the Higgins score, which disent lacks, a tenth.

def _points(num_train: int, num_eval: int, **_) -> int:
    return num_train + num_eval


def _train_points(num_train: int, **_) -> int:
    return num_train


@make_metric("beta_vae", keys=("beta_vae", "train_accuracy", "eval_accuracy"),
             full=dict(batch_size=64, num_train=10_000, num_eval=5_000, attribute_subset=None),
             fast=dict(num_train=1_000, num_eval=500),
             draws=lambda batch_size, num_train, num_eval, **_: 2 * batch_size * (num_train + num_eval))
def higgins(data, encoding: Encoding, rng: np.random.Generator, *, batch_size: int, num_train: int, num_eval: int,
            attribute_subset: Sequence[str] | None) -> dict[str, float]:
    """Higgins et al. 2017 (ICLR, Sec. 3) β-VAE score, :func:`~betasweep.metrics.beta_vae_score`
    (dlib's ``beta_vae_sklearn.gin``: batch_size 64, num_train 10,000, num_eval 5,000):
    ``beta_vae`` (= ``eval_accuracy``), ``train_accuracy``, ``eval_accuracy``.

    On a labelled image set (CelebA) the weak-label variant, :func:`~betasweep.metrics.weak_label_score`
    over ``attribute_subset`` (default all attributes): ``weak_label`` instead of ``beta_vae``.
    """
    if isinstance(data, GroundTruthData):
        score = beta_vae_score(data, encoding, rng, batch_size=batch_size, num_train=num_train, num_eval=num_eval)
        return {"beta_vae": score["eval_accuracy"], **score}
    score = weak_label_score(
        data.attributes, encoding.codes, rng, batch_size=batch_size, num_train=num_train, num_eval=num_eval,
        attribute_subset=list(attribute_subset) if attribute_subset else None, attribute_names=data.attribute_names,
    )
    return {"weak_label": score["eval_accuracy"], **score}


@make_metric("factor_vae", keys=("factor_vae",), ground_truth_only=True,
             full=dict(batch_size=64, num_train=10_000, num_eval=5_000), fast=dict(num_train=700, num_eval=350),
             draws=lambda batch_size, num_train, num_eval, **_: batch_size * (num_train + num_eval) + num_train)
def factor_vae(data, encoding: Encoding, rng: np.random.Generator, *, batch_size: int, num_train: int,
               num_eval: int) -> dict[str, float]:
    """Kim & Mnih 2018 (ICML, Sec. 4) FactorVAE score's eval accuracy, :func:`~betasweep.metrics.factor_vae_score`
    (dlib's ``factor_vae_metric.gin``: batch_size 64, num_train 10,000, num_eval 5,000, num_variance_estimate
    10,000; the global variances here use ``num_train`` images, at least 2)."""
    if not isinstance(encoding, GridEncoding):
        return {}
    score = factor_vae_score(data, encoding, rng, batch_size=batch_size, num_train=num_train, num_eval=num_eval,
                             num_variance_estimate=max(2, num_train))
    return {"factor_vae": score["eval_accuracy"]}


@make_metric("mig", keys=("mig",), full=dict(num_train=10_000), fast=dict(num_train=2_000), draws=_train_points)
def mutual_information_gap(data, encoding: Encoding, rng: np.random.Generator, *, num_train: int) -> dict[str, float]:
    """Chen et al. 2018 (NeurIPS, Sec. 5) MIG, :func:`~betasweep.metrics.mig.mig` (dlib's ``mig.gin``:
    num_train 10,000, 20 histogram bins)."""
    return mig(data, encoding, rng, num_train=num_train)


@make_metric("sap", keys=("sap",), full=dict(num_train=10_000, num_eval=5_000),
             fast=dict(num_train=2_000, num_eval=1_000), draws=_points)
def sap(data, encoding: Encoding, rng: np.random.Generator, *, num_train: int, num_eval: int) -> dict[str, float]:
    """Kumar et al. 2018 (ICLR, Sec. 3) SAP score, :func:`~betasweep.metrics.sap.sap_score` (dlib's
    ``sap_score.gin``: num_train 10,000, num_test 5,000, discrete factors)."""
    return sap_score(data, encoding, rng, num_train=num_train, num_eval=num_eval)


@make_metric("dci", keys=("dci_disentanglement", "dci_completeness", "dci_informativeness"),
             full=dict(num_train=10_000, num_eval=5_000), fast=dict(num_train=1_000, num_eval=500), draws=_points)
def dci_scores(data, encoding: Encoding, rng: np.random.Generator, *, num_train: int,
               num_eval: int) -> dict[str, float]:
    """Eastwood & Williams 2018 (ICLR) DCI with gradient-boosted trees, :func:`~betasweep.metrics.dci.dci`
    (dlib's ``dci.gin``: num_train 10,000, num_test 5,000)."""
    return dci(data, encoding, rng, num_train=num_train, num_eval=num_eval)


@make_metric("modularity", keys=("modularity", "explicitness"), ground_truth_only=True,
             full=dict(num_train=10_000, num_eval=5_000), fast=dict(num_train=2_000, num_eval=1_000), draws=_points)
def modularity(data, encoding: Encoding, rng: np.random.Generator, *, num_train: int,
               num_eval: int) -> dict[str, float]:
    """Ridgeway & Mozer 2018 (NeurIPS, Sec. 3) modularity and explicitness,
    :func:`~betasweep.metrics.modularity.modularity_explicitness` (dlib's ``modularity_explicitness.gin``:
    num_train 10,000, num_test 5,000); also ``explicitness_train``."""
    return modularity_explicitness(data, encoding, rng, num_train=num_train, num_eval=num_eval)


@make_metric("irs", keys=("irs",), ground_truth_only=True, full=dict(num_train=10_000), fast=dict(num_train=700),
             draws=_train_points)
def interventional_robustness(data, encoding: Encoding, rng: np.random.Generator, *,
                              num_train: int) -> dict[str, float]:
    """Suter et al. 2019 (ICML, Sec. 4) IRS, :func:`~betasweep.metrics.irs.irs` (dlib's ``irs.gin``:
    num_train 10,000, diff_quantile 0.99); also ``irs_active_dims``."""
    return irs(data, encoding, rng, num_train=num_train)


@make_metric("unsupervised", keys=("gaussian_total_correlation", "wasserstein_correlation", "mutual_info_score"),
             ground_truth_only=True, full=dict(num_train=10_000), fast=dict(num_train=2_000), draws=_train_points)
def unsupervised(data, encoding: Encoding, rng: np.random.Generator, *, num_train: int) -> dict[str, float]:
    """disentanglement_lib's unsupervised scores (Locatello et al. 2019, ICML, Sec. 4),
    :func:`~betasweep.metrics.unsupervised.unsupervised_scores` (dlib's ``unsupervised.gin``: num_train 10,000;
    lower is more factorised); also ``wasserstein_correlation_norm``."""
    return unsupervised_scores(data, encoding, rng, num_train=num_train)


PANEL_METRICS = tuple(REGISTRY)
"""Every metric of the panel, in a fixed order: metric ``i`` draws from child ``i`` of the rng."""

DEFAULT_PANEL = ("beta_vae", "factor_vae", "mig", "sap")
"""All but DCI, the slow one (about 160 s of CPU per model on dSprites at its defaults)."""

PANEL_KEYS = {name: metric.keys for name, metric in REGISTRY.items()}
"""The keys each metric adds to :func:`~betasweep.metrics.panel.panel_scores`' result on ground-truth data. On CelebA
``beta_vae`` adds ``weak_label``, ``train_accuracy``, ``eval_accuracy`` and ``factor_vae`` adds nothing."""


def check_panel(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple without repeats, or ValueError naming the first unknown one."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    for name in metrics:
        if name not in REGISTRY:
            raise ValueError(f"unknown panel metric {name!r}; expected some of {', '.join(PANEL_METRICS)}")
    return tuple(dict.fromkeys(metrics))
