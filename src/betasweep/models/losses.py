"""VAE losses as pure functions. All values are in nats.

Conventions (DESIGN.md): the reconstruction loss is summed over pixels and averaged over the
batch; the KL is computed per latent dimension and averaged over the batch. Averaging over the
batch (not summing) keeps the loss scale, and so β and the learning rate, independent of the
batch size, which a sweep varies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_kl",
    "kl_per_dim",
    "bernoulli_recon_loss",
    "beta_vae_loss",
    "capacity",
    "capacity_loss",
    "beta_norm",
]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per sample and dimension, in nats.

    ``0.5 · (mu² + exp(logvar) − logvar − 1)``: Kingma & Welling 2014, Appendix B.

    Args:
        mu, logvar: ``(batch, latent_dim)``.

    Returns:
        ``(batch, latent_dim)``; e.g. mu=1, logvar=0 gives 0.5 per dimension.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_kl` averaged over the batch: ``(latent_dim,)`` nats."""
    return gaussian_kl(mu, logvar).mean(dim=0)


def bernoulli_recon_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Negative Bernoulli log-likelihood of ``x`` under ``logits``, summed over pixels, averaged over the batch.

    Args:
        logits: decoder output ``(batch, C, H, W)`` (pre-sigmoid).
        x: targets ``(batch, C, H, W)`` in ``[0, 1]``.

    Returns:
        Scalar tensor, nats per image. Perfect logits (±large on binary targets) give ~0.
    """
    per_image = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)
    return per_image.mean()


def beta_vae_loss(recon_loss: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """Higgins et al. 2017, Eq. 4 (negated): ``recon_loss + beta · kl``, with ``kl`` summed over dimensions."""
    return recon_loss + beta * kl


def capacity(step: int, capacity_max: float, capacity_steps: int) -> float:
    """The capacity schedule C(step) of Burgess et al. 2018, Sec. 5: linear from 0 to ``capacity_max`` nats over ``capacity_steps``."""
    if capacity_steps <= 0:
        return float(capacity_max)
    return float(capacity_max) * min(1.0, step / capacity_steps)


def capacity_loss(
    recon_loss: torch.Tensor, kl: torch.Tensor, *, gamma: float, step: int, capacity_max: float, capacity_steps: int
) -> torch.Tensor:
    """Burgess et al. 2018, Eq. 8: ``recon_loss + gamma · |kl − C(step)|``, C from :func:`capacity`."""
    return recon_loss + gamma * (kl - capacity(step, capacity_max, capacity_steps)).abs()


def beta_norm(beta: float, latent_dim: int, num_pixels: int) -> float:
    """Normalised β of Higgins et al. 2017, Sec. 3: ``β · m / n`` with ``n`` = pixels × channels."""
    return beta * latent_dim / num_pixels
