"""``betasweep report``: best and top trials, the HTML report, the registered best model."""

from __future__ import annotations

from pathlib import Path

import click

from betasweep.cli._common import TRACKING_HELP, echo, echo_links, rank_by_option, storage_option, study_summary

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
    from betasweep.sweeps.objective import artifact_folder, objective_value
    from betasweep.sweeps.report import (best_trial, configuration_frame, fetch_pictures, format_configurations,
                                         format_numbers, format_value, reseed_top, spearman_table, study_verdict,
                                         trials_frame, write_report)
    from betasweep.sweeps.study import load_study, make_storage
    from betasweep.tracking import Tracker

    the_study, spec = load_study(study_name, make_storage(storage, tracking_uri=tracking_uri))
    tracking_uri = tracking_uri or the_study.user_attrs.get("mlflow_tracking_uri", "sqlite:///mlflow.db")
    if not any(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False)):
        raise click.UsageError(f"study {study_name!r} has no complete trial yet")
    rank_by = rank_by or spec.objective
    the_verdict = study_verdict(the_study, spec, rank_by)  # refuses an unknown --rank-by before any work
    tracker = Tracker(tracking_uri, spec.study)
    parent = the_study.user_attrs.get("mlflow_parent_run_id") or tracker.find_parent_run()

    reseeded = None
    if reseed:
        def log_run(trial_number, seed, metrics, files):
            run = tracker.start_trial_run(parent, trial_number, tags={"betasweep.reseed": seed})
            run.log_params({**spec.fixed, **the_study.trials[trial_number].params, "seed": seed})
            run.log_metrics({**metrics, "score": objective_value(metrics, spec.objective)}, step=spec.train_samples)
            for name, path in files.items():
                run.log_artifact(path, artifact_folder(name))
            run.end("FINISHED")

        reseeded = reseed_top(the_study, spec, reseed, top=reseed_configs, log_run=log_run, echo=echo)

    best = best_trial(the_study)
    frame = trials_frame(the_study, spec)
    out_path = out_path or Path(f"betasweep-report-{study_name}.html")
    pictures = fetch_pictures(the_study, spec, tracker, gallery=gallery) if gallery else None
    write_report(the_study, spec, out_path, reseed=reseeded, rank_by=rank_by, pictures=pictures)
    if parent:
        tracker.client.log_artifact(parent, str(out_path), "report")
    summary = study_summary(the_study, spec)
    if register and best.user_attrs.get("mlflow_run_id"):
        name = f"betasweep-{spec.study}"
        summary["registered_model"] = {"name": name, "alias": "best",
                                       "version": tracker.register_best(best.user_attrs["mlflow_run_id"], name, artifact_path=
                                                                        best.user_attrs.get("best_seed_checkpoint", "checkpoint"))}
    click.echo("verdict:")
    for line in the_verdict.lines:
        click.echo(f"  {line}")
    click.echo(f"\nconfigurations, mean ± SE over seeds (ranked by {rank_by}):")
    click.echo(format_configurations(configuration_frame(the_study, spec, rank_by), spec).to_string(index=False))
    spearman = spearman_table(the_study, spec)
    click.echo("\nSpearman rank correlations between the panel's metrics over trials:")
    click.echo(spearman.to_string(float_format=lambda v: f"{v:.2f}") if not isinstance(spearman, str) else f"  {spearman}")
    click.echo("")
    columns = [c for c in ("trial", "state", "score", "score_se", "beta", "latent_dim", "width", "batch_size", "beta_norm",
                           "attempt_of", "race_round", "mlflow_run_id") if c in frame.columns]
    click.echo(f"best trial #{best.number}: " + ", ".join(f"{k}={format_value(k, v)}" for k, v in summary.items()
                                                         if k not in ("study", "best_trial")))
    click.echo(format_numbers(frame[columns].head(top)).to_string(index=False))
    if reseeded is not None and not reseeded.empty:
        click.echo("\nretrained with more seeds (ranked by mean score):")
        click.echo(format_numbers(reseeded).to_string(index=False))
    click.echo(f"\nreport: {out_path}")
    echo_links(tracker, best.user_attrs.get("mlflow_run_id"))


command = report
