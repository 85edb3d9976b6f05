"""Metrics as pure functions of (data, representation function, rng)."""

from betasweep.metrics.beta_vae import RepresentationFn, beta_vae_score, beta_vae_score_reference, sample_pair_factors
from betasweep.metrics.evaluate import MetricConfig, evaluate_model
from betasweep.metrics.vae import active_units, representation_function, vae_statistics

__all__ = [
    "MetricConfig",
    "evaluate_model",
    "RepresentationFn",
    "active_units",
    "beta_vae_score",
    "beta_vae_score_reference",
    "representation_function",
    "sample_pair_factors",
    "vae_statistics",
]
