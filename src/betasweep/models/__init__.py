"""Networks and losses: :class:`BetaVAE`, its :class:`ModelConfig`, the loss functions, the attribute classifier."""

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
from betasweep.models.vae import BetaVAE, ModelConfig

__all__ = [
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
