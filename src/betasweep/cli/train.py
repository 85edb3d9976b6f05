"""``betasweep train``: train one VAE (any family), write its checkpoint and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import emit_json, progress_option
from betasweep.data import DATASETS

@click.command("train")
@click.option("--dataset", type=click.Choice(DATASETS), default="shapes", show_default=True,
              help="'shapes' is procedural and needs no file; the others need --data-path (see `betasweep data check`).")
@click.option("--data-path", type=click.Path(path_type=Path), default=None,
              help="The dataset's file (dSprites/MPI3D .npz, 3dshapes .h5) or folder (SmallNORB, Cars3D, CelebA).")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Weight of the KL term (> 0).")
@click.option("--model", "model_family", type=click.Choice(["beta_vae", "cvae", "nvae"]), default="beta_vae",
              show_default=True, help="Model family: β-VAE (Burgess), conditional VAE (Sohn), NVAE-style hierarchy.")
@click.option("--latent-dim", type=click.IntRange(min=1), default=10, show_default=True,
              help="Latent size m (beta_vae, cvae).")
@click.option("--width", type=click.IntRange(min=1), default=32, show_default=True, help="Conv channels k.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--train-samples", type=click.IntRange(min=1), default=300_000, show_default=True,
              help="Training budget in images seen.")
@click.option("--learning-rate", "--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=1e-4, show_default=True)
@click.option("--objective", type=click.Choice(["beta", "capacity"]), default="beta", show_default=True,
              help="Higgins β loss or Burgess capacity loss.")
@click.option("--gamma", type=float, default=1000.0, show_default=True, help="Capacity objective's γ.")
@click.option("--capacity-max", type=float, default=25.0, show_default=True, help="Capacity objective's final C (nats).")
@click.option("--conditioned-attributes", default=None,
              help="cvae on CelebA: comma-separated attributes given as labels y (default all 40).")
@click.option("--conditioned-factor", default=None,
              help="cvae on ground-truth data: the factor given one-hot as y (default the first, shape).")
@click.option("--nvae-scales", type=int, default=None, help="nvae: latent scales 4x4, 8x8, 16x16 (1-3; default 2).")
@click.option("--nvae-groups", type=int, default=None, help="nvae: latent groups per scale (default 1).")
@click.option("--nvae-latent-channels", type=int, default=None, help="nvae: channels per latent group (default 4).")
@click.option("--nvae-representation", type=click.Choice(["top", "all"]), default=None,
              help="nvae: the metrics' code: the top group's posterior means (default) or every group's.")
@click.option("--kl-warmup", type=float, default=None, help="Fraction of the budget over which the KL weight grows from 0 to beta (default: nvae 0.3, others 0).")
@click.option("--spectral-weight", type=float, default=None, help="nvae: spectral regularisation weight λ (default 0.1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:i].")
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on CUDA.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for checkpoint.pt and metrics.json.")
@progress_option("training")
def train(dataset, data_path, beta, model_family, latent_dim, width, batch_size, train_samples, learning_rate, objective,
          gamma, capacity_max, conditioned_attributes, conditioned_factor, nvae_scales, nvae_groups, nvae_latent_channels,
          nvae_representation, kl_warmup, spectral_weight, seed, device, bf16, out_dir, progress):
    """Train a VAE of any family (--model); write OUT/checkpoint.pt and OUT/metrics.json.

    A family's own options given for another family are refused (e.g. --nvae-groups with
    --model beta_vae).
    """
    from betasweep.data import load_dataset
    from betasweep.models import ModelConfig, beta_norm
    from betasweep.training import TrainConfig, train as train_model

    data = load_dataset(dataset, data_path)
    family_options = {
        "conditioned_attributes": tuple(a.strip() for a in conditioned_attributes.split(",") if a.strip())
        if conditioned_attributes is not None else None,
        "conditioned_factor": conditioned_factor, "nvae_scales": nvae_scales, "nvae_groups": nvae_groups,
        "nvae_latent_channels": nvae_latent_channels, "nvae_representation": nvae_representation,
        "kl_warmup": kl_warmup, "spectral_weight": spectral_weight,
    }
    model_config = ModelConfig(model=model_family, latent_dim=latent_dim, width=width, num_channels=data.num_channels,
                               **{k: v for k, v in family_options.items() if v is not None})
    train_config = TrainConfig(
        beta=beta, objective=objective, gamma=gamma, capacity_max=capacity_max, batch_size=batch_size,
        train_samples=train_samples, learning_rate=learning_rate, seed=seed, device=device, bf16=bf16,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "checkpoint.pt"
    extra = {"dataset": dataset, "data_path": str(data_path.resolve()) if data_path else None}
    result = train_model(data, model_config, train_config, checkpoint_path=checkpoint, extra=extra, progress=progress)
    metrics = {
        "checkpoint": str(checkpoint),
        **extra,
        "model_config": result.model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "model": model_family,
        "beta_norm": beta_norm(beta, model_config.latent_size, model_config.num_pixels),
        "steps": result.step,
        "samples_seen": result.samples_seen,
        "wall_time_s": result.wall_time_s,
        **{k: result.last[k] for k in ("loss", "recon_loss", "kl", "kl_per_dim")},
        **{k: v for k, v in result.last.items() if k.startswith("kl_group_") or k == "spectral"},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    emit_json({k: metrics[k] for k in ("checkpoint", "model", "beta_norm", "steps", "loss", "recon_loss", "kl", "wall_time_s")})


command = train
