"""The conditional VAE (Sohn et al. 2015) on the Burgess et al. (2018) backbone, and its labels ``y``."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from betasweep.errors import ConfigError
from betasweep.models.base import ElboTerms, VAEFamily, per_image_bernoulli_nll
from betasweep.models.losses import gaussian_kl
from betasweep.models.vae import ModelConfig

__all__ = ["CVAE", "resolve_conditioning", "label_names", "labels_from"]


def _is_attribute_data(data) -> bool:
    return hasattr(data, "attribute_names")


def resolve_conditioning(config: ModelConfig, data) -> ModelConfig:
    """The cvae's ``y`` made explicit for ``data``: the attribute or factor names and ``label_dim``.

    CelebA (anything with ``attribute_names``): ``conditioned_attributes`` (None: all of them), ``y``
    = ±1 per attribute. Ground-truth data (``factor_names``, ``factor_sizes``): ``conditioned_factor``
    (None: the first, ``shape`` on dSprites), ``y`` = its one-hot value. Other families pass through.

    Raises:
        ConfigError: an attribute or factor the data does not have (named, with the expected names),
            attributes on ground-truth data or a factor on CelebA, or a ``label_dim`` that
            contradicts the data.
    """
    if config.model != "cvae":
        return config
    if _is_attribute_data(data):
        if config.conditioned_factor is not None:
            raise ConfigError(f"conditioned_factor applies to ground-truth data; on CelebA give conditioned_attributes")
        names = tuple(config.conditioned_attributes or data.attribute_names)
        unknown = [a for a in names if a not in data.attribute_names]
        if unknown:
            raise ConfigError(f"conditioned_attributes: unknown CelebA attribute {unknown[0]!r}; expected names such as "
                              f"{', '.join(data.attribute_names[:5])}, ... (list_attr_celeba.txt)")
        resolved = dataclasses.replace(config, conditioned_attributes=names, label_dim=0)
        label_dim = len(names)
    else:
        if config.conditioned_attributes is not None:
            raise ConfigError("conditioned_attributes applies to CelebA; on ground-truth data give conditioned_factor")
        name = config.conditioned_factor or data.factor_names[0]
        if name not in data.factor_names:
            raise ConfigError(f"conditioned_factor: unknown factor {name!r}; expected one of {', '.join(data.factor_names)}")
        resolved = dataclasses.replace(config, conditioned_factor=name, label_dim=0)
        label_dim = int(data.factor_sizes[data.factor_names.index(name)])
    if config.label_dim not in (0, label_dim):
        raise ConfigError(f"label_dim {config.label_dim} does not match the data's labels ({label_dim})")
    return dataclasses.replace(resolved, label_dim=label_dim)


def label_names(config: ModelConfig) -> list[str]:
    """Names of ``y``'s entries: the attributes, or ``"<factor>_<value>"`` per one-hot entry (MLflow-safe)."""
    if config.conditioned_attributes is not None:
        return list(config.conditioned_attributes)
    return [f"{config.conditioned_factor}_{v}" for v in range(config.label_dim)]


def labels_from(config: ModelConfig, data, labels: np.ndarray) -> np.ndarray:
    """``y`` float32 ``(n, label_dim)`` from a dataset's raw labels.

    Args:
        labels: CelebA: bool ``(n, A)`` attributes in ``data.attribute_names`` order; ground-truth
            data: int ``(n, num_factors)`` factors.
    """
    labels = np.asarray(labels)
    if config.conditioned_attributes is not None:
        columns = [data.attribute_names.index(a) for a in config.conditioned_attributes]
        return np.where(labels[:, columns], 1.0, -1.0).astype(np.float32)
    column = data.factor_names.index(config.conditioned_factor)
    return np.eye(config.label_dim, dtype=np.float32)[labels[:, column]]


