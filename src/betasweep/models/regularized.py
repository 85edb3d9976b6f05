"""The base of disentanglement_lib's regularised VAEs (FactorVAE, DIP-VAE-I/II, β-TCVAE): :class:`RegularizedVAE`.

disentanglement_lib (``methods/unsupervised/vae.py``, ``BaseVAE.model_fn``) trains every method on
``reconstruction_loss + regularizer(kl_loss, z_mean, z_logvar, z_sampled)``; each method differs only
in its regulariser, which is ``kl_loss`` plus a method term. These families keep β-VAE's network
(:class:`~betasweep.models.BetaVAE`) and give the training loop that loss through
:meth:`RegularizedVAE.method_loss`; the method's strength is a :class:`~betasweep.models.ModelConfig`
field of its family (``tc_gamma``, ``lambda_od``, ``tc_beta``), so the checkpoint records it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from betasweep.models.base import per_image_bernoulli_nll
from betasweep.models.losses import gaussian_kl
from betasweep.models.vae import BetaVAE

__all__ = ["MethodTerms", "RegularizedVAE"]


class MethodTerms(NamedTuple):
    """The ELBO terms of a batch (as :class:`~betasweep.models.ElboTerms`) and the codes the regularisers read.

    Attributes:
        recon_loss: ``(b,)`` nats, ``-log p(x | z)`` summed over pixels.
        kl: ``(b, latent_dim)`` nats, closed-form Gaussian KL per unit.
        mu, logvar: ``(b, latent_dim)``: ``q(z | x)``'s mean and log-variance.
        z: ``(b, latent_dim)``: the sample ``mu + exp(logvar / 2) · eps`` the decoder saw.
    """

    recon_loss: torch.Tensor
    kl: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


class RegularizedVAE(BetaVAE):
    """β-VAE's network trained on ``recon + KL + method term`` (disentanglement_lib's ``BaseVAE``).

    Subclasses implement :meth:`penalty`; FactorVAE also has a discriminator with its own optimiser
    (:meth:`discriminator_optimizer`), whose loss :meth:`method_loss` returns beside the VAE's.
    """

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> MethodTerms:
        """:meth:`BetaVAE.elbo_terms` with ``mu``, ``logvar`` and the sampled ``z`` (float32)."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decode(z)
        mu, logvar, z = mu.float(), logvar.float(), z.float()
        return MethodTerms(per_image_bernoulli_nll(logits.float(), x), gaussian_kl(mu, logvar), mu, logvar, z)

    def penalty(self, terms: MethodTerms, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The method's term added to ``recon + KL`` (scalar) and named statistics to log (scalars)."""
        raise NotImplementedError

    def vae_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the VAE's Adam updates (all but a discriminator's)."""
        return list(self.parameters())

    def discriminator_optimizer(self) -> torch.optim.Optimizer | None:
        """The discriminator's own optimiser (FactorVAE), or None."""
        return None

    def method_loss(self, terms: MethodTerms, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """``(loss, discriminator_loss, stats)``: the VAE's loss ``mean_b(recon) + Σ_K mean_b(kl) + penalty``
        (disentanglement_lib's ``reconstruction_loss + regularizer``), the discriminator's loss (None
        without one; its gradient reaches only the discriminator's parameters) and the penalty's statistics."""
        penalty, stats = self.penalty(terms, generator)
        loss = terms.recon_loss.mean() + terms.kl.mean(dim=0).sum() + penalty
        return loss, stats.pop("discriminator_loss", None), stats
