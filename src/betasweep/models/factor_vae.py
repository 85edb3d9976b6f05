"""FactorVAE (Kim & Mnih 2018): KL plus γ times the total correlation a discriminator estimates.

As disentanglement_lib (``methods/unsupervised/vae.py``: ``shuffle_codes``, ``FactorVAE.model_fn``;
``methods/shared/architectures.py``: ``fc_discriminator``; its ``config/unsupervised_study_v1``
gin: the discriminator's Adam at learning rate 1e-4, β1 0.5, β2 0.9, ε 1e-8): the discriminator, 6
fully connected layers of 1000 leaky-ReLU units (slope 0.2) and 2 logits, tells ``z`` from ``z`` with
each dimension permuted across the batch; the VAE minimises ``recon + KL + γ · mean(logit_0 − logit_1)``,
the discriminator maximises ``½ mean log p_0(z) + ½ mean log p_1(shuffled z)``, both from the same batch
and the same step. Study grid (``sweep.py``): γ ∈ {10, 20, 30, 40, 50, 100}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from betasweep.models.regularized import MethodTerms, RegularizedVAE
from betasweep.models.vae import ModelConfig

__all__ = ["FactorVAE", "FcDiscriminator", "DISCRIMINATOR_ADAM", "discriminator_loss", "factor_vae_tc", "shuffle_codes"]

DISCRIMINATOR_ADAM = {"lr": 1e-4, "betas": (0.5, 0.9), "eps": 1e-8}
"""disentanglement_lib's ``discriminator_optimizer`` settings for FactorVAE."""


class FcDiscriminator(nn.Module):
    """disentanglement_lib's ``fc_discriminator``: ``(b, K)`` codes → ``(b, 2)`` logits (6 x 1000 leaky ReLU, slope 0.2)."""

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6):
        super().__init__()
        blocks: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        blocks.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def shuffle_codes(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each column of ``z`` ``(b, K)`` permuted across the batch independently: samples of ``Π_k q(z_k)``."""
    b, k = z.shape
    order = torch.argsort(torch.rand((b, k), generator=generator, device=z.device), dim=0)
    return torch.gather(z, 0, order)


def factor_vae_tc(logits: torch.Tensor) -> torch.Tensor:
    """The density-ratio TC estimate ``mean_b(logit_0 − logit_1)`` of discriminator logits ``(b, 2)``: scalar, nats."""
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(logits_z: torch.Tensor, logits_shuffled: torch.Tensor) -> torch.Tensor:
    """``−(½ mean log softmax(logits_z)_0 + ½ mean log softmax(logits_shuffled)_1)``: the discriminator minimises it."""
    return -(0.5 * F.log_softmax(logits_z, dim=1)[:, 0].mean() + 0.5 * F.log_softmax(logits_shuffled, dim=1)[:, 1].mean())


class FactorVAE(RegularizedVAE):
    """FactorVAE (``model: factor_vae``): ``recon + KL + γ · TC``, γ = :attr:`ModelConfig.tc_gamma`.

    Kim & Mnih 2018, "Disentangling by factorising", Eq. 2 and Algorithm 2; disentanglement_lib
    ``FactorVAE``. The discriminator is a submodule (its weights are in the checkpoint) that the VAE's
    optimiser leaves alone (:meth:`vae_parameters`); its Adam is :meth:`discriminator_optimizer`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.discriminator = FcDiscriminator(config.latent_dim)

    def vae_parameters(self) -> list[nn.Parameter]:
        own = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    def discriminator_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.discriminator.parameters(), **DISCRIMINATOR_ADAM)

    def penalty(self, terms: MethodTerms, generator: torch.Generator | None = None):
        """``γ · TC`` with the discriminator's weights held (gradient to the encoder only); stats ``tc``
        and ``discriminator_loss`` (on detached codes: gradient to the discriminator only)."""
        weights = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = torch.func.functional_call(self.discriminator, weights, (terms.z,))
        tc = factor_vae_tc(logits)
        z = terms.z.detach()
        d_loss = discriminator_loss(self.discriminator(z), self.discriminator(shuffle_codes(z, generator)))
        return self.config.tc_gamma * tc, {"tc": tc.detach(), "discriminator_loss": d_loss}
