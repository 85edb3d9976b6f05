"""One call that scores a trained model: the metric panel plus the VAE statistics."""

from __future__ import annotations

import numpy as np

from betasweep.metrics.conditional import labelled_view
from betasweep.metrics.config import MetricConfig
from betasweep.metrics.encoding import held_out
from betasweep.metrics.panel import panel_scores
from betasweep.metrics.vae import representation_function, vae_statistics
from betasweep.models import BetaVAE

__all__ = ["MetricConfig", "disentanglement_score", "evaluate_model", "held_out"]


def disentanglement_score(model: BetaVAE, data, config: MetricConfig, rng: np.random.Generator) -> dict[str, float]:
    """The sweep's cheap score: ``{"train_accuracy", "eval_accuracy"}`` of the Higgins metric alone.

    Ground-truth data (dSprites, shapes): the Higgins et al. 2017 metric
    (:func:`~betasweep.metrics.beta_vae_score`). CelebA: the weak-label variant on the val partition,
    attributes as weakly labelled factors (:func:`~betasweep.metrics.weak_label_score`; Higgins et
    al. 2017, Sec. 3, propose it for choosing β on data without a simulator). Equal to the
    ``train_accuracy``/``eval_accuracy`` of :func:`~betasweep.metrics.panel.panel_scores` with the
    same ``rng`` (the panel's ``beta_vae`` child).
    """
    score = panel_scores(labelled_view(model, data), representation_function(model), rng, metrics=("beta_vae",), config=config)
    return {"train_accuracy": score["train_accuracy"], "eval_accuracy": score["eval_accuracy"]}


def evaluate_model(model: BetaVAE, data, config: MetricConfig = MetricConfig()) -> dict:
    """Score ``model`` on ``data`` (ground-truth data, or CelebA on its val partition).

    Returns:
        ``train_accuracy``, ``eval_accuracy`` (the Higgins score on ground-truth data, the weak-label
        score on CelebA, as :func:`disentanglement_score`; always computed, in the panel or not), the keys of ``config.panel``'s metrics
        (:func:`~betasweep.metrics.panel.panel_scores`: ``beta_vae``, ``factor_vae``, ``mig``,
        ``sap``, ``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness``; CelebA:
        ``weak_label`` instead of ``beta_vae``, no ``factor_vae``), ``recon_loss``, ``kl``,
        ``kl_per_dim``, ``elbo`` (nats) and ``active_units``; see
        :func:`~betasweep.metrics.vae_statistics`. The same ``config.seed`` gives the same figures
        for the same weights; every metric is computed from one encoding of the data.
    """
    score_seq, stats_seq = np.random.SeedSequence(config.seed).spawn(2)
    metrics = ("beta_vae", *config.panel)
    score = panel_scores(labelled_view(model, data), representation_function(model), np.random.default_rng(score_seq), metrics=metrics,
                         config=config)
    stats = vae_statistics(model, held_out(data), np.random.default_rng(stats_seq), num_samples=config.num_stat_samples)
    return {**score, **stats}
