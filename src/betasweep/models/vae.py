"""The β-VAE with the convolutional architecture of Burgess et al. (2018), Appendix A.1."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from betasweep.errors import ConfigError
from betasweep.models.base import ElboTerms, VAEFamily, per_image_bernoulli_nll

__all__ = ["FAMILIES", "FAMILY_FIELDS", "ModelConfig", "BetaVAE", "family_values"]


FAMILIES = ("beta_vae", "cvae", "nvae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tcvae")
"""Model families, the values of :attr:`ModelConfig.model`."""

FAMILY_FIELDS: dict[str, tuple[str, ...]] = {
    "beta_vae": ("latent_dim", "hidden_dim"),
    "cvae": ("latent_dim", "hidden_dim", "conditioned_attributes", "conditioned_factor", "label_dim"),
    "nvae": ("nvae_scales", "nvae_groups", "nvae_latent_channels", "nvae_representation", "spectral_weight"),
    "annealed_vae": ("latent_dim", "hidden_dim"),
    "factor_vae": ("latent_dim", "hidden_dim", "tc_gamma"),
    "dip_vae_i": ("latent_dim", "hidden_dim", "lambda_od"),
    "dip_vae_ii": ("latent_dim", "hidden_dim", "lambda_od"),
    "beta_tcvae": ("latent_dim", "hidden_dim", "tc_beta"),
}
"""The fields each family reads. A field read by no family of the config's ``model`` must keep its
default: setting it is refused with a one-line :class:`ConfigError` naming it."""


def family_values(values: dict) -> dict:
    """``values`` (config fields by name) without the fields that only families other than
    ``values["model"]`` (default ``beta_vae``) read: a sweep that searches ``model`` builds each
    trial's config from them."""
    model = values.get("model", "beta_vae")
    own = set(FAMILY_FIELDS.get(model, ()))
    foreign = {name for family, names in FAMILY_FIELDS.items() if family != model for name in names} - own
    return {k: v for k, v in values.items() if k not in foreign}


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines the network's shape; stored whole in every checkpoint.

    One flat dataclass for every family (the simplest design that keeps sweep specs, CLI options
    and checkpoints flat): ``model`` picks the family and :data:`FAMILY_FIELDS` says which fields
    each family reads. A field that only other families read must keep its default, else
    ``ModelConfig(model="beta_vae", nvae_groups=2)`` raises ``ConfigError("nvae_groups is a field of
    model nvae, not of beta_vae")``. Checkpoints written before families existed have no ``model``
    field and load as ``beta_vae``.

    Attributes:
        model: the family: ``beta_vae`` (Burgess et al. 2018), ``cvae`` (Sohn et al. 2015) or
            ``nvae`` (Vahdat & Kautz 2020); see :func:`betasweep.models.build_model`.
        latent_dim: ``m``, number of latent dimensions (>= 1); beta_vae, cvae.
        width: ``k``, channels of every conv layer (Burgess et al. use 32); all families.
        hidden_dim: units of the two fully connected layers (Burgess et al. use 256); beta_vae, cvae.
        num_channels: image channels, 1 (dSprites, shapes) or 3 (CelebA); follows the data.
        image_size: image height = width in pixels; the 4 stride-2 convs need 64.
        conditioned_attributes: cvae on CelebA: the attributes given as labels ``y`` (±1); None
            means all 40 (resolved to the names at training time).
        conditioned_factor: cvae on ground-truth data: the factor given one-hot as ``y``; None
            means the first factor (``shape`` on dSprites; resolved at training time).
        label_dim: cvae: size of ``y``; follows the data (set when the conditioning is resolved).
        nvae_scales: nvae: number of latent scales, coarsest 4x4, then 8x8, 16x16 (1 to 3).
        nvae_groups: nvae: latent groups per scale (>= 1).
        nvae_latent_channels: nvae: channels of each latent group (>= 1).
        nvae_representation: nvae: ``"top"`` (posterior means of the top, 4x4 group, flattened:
            the metrics' representation) or ``"all"`` (every group's).
        kl_warmup: all families: fraction of the training budget over which the KL weight grows
            linearly from 0 to β (KL annealing, Bowman et al. 2016 Sec. 3.1; Vahdat & Kautz 2020,
            Sec. 5 "KL warm-up"; 0 disables). None: the family's default, 0.3 for nvae and 0 for
            beta_vae and cvae (checkpoints written before the field existed load as 0). On dSprites
            at the default sweep's budget it keeps seeds from collapsing: see examples/shapes-quick.yaml.
        spectral_weight: nvae: λ of the spectral regularisation ``λ · Σ_i s(W_i)`` (Sec. 3.3).
        tc_gamma: factor_vae: γ of ``KL + γ · TC`` (Kim & Mnih 2018), >= 0; disentanglement_lib's
            study sweeps 10, 20, 30, 40, 50, 100.
        lambda_od: dip_vae_i, dip_vae_ii: λ_od of the off-diagonal penalty (Kumar et al. 2018), >= 0;
            λ_d is 10·λ_od (I) or λ_od (II); the study sweeps 1, 2, 5, 10, 20, 50.
        tc_beta: beta_tcvae: β of ``KL + (β − 1) · TC`` (Chen et al. 2018), >= 1 (below 1 it rewards
            total correlation); the study sweeps 1, 2, 4, 6, 8, 10.

    The other methods of disentanglement_lib's study (``annealed_vae``, ``factor_vae``, ``dip_vae_i``,
    ``dip_vae_ii``, ``beta_tcvae``) use β-VAE's network; see :mod:`betasweep.models.regularized`.
    """

    latent_dim: int = 10
    width: int = 32
    hidden_dim: int = 256
    num_channels: int = 1
    image_size: int = 64
    model: str = "beta_vae"
    conditioned_attributes: tuple[str, ...] | None = None
    conditioned_factor: str | None = None
    label_dim: int = 0
    nvae_scales: int = 2
    nvae_groups: int = 1
    nvae_latent_channels: int = 4
    nvae_representation: str = "top"
    kl_warmup: float | None = None
    spectral_weight: float = 0.1
    tc_gamma: float = 10.0
    lambda_od: float = 1.0
    tc_beta: float = 1.0

    def __post_init__(self):
        if self.model not in FAMILIES:
            raise ConfigError(f"model must be one of {', '.join(FAMILIES)}, got {self.model!r}")
        if isinstance(self.conditioned_attributes, str):
            object.__setattr__(self, "conditioned_attributes", (self.conditioned_attributes,))
        elif self.conditioned_attributes is not None:
            object.__setattr__(self, "conditioned_attributes", tuple(self.conditioned_attributes))
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        own = set(FAMILY_FIELDS[self.model])
        for family, names in FAMILY_FIELDS.items():
            for name in names:
                if name not in own and getattr(self, name) != defaults[name]:
                    raise ConfigError(f"{name} is a field of model {family}, not of {self.model}")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.width < 1 or self.hidden_dim < 1:
            raise ConfigError(f"width and hidden_dim must be >= 1, got {self.width} and {self.hidden_dim}")
        if self.num_channels not in (1, 3):
            raise ConfigError(f"num_channels must be 1 or 3, got {self.num_channels}")
        if self.image_size != 64:
            raise ConfigError(f"image_size must be 64 (4 stride-2 convs down to 4x4), got {self.image_size}")
        if self.conditioned_attributes is not None and (
            not self.conditioned_attributes or not all(isinstance(a, str) for a in self.conditioned_attributes)
        ):
            raise ConfigError("conditioned_attributes must be a non-empty list of attribute names")
        if self.label_dim < 0:
            raise ConfigError(f"label_dim must be >= 0, got {self.label_dim}")
        if not 1 <= self.nvae_scales <= 3:
            raise ConfigError(f"nvae_scales must be 1, 2 or 3 (4x4, 8x8, 16x16), got {self.nvae_scales}")
        if self.nvae_groups < 1 or self.nvae_latent_channels < 1:
            raise ConfigError(f"nvae_groups and nvae_latent_channels must be >= 1, got {self.nvae_groups} and "
                              f"{self.nvae_latent_channels}")
        if self.nvae_representation not in ("top", "all"):
            raise ConfigError(f"nvae_representation must be 'top' or 'all', got {self.nvae_representation!r}")
        if self.kl_warmup is not None and not 0 <= self.kl_warmup <= 1:
            raise ConfigError(f"kl_warmup must be a fraction of the budget in [0, 1], got {self.kl_warmup}")
        if not self.spectral_weight >= 0:
            raise ConfigError(f"spectral_weight must be >= 0, got {self.spectral_weight}")
        for name, low in (("tc_gamma", 0.0), ("lambda_od", 0.0), ("tc_beta", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= low and math.isfinite(value)):
                raise ConfigError(f"{name} must be a number >= {low:g} for model {self.model}, got {value!r}")

    @property
    def kl_warmup_fraction(self) -> float:
        """``kl_warmup`` resolved: the family's default (nvae 0.3, others 0) when it is None."""
        if self.kl_warmup is not None:
            return float(self.kl_warmup)
        return 0.3 if self.model == "nvae" else 0.0

    @property
    def num_pixels(self) -> int:
        """``n`` in β_norm = β·m/n: pixels × channels of one image."""
        return self.image_size * self.image_size * self.num_channels

    @property
    def latent_size(self) -> int:
        """``m`` in β_norm = β·m/n: the latent units whose KL β multiplies (nvae: all groups' units)."""
        if self.model == "nvae":
            return sum(self.nvae_groups * self.nvae_latent_channels * (4 * 2**s) ** 2 for s in range(self.nvae_scales))
        return self.latent_dim

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["conditioned_attributes"] is not None:
            out["conditioned_attributes"] = list(out["conditioned_attributes"])
        return out


class BetaVAE(VAEFamily):
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

    def output_bias(self) -> torch.Tensor:
        """The last transposed conv's bias ``(C,)``: the offset of every output logit of a channel."""
        return self.decoder[-1].bias

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(b, C, 64, 64)`` → ``(mu, logvar)``, each ``(b, latent_dim)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``(b, latent_dim)`` → Bernoulli logits ``(b, C, 64, 64)`` (``y`` unused: unconditional)."""
        return self.decoder(z)

    def representation(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder mean ``mu`` ``(b, latent_dim)``."""
        return self.encode(x)[0]

    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> ElboTerms:
        """``recon_loss`` ``(b,)`` for ``z = mu + sigma * eps`` (always sampled) and the Gaussian KL ``(b, latent_dim)``."""
        from betasweep.models.losses import gaussian_kl

        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        logits = self.decode(mu + torch.exp(0.5 * logvar) * eps)
        return ElboTerms(per_image_bernoulli_nll(logits.float(), x), gaussian_kl(mu.float(), logvar.float()))

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
