"""Networks and losses: :class:`BetaVAE`, its :class:`ModelConfig`, and the loss functions."""

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
    "BetaVAE",
    "ModelConfig",
    "bernoulli_recon_loss",
    "beta_norm",
    "beta_vae_loss",
    "capacity",
    "capacity_loss",
    "gaussian_kl",
    "kl_per_dim",
]
