"""AnnealedVAE (Burgess et al. 2018): β-VAE's network trained on ``recon + γ · |KL − C(step)|``.

The capacity objective of :func:`~betasweep.models.capacity_loss` with its ``TrainConfig`` fields
(``gamma``, ``capacity_max``, ``capacity_steps``), as a family of its own so that a study can compare
it with the other methods (disentanglement_lib ``AnnealedVAE``: ``gamma · |kl_loss − c|``, ``c``
linear to ``c_max`` over ``iteration_threshold`` steps; study grid ``c_max`` ∈ {5, 10, 25, 50, 75,
100}, γ = 1000, ``config/unsupervised_study_v1/sweep.py``).
"""

from __future__ import annotations

from betasweep.models.vae import BetaVAE

__all__ = ["AnnealedVAE"]


class AnnealedVAE(BetaVAE):
    """``model: annealed_vae``: the training loop uses the capacity objective whatever ``TrainConfig.objective`` says."""
