"""DIP-VAE-I and DIP-VAE-II (Kumar et al. 2018): KL plus moment matching of the aggregate posterior's covariance.

Formulas and defaults follow disentanglement_lib (``methods/unsupervised/vae.py``:
``compute_covariance_z_mean``, ``regularize_diag_off_diag_dip``, ``DIPVAE.regularizer``) and its study
grid (``config/unsupervised_study_v1/sweep.py``: ``lambda_od`` ∈ {1, 2, 5, 10, 20, 50},
``lambda_d_factor`` 10 for DIP-VAE-I and 1 for DIP-VAE-II).
"""

from __future__ import annotations

import torch

from betasweep.models.regularized import MethodTerms, RegularizedVAE

__all__ = ["DIPVAE", "LAMBDA_D_FACTOR", "covariance_z_mean", "dip_regularizer", "dip_covariance"]

LAMBDA_D_FACTOR = {"dip_vae_i": 10.0, "dip_vae_ii": 1.0}
"""``λ_d = factor · λ_od`` per family, as disentanglement_lib's study fixes ``dip_vae.lambda_d_factor``."""


def covariance_z_mean(mu: torch.Tensor) -> torch.Tensor:
    """``Cov[mu]`` over the batch ``(K, K)``, divided by ``b`` (``E[mu mu^T] − E[mu] E[mu]^T``).

    Args:
        mu: ``(b, K)`` posterior means.
    """
    mean = mu.mean(dim=0)
    return (mu.unsqueeze(2) * mu.unsqueeze(1)).mean(dim=0) - mean.unsqueeze(1) * mean.unsqueeze(0)


def dip_covariance(mu: torch.Tensor, logvar: torch.Tensor, dip_type: str) -> torch.Tensor:
    """The matrix DIP-VAE pushes towards the identity ``(K, K)``: ``Cov[mu]`` (``"i"``) or
    ``E[diag exp(logvar)] + Cov[mu]`` (``"ii"``, the aggregate posterior's covariance, Kumar et al. Eq. 6).

    Raises:
        ValueError: ``dip_type`` is neither ``"i"`` nor ``"ii"``.
    """
    cov = covariance_z_mean(mu)
    if dip_type == "i":
        return cov
    if dip_type == "ii":
        return torch.diag(logvar.exp().mean(dim=0)) + cov
    raise ValueError(f"dip_type must be 'i' or 'ii', got {dip_type!r}")


def dip_regularizer(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """``λ_od · Σ_{i≠j} C_ij² + λ_d · Σ_i (C_ii − 1)²`` of a ``(K, K)`` matrix ``C``: scalar (Kumar et al. 2018, Eq. 5-6)."""
    diagonal = torch.diagonal(cov)
    off_diagonal = cov - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1.0).pow(2).sum()


class DIPVAE(RegularizedVAE):
    """DIP-VAE-I (``model: dip_vae_i``) or DIP-VAE-II (``dip_vae_ii``): ``recon + KL + dip_regularizer``.

    ``λ_od`` is :attr:`ModelConfig.lambda_od`; ``λ_d = 10 λ_od`` (I) or ``λ_od`` (II). The network is
    :class:`~betasweep.models.BetaVAE`'s. Kumar et al. 2018, "Variational inference of disentangled
    latent concepts from unlabeled observations", Sec. 3; disentanglement_lib ``DIPVAE``.
    """

    @property
    def dip_type(self) -> str:
        return "i" if self.config.model == "dip_vae_i" else "ii"

    def penalty(self, terms: MethodTerms, generator: torch.Generator | None = None):
        """``dip_regularizer`` of :func:`dip_covariance`; stats: the summed squared off-diagonal of ``Cov[mu]``."""
        lambda_od = self.config.lambda_od
        cov = dip_covariance(terms.mu, terms.logvar, self.dip_type)
        cov_mu = covariance_z_mean(terms.mu.detach())
        off = (cov_mu - torch.diag(torch.diagonal(cov_mu))).pow(2).sum()
        return dip_regularizer(cov, lambda_od, LAMBDA_D_FACTOR[self.config.model] * lambda_od), {"cov_mu_offdiag": off}
