"""The sweep commands of ``betasweep``: ``study create``, ``sweep``, ``worker``, ``report``.

Heavy imports (optuna, mlflow, torch) happen inside the commands so ``betasweep --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

STORAGE_HELP = "Optuna storage URL: sqlite:///betasweep.db (one process) or postgresql+psycopg://user:pw@host/db."
TRACKING_HELP = "MLflow tracking URI: sqlite:///mlflow.db (local) or http://host:5000 (a tracking server)."


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _storage_option(default: str | None):
    return click.option("--storage", default=default, show_default=default is not None, help=STORAGE_HELP)


def _summary(study, spec) -> dict:
    from betasweep.sweeps.report import best_trial

    best = best_trial(study)
    params = {**spec.fixed, **best.params}
    return {
        "study": study.study_name,
        "best_trial": best.number,
        "score": best.values[0],
        **{k: params.get(k) for k in ("beta", "latent_dim", "width", "batch_size") if k in params},
        "beta_norm": best.user_attrs.get("beta_norm"),
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
    }


@click.group()
def study():
    """Create studies (for workers to share)."""


@study.command("create")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@_storage_option(None)
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: sqlite:///mlflow.db]")
@click.option("--exist-ok", is_flag=True, help="Succeed if the study already exists with the same spec (re-runs of a stack).")
def study_create(spec_path, storage, tracking_uri, exist_ok):
    """Create the study of SPEC once (workers then join it with `betasweep worker`)."""
    from betasweep.sweeps.spec import load_spec
    from betasweep.sweeps.study import DEFAULT_STORAGE, create_study, make_storage
    from betasweep.tracking import DEFAULT_TRACKING_URI, Tracker

    spec = load_spec(spec_path)
    storage_url = storage or DEFAULT_STORAGE
    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    tracker = Tracker(tracking_uri, spec.study)
    created = create_study(spec, make_storage(storage_url, tracking_uri=tracking_uri), tracker, load_if_exists=exist_ok)
    click.echo(json.dumps({"study": created.study_name, "storage": storage_url, "tracking_uri": tracking_uri,
                           "mlflow_parent_run_id": created.user_attrs["mlflow_parent_run_id"]}))


@click.command()
@click.argument("spec_path", metavar="[SPEC]", required=False, type=click.Path(path_type=Path))
@click.option("--n-trials", type=click.IntRange(min=1), default=None, help="Trials to run here [default: the spec's].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop starting trials after this many seconds.")
@_storage_option("sqlite:///betasweep.db")
@click.option("--tracking-uri", default="sqlite:///mlflow.db", show_default=True, help=TRACKING_HELP)
@click.option("--progress/--no-progress", default=True, show_default=True)
def sweep(spec_path, n_trials, timeout, storage, tracking_uri, progress):
    """Create (or load) the study of SPEC and run its trials in this process.

    With no SPEC: a short default sweep on the embedded defaults (procedural shapes, SQLite study,
    local MLflow store): 12 trials in about 8 minutes on 2 CPU cores.
    """
    from betasweep.sweeps.spec import load_spec
    from betasweep.sweeps.study import create_study, make_storage, run_trials, warn_if_shared_sqlite
    from betasweep.tracking import Tracker

    spec = load_spec(spec_path)
    tracker = Tracker(tracking_uri, spec.study)
    the_study = create_study(spec, make_storage(storage, tracking_uri=tracking_uri), tracker, load_if_exists=True)
    warn_if_shared_sqlite(storage, the_study, worker=False, echo=_echo)
    _echo(f"study {spec.study!r}: {len(the_study.trials)} trial(s) so far; storage {storage}, tracking {tracking_uri}")
    run_trials(the_study, spec, tracker, n_trials=n_trials or spec.n_trials, timeout=timeout or spec.timeout,
               progress=progress, echo=_echo)
    if not any(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False)):
        _echo(f"study {spec.study!r} has no complete trial yet")
        return
    click.echo(json.dumps(_summary(the_study, spec), indent=2))
    _echo(f"next: betasweep report --study {spec.study} --storage {storage} --tracking-uri {tracking_uri}")


# MLflow's client retries a failing request 7 times with exponential backoff and waits 120 s per
# request: a worker whose tracking server is gone would hang for many minutes. Workers use these
# unless the variables are set.
WORKER_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@click.command()
@click.option("--study", "study_name", required=True, help="Name of an existing study.")
@_storage_option(None)
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: the one the study was created with]")
@click.option("--max-complete-trials", type=click.IntRange(min=0), default=None,
              help="Study-wide target shared by all workers: start no trial once the study's complete plus running "
                   "trials reach it, and stop when it has this many complete trials (0: no target) "
                   "[default: the spec's n_trials].")
@click.option("--n-trials", type=click.IntRange(min=1), default=None,
              help="Trials this worker runs at most [default: no limit of its own].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds after which this worker starts no more trials.")
@click.option("--progress/--no-progress", default=False, show_default=True)
@click.option("--heartbeat-interval", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds between this worker's heartbeats to the study.")
@click.option("--grace-period", type=click.IntRange(min=2), default=180, show_default=True,
              help="Seconds without a heartbeat after which a trial counts as dead and is retried.")
def worker(study_name, storage, tracking_uri, max_complete_trials, n_trials, timeout, progress, heartbeat_interval,
           grace_period):
    """Join an existing study and run its trials (start any number, on any machines).

    Workers stop when the study has its target of complete trials (--max-complete-trials, by
    default the spec's n_trials), which they reach together: exactly that many, as a worker starts
    a trial only while the complete and running trials fall short of it.

    SIGTERM or Ctrl-C stops the worker gracefully: the current trial is marked failed and queued
    again, its MLflow run is closed, and the worker exits 0. A worker killed outright (SIGKILL, a
    lost machine) stops sending heartbeats; after the grace period another worker fails its trial,
    ends its run KILLED and retries it. If the study's database or the tracking server goes away,
    the worker exits 2 with a one-line message (its trial is retried after the grace period).

    MLflow requests give up after MLFLOW_HTTP_REQUEST_MAX_RETRIES=3 retries and
    MLFLOW_HTTP_REQUEST_TIMEOUT=30 s each, unless those variables are set.
    """
    import os
    import signal

    from betasweep.sweeps.study import WorkerStopped

    if storage is None:
        raise click.UsageError("--storage is required: the URL of the study's database")
    for name, value in WORKER_MLFLOW_ENV.items():
        os.environ.setdefault(name, value)

    def on_sigterm(signum, frame):
        raise WorkerStopped(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)  # run_trials installs its own while trials run
    try:
        _run_worker(study_name, storage, tracking_uri, max_complete_trials, n_trials, timeout, progress,
                    heartbeat_interval, grace_period)
    except KeyboardInterrupt:  # stopped before or between trials: nothing to clean up
        _echo("worker stopped")


def _run_worker(study_name, storage, tracking_uri, max_complete, n_trials, timeout, progress, heartbeat_interval,
                grace_period):
    """The worker's body; storage and tracking failures become one-line errors.

    Raises:
        StorageError: the study's database failed or went away.
        TrackingError: the tracking server failed or went away.
    """
    from mlflow.exceptions import MlflowException

    from betasweep.sweeps.study import (StorageError, load_study, make_storage, redact, run_trials, storage_failure,
                                        warn_if_shared_sqlite, worker_seed_offset)
    from betasweep.tracking import Tracker, TrackingError

    the_storage = make_storage(storage, tracking_uri=tracking_uri, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    try:
        the_study, spec = load_study(study_name, the_storage, seed_offset=worker_seed_offset())
        warn_if_shared_sqlite(storage, the_study, worker=True, echo=_echo)
        tracking_uri = tracking_uri or the_study.user_attrs.get("mlflow_tracking_uri", "sqlite:///mlflow.db")
        tracker = Tracker(tracking_uri, spec.study)
        target = spec.n_trials if max_complete is None else (max_complete or None)
        finished = run_trials(the_study, spec, tracker, n_trials=n_trials, timeout=timeout, max_complete=target,
                              progress=progress, echo=_echo)
    except Exception as error:
        lost = storage_failure(error)
        if lost is not None:
            raise StorageError(f"worker lost the study's database {redact(storage)} ({_cause(lost)}); its running "
                               f"trial is retried by another worker after the grace period; restart this worker "
                               f"when the database is back") from None
        if isinstance(error, MlflowException):
            raise TrackingError(f"worker lost the tracking server {tracking_uri} ({_cause(error)})") from None
        raise
    _echo(f"worker {'done' if finished else 'stopped'}")


def _cause(error: BaseException) -> str:
    """The root of an exception chain, one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


@click.command()
@click.option("--study", "study_name", required=True)
@_storage_option("sqlite:///betasweep.db")
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: the one the study was created with]")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML report path [default: betasweep-report-STUDY.html].")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Rows of the top-trials table.")
@click.option("--reseed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Retrain the top configurations with N more seeds and rank them by mean score.")
@click.option("--reseed-top", "reseed_configs", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many configurations --reseed retrains.")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the best trial's model in the MLflow Model Registry under the alias 'best'.")
def report(study_name, storage, tracking_uri, out_path, top, reseed, reseed_configs, register):
    """Print the best and top trials, write the HTML report, log it to the study's run, register the best model."""
    from betasweep.sweeps.objective import artifact_folder
    from betasweep.sweeps.report import best_trial, reseed_top, trials_frame, write_report
    from betasweep.sweeps.study import load_study, make_storage
    from betasweep.tracking import Tracker

    the_study, spec = load_study(study_name, make_storage(storage, tracking_uri=tracking_uri))
    tracking_uri = tracking_uri or the_study.user_attrs.get("mlflow_tracking_uri", "sqlite:///mlflow.db")
    if not any(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False)):
        raise click.UsageError(f"study {study_name!r} has no complete trial yet")
    tracker = Tracker(tracking_uri, spec.study)
    parent = the_study.user_attrs.get("mlflow_parent_run_id") or tracker.find_parent_run()

    reseeded = None
    if reseed:
        def log_run(trial_number, seed, metrics, files):
            run = tracker.start_trial_run(parent, trial_number, tags={"betasweep.reseed": seed})
            run.log_params({**spec.fixed, **the_study.trials[trial_number].params, "seed": seed})
            run.log_metrics({**metrics, "score": metrics["eval_accuracy"]}, step=spec.train_samples)
            for name, path in files.items():
                run.log_artifact(path, artifact_folder(name))
            run.end("FINISHED")

        reseeded = reseed_top(the_study, spec, reseed, top=reseed_configs, log_run=log_run, echo=_echo)

    best = best_trial(the_study)
    frame = trials_frame(the_study, spec)
    out_path = out_path or Path(f"betasweep-report-{study_name}.html")
    write_report(the_study, spec, out_path, reseed=reseeded)
    if parent:
        tracker.client.log_artifact(parent, str(out_path), "report")
    summary = _summary(the_study, spec)
    if register and best.user_attrs.get("mlflow_run_id"):
        name = f"betasweep-{spec.study}"
        summary["registered_model"] = {"name": name, "alias": "best",
                                       "version": tracker.register_best(best.user_attrs["mlflow_run_id"], name)}
    columns = [c for c in ("trial", "state", "score", "beta", "latent_dim", "width", "batch_size", "beta_norm", "mlflow_run_id")
               if c in frame.columns]
    click.echo(f"best trial #{best.number}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if k not in ("study", "best_trial")))
    click.echo(frame[columns].head(top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if reseeded is not None and not reseeded.empty:
        click.echo("\nretrained with more seeds (ranked by mean score):")
        click.echo(reseeded.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"\nreport: {out_path}")


COMMANDS: list[click.Command] = [study, sweep, worker, report]
