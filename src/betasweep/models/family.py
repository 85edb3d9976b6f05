"""``build_model(config)``: the network of any family from its :class:`~betasweep.models.ModelConfig`."""

from __future__ import annotations

from betasweep.errors import ConfigError
from betasweep.models.annealed_vae import AnnealedVAE
from betasweep.models.base import VAEFamily
from betasweep.models.beta_tcvae import BetaTCVAE
from betasweep.models.cvae import CVAE
from betasweep.models.dip_vae import DIPVAE
from betasweep.models.factor_vae import FactorVAE
from betasweep.models.nvae import NVAE
from betasweep.models.vae import FAMILIES, BetaVAE, ModelConfig

__all__ = ["build_model"]


def build_model(config: ModelConfig) -> VAEFamily:
    """The family ``config.model`` names: :class:`BetaVAE`, :class:`CVAE`, :class:`NVAE`, or one of
    disentanglement_lib's other methods: :class:`AnnealedVAE`, :class:`FactorVAE`, :class:`DIPVAE`
    (``dip_vae_i``, ``dip_vae_ii``), :class:`BetaTCVAE`.

    Raises:
        ConfigError: an unknown family, or a cvae whose ``label_dim`` is not resolved yet
            (see :func:`~betasweep.models.resolve_conditioning`).
    """
    families = {"beta_vae": BetaVAE, "cvae": CVAE, "nvae": NVAE, "annealed_vae": AnnealedVAE, "factor_vae": FactorVAE,
                "dip_vae_i": DIPVAE, "dip_vae_ii": DIPVAE, "beta_tcvae": BetaTCVAE}
    if config.model not in families:
        raise ConfigError(f"model must be one of {', '.join(FAMILIES)}, got {config.model!r}")
    return families[config.model](config)
