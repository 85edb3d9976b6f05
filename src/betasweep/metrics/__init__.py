"""Metrics as pure functions of (data, representation function, rng)."""

from betasweep.metrics.beta_vae import RepresentationFn, beta_vae_score, beta_vae_score_reference, sample_pair_factors
from betasweep.metrics.attribute_naming import (
    attribute_auc,
    format_naming_table,
    measure_dimension_names,
    name_dimensions,
    traversal_effect,
    write_naming_csv,
    write_naming_heatmap,
)
from betasweep.metrics.evaluate import MetricConfig, disentanglement_score, evaluate_model, held_out
from betasweep.metrics.vae import active_units, representation_function, vae_statistics
from betasweep.metrics.weak_label import encode_images, weak_label_score

__all__ = [
    "attribute_auc",
    "disentanglement_score",
    "encode_images",
    "held_out",
    "format_naming_table",
    "measure_dimension_names",
    "name_dimensions",
    "traversal_effect",
    "weak_label_score",
    "write_naming_csv",
    "write_naming_heatmap",
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
