"""The β-VAE with the convolutional architecture of Burgess et al. (2018), Appendix A.1."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from betasweep.errors import ConfigError

__all__ = ["ModelConfig", "BetaVAE"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines the network's shape; stored whole in every checkpoint.

    Attributes:
        latent_dim: ``m``, number of latent dimensions (>= 1).
        width: ``k``, channels of every conv layer (Burgess et al. use 32).
        hidden_dim: units of the two fully connected layers (Burgess et al. use 256).
        num_channels: image channels, 1 (dSprites, shapes) or 3 (CelebA).
        image_size: image height = width in pixels; the 4 stride-2 convs need 64.
    """

    latent_dim: int = 10
    width: int = 32
    hidden_dim: int = 256
    num_channels: int = 1
    image_size: int = 64

    def __post_init__(self):
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.width < 1 or self.hidden_dim < 1:
            raise ConfigError(f"width and hidden_dim must be >= 1, got {self.width} and {self.hidden_dim}")
        if self.num_channels not in (1, 3):
            raise ConfigError(f"num_channels must be 1 or 3, got {self.num_channels}")
        if self.image_size != 64:
            raise ConfigError(f"image_size must be 64 (4 stride-2 convs down to 4x4), got {self.image_size}")

    @property
    def num_pixels(self) -> int:
        """``n`` in β_norm = β·m/n: pixels × channels of one image."""
        return self.image_size * self.image_size * self.num_channels

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class BetaVAE(nn.Module):
    """Convolutional VAE with a diagonal Gaussian encoder and a Bernoulli decoder.

    Encoder: 4 conv layers (``width`` channels, 4x4 kernels, stride 2, ReLU): 64→32→16→8→4 pixels,
    then two ``hidden_dim``-unit fully connected ReLU layers and a linear layer to ``2·latent_dim``
    (``mu``, ``logvar``). Decoder: the mirror image with transposed convs, returning logits.
    Burgess et al. 2018, "Understanding disentangling in β-VAE", Appendix A.1; the β objective is
    Higgins et al. 2017, Eq. 4 (see :mod:`betasweep.models.losses`).

    Shapes: images ``x`` float32 ``(b, C, 64, 64)`` in ``[0, 1]``; ``mu``, ``logvar``, ``z``
    ``(b, latent_dim)``; logits ``(b, C, 64, 64)``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, k, h, m = config.num_channels, config.width, config.hidden_dim, config.latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(c, k, 4, 2, 1), nn.ReLU(),  # (b, k, 32, 32)
            nn.Conv2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 16, 16)
            nn.Conv2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 8, 8)
            nn.Conv2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 4, 4)
            nn.Flatten(),
            nn.Linear(k * 16, h), nn.ReLU(),
            nn.Linear(h, h), nn.ReLU(),
            nn.Linear(h, 2 * m),  # (b, 2m): mu, logvar
        )
        self.decoder = nn.Sequential(
            nn.Linear(m, h), nn.ReLU(),
            nn.Linear(h, h), nn.ReLU(),
            nn.Linear(h, k * 16), nn.ReLU(),
            nn.Unflatten(1, (k, 4, 4)),
            nn.ConvTranspose2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 8, 8)
            nn.ConvTranspose2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 16, 16)
            nn.ConvTranspose2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 32, 32)
            nn.ConvTranspose2d(k, c, 4, 2, 1),  # (b, c, 64, 64) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(b, C, 64, 64)`` → ``(mu, logvar)``, each ``(b, latent_dim)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(b, latent_dim)`` → Bernoulli logits ``(b, C, 64, 64)``."""
        return self.decoder(z)

    def reparameterize(
        self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) · eps`` in training mode (Kingma & Welling 2014, Sec. 2.4); ``mu`` in eval mode."""
        if not self.training:
            return mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` → ``(recon_logits, mu, logvar, z)``; ``generator`` seeds the reparameterisation noise."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode(z), mu, logvar, z
