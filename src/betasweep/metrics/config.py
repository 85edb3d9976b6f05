"""The settings of one scoring call: :class:`MetricConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from betasweep.errors import ConfigError
from betasweep.metrics.registry import DEFAULT_PANEL, PANEL_METRICS

__all__ = ["MetricConfig"]


@dataclass(frozen=True)
class MetricConfig:
    """Settings of :func:`~betasweep.metrics.evaluate.evaluate_model` and :func:`~betasweep.metrics.panel.panel_scores`.

    Attributes:
        seed: the metric's seed, fixed across trials so every model is scored on the same pairs.
        batch_size, num_train, num_eval: points of every metric of the panel (disentanglement_lib's
            defaults 64, 10,000, 5,000 for all of them, each metric's ``full`` settings in
            :data:`~betasweep.metrics.registry.REGISTRY`; MIG uses ``num_train`` only, FactorVAE also
            ``num_train`` images for its global variances); the weak-label metric on CelebA uses the same.
        num_stat_samples: images for recon loss, KL and active units.
        attribute_subset: CelebA only: the attributes that may be labels of the weak-label metric
            (default all 40).
        panel: the metrics :func:`~betasweep.metrics.evaluate.evaluate_model` computes, names from
            :data:`~betasweep.metrics.panel.PANEL_METRICS` (default all but DCI, the slow one).
    """

    seed: int = 0
    batch_size: int = 64
    num_train: int = 10_000
    num_eval: int = 5_000
    num_stat_samples: int = 4096
    attribute_subset: tuple[str, ...] | None = None
    panel: tuple[str, ...] = DEFAULT_PANEL

    def __post_init__(self):
        for name in ("batch_size", "num_train", "num_eval", "num_stat_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"metric {name} must be >= 1, got {getattr(self, name)}")
        if self.attribute_subset is not None:
            object.__setattr__(self, "attribute_subset", tuple(self.attribute_subset))
        panel = (self.panel,) if isinstance(self.panel, str) else tuple(self.panel)
        for name in panel:
            if name not in PANEL_METRICS:
                raise ConfigError(f"metric panel: unknown metric {name!r}; expected some of {', '.join(PANEL_METRICS)}")
        if not panel:
            raise ConfigError(f"metric panel: empty; expected some of {', '.join(PANEL_METRICS)}")
        object.__setattr__(self, "panel", tuple(dict.fromkeys(panel)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
