"""Metrics as pure functions of (data, representation function, rng)."""

from betasweep.metrics.beta_vae import beta_vae_score, beta_vae_score_reference, fit_and_score, sample_pair_factors
from betasweep.metrics.attribute_naming import (
    attribute_auc,
    format_naming_table,
    measure_dimension_names,
    name_dimensions,
    traversal_effect,
    write_naming_csv,
    write_naming_heatmap,
)
from betasweep.metrics.dci import dci
from betasweep.metrics.config import MetricConfig
from betasweep.metrics.encoding import Encoding, GridEncoding, LabelledEncoding, RepresentationFn, encoding_of
from betasweep.metrics.conditional import conditioned_value_wins, control, labelled_view, leakage
from betasweep.metrics.evaluate import disentanglement_score, evaluate_model, held_out
from betasweep.metrics.factor_vae import factor_vae_score
from betasweep.metrics.irs import irs
from betasweep.metrics.mig import mig
from betasweep.metrics.modularity import modularity_explicitness
from betasweep.metrics.panel import DEFAULT_PANEL, PANEL_KEYS, PANEL_METRICS, check_panel, panel_scores
from betasweep.metrics.registry import REGISTRY, PanelMetric, make_metric
from betasweep.metrics.sap import sap_score
from betasweep.metrics.udr import udr, udr_images, udr_of_models
from betasweep.metrics.unsupervised import unsupervised_scores
from betasweep.metrics.vae import active_units, representation_function, vae_statistics
from betasweep.metrics.weak_label import encode_images, weak_label_score

__all__ = [
    "DEFAULT_PANEL",
    "PANEL_KEYS",
    "PANEL_METRICS",
    "PanelMetric",
    "REGISTRY",
    "make_metric",
    "fit_and_score",
    "check_panel",
    "conditioned_value_wins",
    "Encoding",
    "GridEncoding",
    "LabelledEncoding",
    "dci",
    "encoding_of",
    "factor_vae_score",
    "irs",
    "mig",
    "modularity_explicitness",
    "panel_scores",
    "unsupervised_scores",
    "sap_score",
    "udr",
    "udr_images",
    "udr_of_models",
    "control",
    "labelled_view",
    "leakage",
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
