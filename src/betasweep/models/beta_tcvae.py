"""β-TCVAE (Chen et al. 2018): KL plus ``(β − 1)`` times the minibatch-weighted estimate of the total correlation.

Formula as disentanglement_lib (``methods/unsupervised/vae.py``: ``gaussian_log_density``,
``total_correlation``, ``BetaTCVAE.regularizer``): ``KL + (β − 1) · TC``, TC estimated on the batch
without the ``log(N·M)`` constants (they shift the estimate by ``(K − 1) log(N·M)``, not its gradient).
Study grid (``config/unsupervised_study_v1/sweep.py``): β ∈ {1, 2, 4, 6, 8, 10}.
"""

from __future__ import annotations

import math

import torch

from betasweep.models.regularized import MethodTerms, RegularizedVAE

__all__ = ["BetaTCVAE", "gaussian_log_density", "total_correlation"]


def gaussian_log_density(samples: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log N(samples; mean, exp(log_var))`` elementwise (broadcasting), nats."""
    return -0.5 * ((samples - mean).pow(2) * torch.exp(-log_var) + log_var + math.log(2.0 * math.pi))


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Minibatch-weighted TC estimate (Chen et al. 2018, Sec. 4.1), as disentanglement_lib computes it: scalar, nats.

    ``mean_i [ logsumexp_j Σ_k log q(z_ik | x_j) − Σ_k logsumexp_j log q(z_ik | x_j) ]``.

    Args:
        z: ``(b, K)`` samples; mu, logvar: ``(b, K)`` the batch's posteriors.
    """
    log_qz_prob = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))  # (b, b, K)
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(dim=1)  # (b,)
    log_qz = torch.logsumexp(log_qz_prob.sum(dim=2), dim=1)  # (b,)
    return (log_qz - log_qz_product).mean()


class BetaTCVAE(RegularizedVAE):
    """β-TCVAE (``model: beta_tcvae``): ``recon + KL + (β − 1) · TC`` with β = :attr:`ModelConfig.tc_beta`.

    Chen et al. 2018, "Isolating sources of disentanglement in VAEs", Eq. 4 with α = γ = 1;
    disentanglement_lib ``BetaTCVAE``. At β = 1 the loss is the plain VAE's.
    """

    def penalty(self, terms: MethodTerms, generator: torch.Generator | None = None):
        tc = total_correlation(terms.z, terms.mu, terms.logvar)
        return (self.config.tc_beta - 1.0) * tc, {"tc": tc.detach()}
