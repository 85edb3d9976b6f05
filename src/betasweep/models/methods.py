"""disentanglement_lib's six methods as a study searches them: each method's strength parameters.

Names as disentanglement_lib's gin bindings (``beta_vae.beta``, ``annealed_vae.c_max``,
``factor_vae.gamma``, ``dip_vae.lambda_od``, ``beta_tc_vae.beta``), mapped to the config field that
holds each; the study grid is ``config/unsupervised_study_v1/sweep.py`` (Locatello et al. 2019, Sec. 5).
"""

from __future__ import annotations

__all__ = ["METHOD_PARAMS", "STUDY_GRID"]

METHOD_PARAMS: dict[str, dict[str, str]] = {
    "beta_vae": {"beta": "beta"},
    "annealed_vae": {"c_max": "capacity_max", "gamma": "gamma", "iteration_threshold": "capacity_steps"},
    "factor_vae": {"gamma": "tc_gamma"},
    "dip_vae_i": {"lambda_od": "lambda_od"},
    "dip_vae_ii": {"lambda_od": "lambda_od"},
    "beta_tcvae": {"beta": "tc_beta"},
}
"""Method → {its parameter's name in a spec's ``model:`` part → the ModelConfig/TrainConfig field}."""

STUDY_GRID: dict[str, dict[str, list[float]]] = {
    "beta_vae": {"beta": [1, 2, 4, 6, 8, 16]},
    "annealed_vae": {"c_max": [5, 10, 25, 50, 75, 100], "gamma": [1000]},
    "factor_vae": {"gamma": [10, 20, 30, 40, 50, 100]},
    "dip_vae_i": {"lambda_od": [1, 2, 5, 10, 20, 50]},
    "dip_vae_ii": {"lambda_od": [1, 2, 5, 10, 20, 50]},
    "beta_tcvae": {"beta": [1, 2, 4, 6, 8, 10]},
}
"""disentanglement_lib's ``unsupervised_study_v1`` grid (λ_d of DIP-VAE-I is 10·λ_od, of DIP-VAE-II λ_od)."""
