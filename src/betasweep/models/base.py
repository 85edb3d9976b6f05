"""The interface every VAE family offers training, metrics and figures (:class:`VAEFamily`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ElboTerms", "VAEFamily", "mean_pixel_logit", "per_image_bernoulli_nll"]


class ElboTerms(NamedTuple):
    """The two terms of the negative ELBO of a batch, per image, in nats.

    Attributes:
        recon_loss: ``(b,)``: ``-log p(x | z)`` for one sample ``z ~ q(z | x)``, summed over pixels.
        kl: ``(b, K)``: KL of every latent unit (closed form), ``K`` = :attr:`VAEFamily.kl_dim`.
    """

    recon_loss: torch.Tensor
    kl: torch.Tensor


def per_image_bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(b, C, H, W)`` logits and targets in [0, 1] → ``(b,)`` Bernoulli NLL summed over pixels (nats)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def mean_pixel_logit(images: np.ndarray | torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``logit(p_c)`` of each channel's mean pixel ``p_c`` over ``images``: float32 ``(C,)``.

    ``images``: float ``(n, C, H, W)`` in ``[0, 1]`` (numpy or torch). ``p_c`` is clipped to
    ``[eps, 1 - eps]`` so that a blank channel gives a finite logit. It is the constant Bernoulli
    logit that minimises the mean reconstruction loss of ``images``: a decoder whose output bias
    starts there starts at the best constant image instead of grey (logit about 0): Karpathy's
    "init well" (the last layer's bias at the targets' mean; "A recipe for training neural
    networks", 2019). Not in Burgess et al. 2018 nor disentanglement_lib, whose decoders start at
    bias 0 (grey); measured against that start in docs/results/2026-12-06.md ("the mean-image plateau").

    Raises:
        ValueError: ``images`` is not 4-D or is empty.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (n, C, H, W) array, got shape {tuple(x.shape)}")
    p = x.double().mean(dim=(0, 2, 3)).clamp(eps, 1 - eps)
    return torch.logit(p).float()


class VAEFamily(nn.Module):
    """What the training loop, the metrics and the figures use of a VAE, whatever its family.

    Subclasses (:class:`~betasweep.models.BetaVAE`, :class:`~betasweep.models.CVAE`,
    :class:`~betasweep.models.NVAE`) implement :meth:`elbo_terms`, :meth:`representation`,
    :meth:`decode` and the sizes; the defaults here cover unconditional, unregularised families.

    * ``y`` is the conditioning label vector (float32 ``(b, label_dim)``) of conditional families and
      None for the others; :meth:`sample_batch` draws images with their ``y`` from a dataset.
    * The loss the loop minimises is ``mean_b(recon_loss) + β · kl_weight(step) · Σ_K mean_b(kl) +
      regularization()``.
    """

    conditional: bool = False

    @property
    def representation_dim(self) -> int:
        """``d``: columns of :meth:`representation` (what the metrics score); ``latent_dim`` unless a family says otherwise."""
        return self.config.latent_dim

    @property
    def kl_dim(self) -> int:
        """``K``: columns of :attr:`ElboTerms.kl`; the representation's units come first (``latent_dim`` by default)."""
        return self.config.latent_dim

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> ElboTerms:
        """One-sample ELBO terms of ``x`` ``(b, C, 64, 64)``; ``z`` drawn from ``q`` with ``generator``
        (also in eval mode)."""
        raise NotImplementedError

    def representation(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic code of ``x``: ``(b, representation_dim)`` posterior means (call in eval mode)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``(b, representation_dim)`` (a code as :meth:`representation` returns) → logits ``(b, C, 64, 64)``."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic reconstruction logits ``(b, C, 64, 64)`` (posterior means everywhere)."""
        return self.decode(self.representation(x, y), y)

    def output_bias(self) -> torch.Tensor | None:
        """The ``(C,)`` bias added to every pixel's output logit of channel ``c`` (the decoder's last
        layer's bias), or None for a family without one. Families built on the β-VAE decoder
        inherit :class:`~betasweep.models.BetaVAE`'s."""
        return None

    @torch.no_grad()
    def init_output_bias(self, images: np.ndarray | torch.Tensor) -> None:
        """Set :meth:`output_bias` to :func:`mean_pixel_logit` of ``images`` ``(n, C, H, W)`` (a sample
        of the training data): the decoder starts at the best constant image, not grey.

        Called by the training loop before the first step when ``TrainConfig.output_bias_init`` is
        ``"data_mean"``; the value lives in the weights, so a checkpoint rebuilds the model from
        its config and state alone.

        Raises:
            NotImplementedError: the family has no output bias (:meth:`output_bias` is None).
            ValueError: ``images`` has another number of channels than the bias.
        """
        bias = self.output_bias()
        if bias is None:
            raise NotImplementedError(f"{type(self).__name__} has no output bias to initialise")
        logit = mean_pixel_logit(images)
        if logit.shape != bias.shape:
            raise ValueError(f"images have {logit.numel()} channel(s), the output bias {bias.numel()}")
        bias.copy_(logit.to(bias.device, bias.dtype))

    def regularization(self) -> torch.Tensor:
        """An extra loss term (nvae: spectral regularisation); 0 by default."""
        return torch.zeros((), device=next(self.parameters()).device)

    def kl_weight(self, step: int, num_steps: int) -> float:
        """Factor on β at optimiser step ``step`` of ``num_steps``: the KL warm-up.

        ``min(1, step / (w · num_steps))`` with ``w = config.kl_warmup_fraction`` (Bowman et al. 2016,
        Sec. 3.1; Vahdat & Kautz 2020, Sec. 5); 1 throughout when ``w`` is 0.
        """
        ramp = self.config.kl_warmup_fraction * num_steps
        return 1.0 if ramp <= 0 else min(1.0, step / ramp)

    def kl_groups(self, kl_per_dim: list[float]) -> dict[str, float]:
        """KL summed per latent group (nvae: ``kl_group_0`` top, ...); empty for one-group families."""
        return {}

    def sample_batch(self, data, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """``n`` training images float32 ``(n, C, 64, 64)`` and their ``y`` (None: unconditional).

        Unconditional families call ``data.sample_observations(n, rng)`` (so the rng stream is the
        one of β-VAE runs before families existed).
        """
        return data.sample_observations(n, rng), None

    def label_tensor(self, y: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
        return None if y is None else torch.as_tensor(np.asarray(y, np.float32), device=device)
