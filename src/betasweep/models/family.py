"""``build_model(config)``: the network of any family from its :class:`~betasweep.models.ModelConfig`."""

from __future__ import annotations

from betasweep.errors import ConfigError
from betasweep.models.base import VAEFamily
from betasweep.models.cvae import CVAE
from betasweep.models.nvae import NVAE
from betasweep.models.vae import FAMILIES, BetaVAE, ModelConfig

__all__ = ["build_model"]


def build_model(config: ModelConfig) -> VAEFamily:
    """The family ``config.model`` names: :class:`BetaVAE`, :class:`CVAE` or :class:`NVAE`.

    Raises:
        ConfigError: an unknown family, or a cvae whose ``label_dim`` is not resolved yet
            (see :func:`~betasweep.models.resolve_conditioning`).
    """
    families = {"beta_vae": BetaVAE, "cvae": CVAE, "nvae": NVAE}
    if config.model not in families:
        raise ConfigError(f"model must be one of {', '.join(FAMILIES)}, got {config.model!r}")
    return families[config.model](config)
