"""The ``betasweep`` command.

Bad input (a missing file, β <= 0, a latent size < 1, a malformed dataset) ends with one line on
stderr, ``betasweep: error: ...``, and exit code 2; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from betasweep.errors import BetasweepError, DivergenceError

EXIT_USAGE = 2


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="betasweep")
def cli():
    """Choose β (and latent size, width, batch size) for a β-VAE by a disentanglement metric."""


# ---------------------------------------------------------------------------------------------
# train / evaluate / traverse


@cli.command()
@click.option("--dataset", type=click.Choice(["shapes", "dsprites", "celeba"]), default="shapes", show_default=True,
              help="'shapes' is procedural and needs no file; dsprites and celeba need --data-path.")
@click.option("--data-path", type=click.Path(path_type=Path), default=None,
              help="The dataset's file (dSprites .npz) or folder (CelebA: img_align_celeba/ and the list files).")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Weight of the KL term (> 0).")
@click.option("--latent-dim", type=click.IntRange(min=1), default=10, show_default=True, help="Latent size m.")
@click.option("--width", type=click.IntRange(min=1), default=32, show_default=True, help="Conv channels k.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--train-samples", type=click.IntRange(min=1), default=300_000, show_default=True,
              help="Training budget in images seen.")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--objective", type=click.Choice(["beta", "capacity"]), default="beta", show_default=True,
              help="Higgins β loss or Burgess capacity loss.")
@click.option("--gamma", type=float, default=1000.0, show_default=True, help="Capacity objective's γ.")
@click.option("--capacity-max", type=float, default=25.0, show_default=True, help="Capacity objective's final C (nats).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:i].")
@click.option("--bf16/--no-bf16", default=False, show_default=True, help="bfloat16 autocast on CUDA.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for checkpoint.pt and metrics.json.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(dataset, data_path, beta, latent_dim, width, batch_size, train_samples, learning_rate, objective, gamma,
          capacity_max, seed, device, bf16, out_dir, progress):
    """Train a β-VAE; write OUT/checkpoint.pt and OUT/metrics.json."""
    from betasweep.data import load_dataset
    from betasweep.models import ModelConfig, beta_norm
    from betasweep.training import TrainConfig, train as train_model

    data = load_dataset(dataset, data_path)
    model_config = ModelConfig(latent_dim=latent_dim, width=width, num_channels=data.num_channels)
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
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "beta_norm": beta_norm(beta, latent_dim, model_config.num_pixels),
        "steps": result.step,
        "samples_seen": result.samples_seen,
        "wall_time_s": result.wall_time_s,
        **{k: result.last[k] for k in ("loss", "recon_loss", "kl", "kl_per_dim")},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _emit_json({k: metrics[k] for k in ("checkpoint", "beta_norm", "steps", "loss", "recon_loss", "kl", "wall_time_s")})


def _model_and_data(checkpoint: str, data_path: Path | None, tracking_uri: str):
    """The model of CHECKPOINT (a file, ``runs:/RUN_ID/checkpoint`` or ``models:/NAME@best``) and its dataset."""
    import tempfile

    from betasweep.data import load_dataset
    from betasweep.training import load_checkpoint, resolve_device

    if checkpoint.startswith(("runs:/", "models:/")):
        from betasweep.tracking import download_checkpoint

        checkpoint = download_checkpoint(checkpoint, tracking_uri, tempfile.mkdtemp(prefix="betasweep-checkpoint-"))
    model, state = load_checkpoint(checkpoint, map_location=resolve_device("auto"))
    info = state.get("data") or {}
    name = info.get("dataset", "shapes")
    path = data_path if data_path is not None else info.get("data_path")
    return model, state, load_dataset(name, path, subsample=info.get("subsample"))


_CHECKPOINT_ARG = click.argument("checkpoint")
_TRACKING_OPTION = click.option("--tracking-uri", default="sqlite:///mlflow.db", show_default=True,
                                help="MLflow store for runs:/ and models:/ checkpoints.")


@cli.command()
@_CHECKPOINT_ARG
@_TRACKING_OPTION
@click.option("--data-path", type=click.Path(path_type=Path), default=None,
              help="Dataset file or folder, if it moved since training.")
@click.option("--metric-seed", type=int, default=0, show_default=True, help="Seed of the metric's factor pairs.")
@click.option("--num-train", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--num-eval", type=click.IntRange(min=1), default=5_000, show_default=True)
@click.option("--metric-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
def evaluate(checkpoint, tracking_uri, data_path, metric_seed, num_train, num_eval, metric_batch_size):
    """Score CHECKPOINT: Higgins train/eval accuracy, recon loss, KL, KL per dimension, active units (JSON).

    CHECKPOINT is a file, or a logged one: runs:/RUN_ID/checkpoint or models:/betasweep-STUDY@best.
    """
    from betasweep.metrics import MetricConfig, evaluate_model
    from betasweep.models import beta_norm

    model, state, data = _model_and_data(checkpoint, data_path, tracking_uri)
    config = MetricConfig(seed=metric_seed, batch_size=metric_batch_size, num_train=num_train, num_eval=num_eval)
    result = evaluate_model(model, data, config)
    mc, tc = state["model_config"], state["train_config"]
    _emit_json({
        **result,
        "beta": tc["beta"],
        "beta_norm": beta_norm(tc["beta"], mc["latent_dim"], model.config.num_pixels),
        "latent_dim": mc["latent_dim"],
        "width": mc["width"],
        "batch_size": tc["batch_size"],
        "step": state["step"],
        "metric": config.to_dict(),
    })


@cli.command()
@_CHECKPOINT_ARG
@_TRACKING_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--data-path", type=click.Path(path_type=Path), default=None)
@click.option("--seed", type=int, default=0, show_default=True, help="Picks the real images traversed around.")
@click.option("--classifier", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CelebA: an attribute-classifier checkpoint, to measure each dimension's effect on its predictions.")
def traverse(checkpoint, tracking_uri, out_dir, data_path, seed, classifier):
    """Write OUT/traversal.png (a row per latent dim, sorted by KL, z_j from -3 to 3) and OUT/reconstruction.png.

    On CelebA also name the dimensions by measurement (AUC of mu_j per attribute on the val
    partition; with --classifier, the change of its predicted probability along the traversal):
    prints the table and writes OUT/dimension_names.csv and OUT/dimension_names.html.
    """
    import numpy as np

    from betasweep.data import CelebA
    from betasweep.figures import save_figures
    from betasweep.metrics import held_out, vae_statistics

    model, _, data = _model_and_data(checkpoint, data_path, tracking_uri)
    stats_rng, image_rng, naming_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    kl = vae_statistics(model, held_out(data), stats_rng, num_samples=2048)["kl_per_dim"]
    paths = save_figures(model, held_out(data), image_rng, out_dir, kl)
    result = {name: str(path) for name, path in paths.items()} | {"kl_per_dim": kl}
    if isinstance(data, CelebA):
        from betasweep.sweeps.objective import name_dimensions

        rows, files = name_dimensions(model, data, classifier, naming_rng, out_dir, kl)
        click.echo("\n".join(str(row) for row in rows), err=True)
        result |= {name: str(path) for name, path in files.items()} | {"dimension_names": [str(row) for row in rows]}
    elif classifier is not None:
        raise click.UsageError("--classifier applies to CelebA checkpoints only")
    _emit_json(result)


# ---------------------------------------------------------------------------------------------
# Command groups that live beside their code: each module lists its click commands in COMMANDS.


def _add_commands() -> None:
    from betasweep import celeba_commands
    from betasweep.sweeps import commands as sweep_commands

    for module in (sweep_commands, celeba_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_add_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command, turning bad input into one line on stderr and exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="betasweep", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("betasweep: aborted", err=True)
        return 130
    except click.ClickException as error:
        click.echo(f"betasweep: error: {error.format_message()}", err=True)
        return EXIT_USAGE
    except DivergenceError as error:
        click.echo(f"betasweep: error: {error}", err=True)
        return 1
    except BetasweepError as error:
        click.echo(f"betasweep: error: {error}", err=True)
        return EXIT_USAGE
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
