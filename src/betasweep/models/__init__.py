"""Networks and losses: the VAE families (:class:`BetaVAE`, :class:`CVAE`, :class:`NVAE`, :func:`build_model`), their :class:`ModelConfig`, the loss functions, the attribute classifier."""

from betasweep.models.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    MissingWeightsError,
    build_classifier,
    probability_function,
)

from betasweep.models.losses import (
    bernoulli_recon_loss,
    beta_norm,
    beta_vae_loss,
    capacity,
    capacity_loss,
    gaussian_kl,
    kl_per_dim,
)
from betasweep.models.vae import FAMILIES, FAMILY_FIELDS, BetaVAE, ModelConfig
from betasweep.models.base import ElboTerms, VAEFamily, mean_pixel_logit
from betasweep.models.cvae import CVAE, label_names, labels_from, resolve_conditioning
from betasweep.models.nvae import NVAE, residual_normal_kl
from betasweep.models.family import build_model

__all__ = [
    "CVAE",
    "ElboTerms",
    "FAMILIES",
    "FAMILY_FIELDS",
    "NVAE",
    "VAEFamily",
    "mean_pixel_logit",
    "build_model",
    "label_names",
    "labels_from",
    "resolve_conditioning",
    "residual_normal_kl",
    "AttributeClassifier",
    "BetaVAE",
    "ClassifierConfig",
    "MissingWeightsError",
    "build_classifier",
    "probability_function",
    "ModelConfig",
    "bernoulli_recon_loss",
    "beta_norm",
    "beta_vae_loss",
    "capacity",
    "capacity_loss",
    "gaussian_kl",
    "kl_per_dim",
]
