"""``betasweep report``: best and top trials, the HTML report, the registered best model; a shell over
:func:`betasweep.api.report`."""

from __future__ import annotations

from pathlib import Path

import click

from betasweep.cli._common import TRACKING_HELP, echo, echo_links, rank_by_option, storage_option

@click.command("report")
@click.option("--study", "study_name", required=True)
@storage_option("sqlite:///betasweep.db")
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: the one the study was created with]")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML report path [default: betasweep-report-STUDY.html].")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Rows of the top-trials table.")
@click.option("--reseed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Retrain the top configurations with N more seeds and rank them by mean score.")
@click.option("--reseed-top", "reseed_configs", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many configurations --reseed retrains.")
@click.option("--gallery", type=click.IntRange(min=0), default=8, show_default=True,
              help="Embed the traversals of this many top trials in the report (0: numbers only).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the best trial's model in the MLflow Model Registry under the alias 'best'.")
@rank_by_option("Rank configurations and give the verdict")
def report(study_name, storage, tracking_uri, out_path, top, reseed, reseed_configs, gallery, register, rank_by):
    """Print the verdict, the configurations (mean ± SE over seeds) and the top trials; write the HTML report,
    log it to the study's run, register the best model."""
    from betasweep.api import study as api
    from betasweep.sweeps.results import format_configurations, format_numbers, format_value

    found = api.report(study_name, storage=storage, tracking_uri=tracking_uri, out=out_path, reseed=reseed,
                       reseed_top_n=reseed_configs, gallery=gallery, register=register, rank_by=rank_by, echo=echo)
    click.echo("verdict:")
    for line in found.verdict:
        click.echo(f"  {line}")
    click.echo(f"\nconfigurations, mean ± SE over seeds (ranked by {found.rank_by}):")
    click.echo(format_configurations(found.configurations, found.spec).to_string(index=False))
    click.echo("\nSpearman rank correlations between the panel's metrics over trials:")
    spearman = found.spearman
    click.echo(spearman.to_string(float_format=lambda v: f"{v:.2f}") if not isinstance(spearman, str) else f"  {spearman}")
    click.echo("")
    columns = [c for c in ("trial", "state", "score", "score_se", "beta", "latent_dim", "width", "batch_size", "beta_norm",
                           "attempt_of", "race_round", "mlflow_run_id") if c in found.trials.columns]
    click.echo(f"best trial #{found.best.number}: " + ", ".join(f"{k}={format_value(k, v)}" for k, v in found.summary.items()
                                                               if k not in ("study", "best_trial")))
    click.echo(format_numbers(found.trials[columns].head(top)).to_string(index=False))
    if found.reseeded is not None and not found.reseeded.empty:
        click.echo("\nretrained with more seeds (ranked by mean score):")
        click.echo(format_numbers(found.reseeded).to_string(index=False))
    click.echo(f"\nreport: {found.path}")
    echo_links(found.tracker, found.best.mlflow_run_id)

command = report
