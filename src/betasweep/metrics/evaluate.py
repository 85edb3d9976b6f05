"""One call that scores a trained model: the disentanglement score plus the VAE statistics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.errors import ConfigError
from betasweep.metrics.beta_vae import beta_vae_score
from betasweep.metrics.vae import representation_function, vae_statistics
from betasweep.metrics.weak_label import weak_label_score
from betasweep.models import BetaVAE

__all__ = ["MetricConfig", "disentanglement_score", "evaluate_model", "held_out"]


@dataclass(frozen=True)
class MetricConfig:
    """Settings of :func:`evaluate_model`.

    Attributes:
        seed: the metric's seed, fixed across trials so every model is scored on the same pairs.
        batch_size, num_train, num_eval: the Higgins metric's (disentanglement_lib defaults 64,
            10,000, 5,000); the weak-label metric on CelebA uses the same.
        num_stat_samples: images for recon loss, KL and active units.
        attribute_subset: CelebA only: the attributes that may be labels of the weak-label metric
            (default all 40).
    """

    seed: int = 0
    batch_size: int = 64
    num_train: int = 10_000
    num_eval: int = 5_000
    num_stat_samples: int = 4096
    attribute_subset: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("batch_size", "num_train", "num_eval", "num_stat_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"metric {name} must be >= 1, got {getattr(self, name)}")
        if self.attribute_subset is not None:
            object.__setattr__(self, "attribute_subset", tuple(self.attribute_subset))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def held_out(data):
    """The data a model is scored on: ground-truth simulators and grids themselves (as in
    disentanglement_lib), CelebA's val partition."""
    return data if isinstance(data, GroundTruthData) else data.with_partition("val")


def disentanglement_score(model: BetaVAE, data, config: MetricConfig, rng: np.random.Generator) -> dict[str, float]:
    """The sweep's objective: ``{"train_accuracy", "eval_accuracy"}``.

    Ground-truth data (dSprites, shapes): the Higgins et al. 2017 metric
    (:func:`~betasweep.metrics.beta_vae_score`). CelebA: the weak-label variant on the val partition,
    attributes as weakly labelled factors (:func:`~betasweep.metrics.weak_label_score`; Higgins et
    al. 2017, Sec. 3, propose it for choosing β on data without a simulator).
    """
    represent = representation_function(model)
    if isinstance(data, GroundTruthData):
        return beta_vae_score(data, represent, rng, batch_size=config.batch_size,
                              num_train=config.num_train, num_eval=config.num_eval)
    val = held_out(data)
    return weak_label_score(
        val.attributes, represent, rng, images=val.images, batch_size=config.batch_size, num_train=config.num_train,
        num_eval=config.num_eval, attribute_subset=list(config.attribute_subset) if config.attribute_subset else None,
        attribute_names=val.attribute_names,
    )


def evaluate_model(model: BetaVAE, data, config: MetricConfig = MetricConfig()) -> dict:
    """Score ``model`` on ``data`` (ground-truth data, or CelebA on its val partition).

    Returns:
        ``train_accuracy``, ``eval_accuracy`` (:func:`disentanglement_score` on the encoder mean),
        ``recon_loss``, ``kl``, ``kl_per_dim``, ``elbo`` (nats) and ``active_units``; see
        :func:`~betasweep.metrics.vae_statistics`. The same ``config.seed`` gives the same figures
        for the same weights.
    """
    score_seq, stats_seq = np.random.SeedSequence(config.seed).spawn(2)
    score = disentanglement_score(model, data, config, np.random.default_rng(score_seq))
    stats = vae_statistics(model, held_out(data), np.random.default_rng(stats_seq), num_samples=config.num_stat_samples)
    return {**score, **stats}