class CVAE(VAEFamily):
    """Conditional VAE: encoder ``q(z | x, y)``, decoder ``p(x | z, y)``, prior ``N(0, I)``.

    Sohn, Lee & Yan 2015, "Learning Structured Output Representation using Deep Conditional
    Generative Models", Sec. 3 (the CVAE's recognition and generation networks, here with the
    prior network replaced by ``N(0, I)`` so that ``z`` is a code of what ``y`` does not say, as in
    conditional generation). Backbone: Burgess et al. 2018, Appendix A.1 (see
    :class:`~betasweep.models.BetaVAE`); ``y`` joins after the conv stack (encoder: concatenated
    to the flattened features), at the decoder's input (concatenated to ``z``) and at every
    transposed conv, whose input it modulates (FiLM, Perez et al. 2018: ``h·(1 + γ(y)) + b(y)``,
    zero-initialised). With ``y`` at the decoder's input only, or as constant extra channels (a
    bias per label), a briefly trained decoder on dSprites drew every shape as a square whatever
    ``y`` said.

    Shapes: ``x`` float32 ``(b, C, 64, 64)``; ``y`` float32 ``(b, label_dim)`` (±1 attributes or a
    one-hot factor); ``mu``, ``logvar``, ``z`` ``(b, latent_dim)``; logits ``(b, C, 64, 64)``.
    """

    conditional = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.label_dim < 1:
            raise ConfigError("cvae: label_dim is unknown; resolve the conditioning against the data first "
                              "(betasweep.models.resolve_conditioning)")
        self.config = config
        c, k, h, m, n = config.num_channels, config.width, config.hidden_dim, config.latent_dim, config.label_dim
        self.features = nn.Sequential(
            nn.Conv2d(c, k, 4, 2, 1), nn.ReLU(),  # (b, k, 32, 32)
            nn.Conv2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 16, 16)
            nn.Conv2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 8, 8)
            nn.Conv2d(k, k, 4, 2, 1), nn.ReLU(),  # (b, k, 4, 4)
            nn.Flatten(),
        )
        self.encoder_head = nn.Sequential(
            nn.Linear(k * 16 + n, h), nn.ReLU(),
            nn.Linear(h, h), nn.ReLU(),
            nn.Linear(h, 2 * m),  # (b, 2m): mu, logvar
        )
        self.decoder_head = nn.Sequential(
            nn.Linear(m + n, h), nn.ReLU(),
            nn.Linear(h, h), nn.ReLU(),
            nn.Linear(h, k * 16), nn.ReLU(),
            nn.Unflatten(1, (k, 4, 4)),
        )
        self.decoder_convs = nn.ModuleList([
            nn.ConvTranspose2d(k, k, 4, 2, 1),  # (b, k, 8, 8)
            nn.ConvTranspose2d(k, k, 4, 2, 1),  # (b, k, 16, 16)
            nn.ConvTranspose2d(k, k, 4, 2, 1),  # (b, k, 32, 32)
            nn.ConvTranspose2d(k, c, 4, 2, 1),  # (b, c, 64, 64) logits
        ])
        # y also modulates the input of every transposed conv (FiLM, Perez et al. 2018: h·(1 + γ(y)) + b(y)),
        # so that the decoder can switch feature maps by label
        self.film = nn.ModuleList([nn.Linear(n, 2 * k) for _ in self.decoder_convs])
        for film in self.film:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)

    @staticmethod
    def _labels(y: torch.Tensor | None, b: int) -> torch.Tensor:
        if y is None:
            raise ValueError("a cvae needs labels y")
        return y.expand(b, -1) if y.shape[0] == 1 else y

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` → ``(mu, logvar)`` of ``q(z | x, y)``, each ``(b, latent_dim)``; ``y`` of batch 1 broadcasts."""
        h = torch.cat([self.features(x), self._labels(y, len(x)).to(x.dtype)], dim=1)
        mu, logvar = self.encoder_head(h).chunk(2, dim=1)
        return mu, logvar

    def output_bias(self) -> torch.Tensor:
        """The last transposed conv's bias ``(C,)`` (no FiLM after it)."""
        return self.decoder_convs[-1].bias

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``(z, y)`` → Bernoulli logits ``(b, C, 64, 64)`` of ``p(x | z, y)``; ``y`` of batch 1 broadcasts."""
        y = self._labels(y, len(z)).to(z.dtype)
        h = self.decoder_head(torch.cat([z, y], dim=1))
        for i, (conv, film) in enumerate(zip(self.decoder_convs, self.film)):
            gamma, shift = film(y).chunk(2, dim=1)
            h = conv(h * (1 + gamma[:, :, None, None]) + shift[:, :, None, None])
            if i < len(self.decoder_convs) - 1:
                h = torch.relu(h)
        return h

    def representation(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x, y)[0]

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> ElboTerms:
        mu, logvar = self.encode(x, y)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        logits = self.decode(mu + torch.exp(0.5 * logvar) * eps, y)
        return ElboTerms(per_image_bernoulli_nll(logits.float(), x), gaussian_kl(mu.float(), logvar.float()))

    def sample_batch(self, data, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Images and their ``y`` via ``data.sample_labelled(n, rng)`` (see :func:`labels_from`)."""
        images, labels = data.sample_labelled(n, rng)
        return images, labels_from(self.config, data, labels)
