"""One call that scores a trained model: the Higgins metric plus the VAE statistics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from betasweep.errors import ConfigError
from betasweep.metrics.beta_vae import beta_vae_score
from betasweep.metrics.vae import representation_function, vae_statistics
from betasweep.models import BetaVAE

__all__ = ["MetricConfig", "evaluate_model"]


@dataclass(frozen=True)
class MetricConfig:
    """Settings of :func:`evaluate_model`.

    Attributes:
        seed: the metric's seed, fixed across trials so every model is scored on the same pairs.
        batch_size, num_train, num_eval: the Higgins metric's (disentanglement_lib defaults 64,
            10,000, 5,000).
        num_stat_samples: images for recon loss, KL and active units.
    """

    seed: int = 0
    batch_size: int = 64
    num_train: int = 10_000
    num_eval: int = 5_000
    num_stat_samples: int = 4096

    def __post_init__(self):
        for name in ("batch_size", "num_train", "num_eval", "num_stat_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"metric {name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_model(model: BetaVAE, data, config: MetricConfig = MetricConfig()) -> dict:
    """Score ``model`` on ground-truth ``data``.

    Returns:
        ``train_accuracy``, ``eval_accuracy`` (Higgins et al. 2017 metric on the encoder mean),
        ``recon_loss``, ``kl``, ``kl_per_dim``, ``elbo`` (nats) and ``active_units``; see
        :func:`~betasweep.metrics.beta_vae_score` and :func:`~betasweep.metrics.vae_statistics`.
        The same ``config.seed`` gives the same figures for the same weights.
    """
    score_seq, stats_seq = np.random.SeedSequence(config.seed).spawn(2)
    score = beta_vae_score(
        data,
        representation_function(model),
        np.random.default_rng(score_seq),
        batch_size=config.batch_size,
        num_train=config.num_train,
        num_eval=config.num_eval,
    )
    stats = vae_statistics(model, data, np.random.default_rng(stats_seq), num_samples=config.num_stat_samples)
    return {**score, **stats}
