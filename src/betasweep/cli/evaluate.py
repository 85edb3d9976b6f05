"""``betasweep evaluate``: score a checkpoint (a file, ``runs:/`` or ``models:/``)."""

from __future__ import annotations

from pathlib import Path

import click

from betasweep.cli._common import CHECKPOINT_ARG, DATA_FROM_CHECKPOINT_OPTION, TRACKING_OPTION, emit_json, model_and_data

@click.command("evaluate")
@CHECKPOINT_ARG
@TRACKING_OPTION
@click.option("--data-path", type=click.Path(path_type=Path), default=None,
              help="Dataset file or folder, if it moved since training.")
@DATA_FROM_CHECKPOINT_OPTION
@click.option("--metric-seed", type=int, default=0, show_default=True, help="Seed of the metric's factor pairs.")
@click.option("--num-train", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--num-eval", type=click.IntRange(min=1), default=5_000, show_default=True)
@click.option("--metric-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--panel", default=None, metavar="NAMES",
              help="Metrics to compute, comma-separated, of beta_vae, factor_vae, mig, sap, dci; 'all' for every one. "
                   "Default: the panel stored with the checkpoint, else beta_vae,factor_vae,mig,sap (DCI is slow).")
@click.option("--num-stat-samples", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Held-out images for recon loss, KL and active units.")
def evaluate(checkpoint, tracking_uri, data_path, data_from_checkpoint, metric_seed, num_train, num_eval, metric_batch_size, panel,
             num_stat_samples):
    """Score CHECKPOINT: the metric panel (beta_vae, factor_vae, mig, sap, dci_disentanglement,
    dci_completeness, dci_informativeness), Higgins train/eval accuracy, recon loss, KL, KL per
    dimension, active units (JSON). On CelebA: weak_label instead of beta_vae, no factor_vae.

    CHECKPOINT is a file, or a logged one: runs:/RUN_ID/checkpoint or models:/betasweep-STUDY@best.
    """
    from betasweep.api.model import evaluate as score
    from betasweep.metrics import DEFAULT_PANEL, PANEL_METRICS, MetricConfig
    from betasweep.models import beta_norm

    def metric_config(names):
        return MetricConfig(seed=metric_seed, batch_size=metric_batch_size, num_train=num_train, num_eval=num_eval,
                            panel=names, num_stat_samples=num_stat_samples)

    if panel is not None:  # checked before the checkpoint is read
        config = metric_config(PANEL_METRICS if panel.strip() == "all"
                               else tuple(name.strip() for name in panel.split(",") if name.strip()))
    model, state, data = model_and_data(checkpoint, data_path, tracking_uri, data_from_checkpoint=data_from_checkpoint)
    if panel is None:
        stored = ((state.get("data") or {}).get("metric_config") or {}).get("panel")
        config = metric_config(tuple(stored) if stored else DEFAULT_PANEL)
    result = score(model, data, panel=config.panel, metric_seed=metric_seed, num_train=num_train, num_eval=num_eval,
                   metric_batch_size=metric_batch_size, num_stat_samples=num_stat_samples)
    mc, tc = state["model_config"], state["train_config"]
    emit_json({
        **result,
        "beta": tc["beta"],
        "model": model.config.model,
        "beta_norm": beta_norm(tc["beta"], model.config.latent_size, model.config.num_pixels),
        "latent_dim": mc["latent_dim"],
        "width": mc["width"],
        "batch_size": tc["batch_size"],
        "step": state["step"],
        "metric": config.to_dict(),
    })


command = evaluate
