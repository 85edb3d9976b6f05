"""``betasweep worker``: join an existing study and run its trials."""

from __future__ import annotations

import click

from betasweep.cli._common import (CHECKPOINT_DIR_OPTION, TRACKING_HELP, echo, echo_links, heartbeat_options, progress_option,
                                   storage_option)

# MLflow's client retries a failing request 7 times with exponential backoff and waits 120 s per
# request: a worker whose tracking server is gone would hang for many minutes. Workers use these
# unless the variables are set.
WORKER_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@click.command("worker")
@click.option("--study", "study_name", required=True, help="Name of an existing study.")
@storage_option(None)
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: the one the study was created with]")
@click.option("--max-complete-trials", type=click.IntRange(min=0), default=None,
              help="Study-wide target shared by all workers: start no trial once the study's complete plus running "
                   "trials reach it, and stop when it has this many complete trials (0: no target) "
                   "[default: the spec's n_trials].")
@click.option("--n-trials", type=click.IntRange(min=1), default=None,
              help="Trials this worker runs at most [default: no limit of its own].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds after which this worker starts no more trials.")
@progress_option("trials' training")
@heartbeat_options
@CHECKPOINT_DIR_OPTION
def worker(study_name, storage, tracking_uri, max_complete_trials, n_trials, timeout, progress, heartbeat_interval,
           grace_period, checkpoint_dir):
    """Join an existing study and run its trials (start any number, on any machines).

    Workers stop when the study has its target of complete trials (--max-complete-trials, by
    default the spec's n_trials), which they reach together: exactly that many, as a worker starts
    a trial only while the complete and running trials fall short of it.

    SIGTERM or Ctrl-C stops the worker gracefully: the current trial is marked failed and queued
    again, its MLflow run is closed, and the worker exits 0. A worker killed outright (SIGKILL, a
    lost machine) stops sending heartbeats; after the grace period another worker fails its trial,
    ends its run KILLED and retries it. A retry continues from the failed attempt's checkpoints
    (the run's artifacts, or --checkpoint-dir): finished seeds are kept, the interrupted one resumes. If the study's database or the tracking server goes away,
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
                    heartbeat_interval, grace_period, checkpoint_dir)
    except KeyboardInterrupt:  # stopped before or between trials: nothing to clean up
        echo("worker stopped")


def _run_worker(study_name, storage, tracking_uri, max_complete, n_trials, timeout, progress, heartbeat_interval,
                grace_period, checkpoint_dir=None):
    """The worker's body; storage and tracking failures become one-line errors.

    Raises:
        StorageError: the study's database failed or went away.
        TrackingError: the tracking server failed or went away.
    """
    import contextlib

    from mlflow.exceptions import MlflowException

    from betasweep.sweeps.report import best_trial
    from betasweep.sweeps.study import (StorageError, load_study, make_storage, redact, run_trials, storage_failure,
                                        warn_if_shared_sqlite, worker_seed_offset)
    from betasweep.tracking import Tracker, TrackingError

    the_storage = make_storage(storage, tracking_uri=tracking_uri, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    try:
        the_study, spec = load_study(study_name, the_storage, seed_offset=worker_seed_offset())
        warn_if_shared_sqlite(storage, the_study, worker=True, echo=echo)
        tracking_uri = tracking_uri or the_study.user_attrs.get("mlflow_tracking_uri", "sqlite:///mlflow.db")
        tracker = Tracker(tracking_uri, spec.study)
        target = spec.n_trials if max_complete is None else (max_complete or None)
        finished = run_trials(the_study, spec, tracker, n_trials=n_trials, timeout=timeout, max_complete=target,
                              progress=progress, echo=echo, checkpoint_dir=checkpoint_dir)
    except Exception as error:
        lost = storage_failure(error)
        if lost is not None:
            raise StorageError(f"worker lost the study's database {redact(storage)} ({_cause(lost)}); its running "
                               f"trial is retried by another worker after the grace period; restart this worker "
                               f"when the database is back") from None
        if isinstance(error, MlflowException):
            raise TrackingError(f"worker lost the tracking server {tracking_uri} ({_cause(error)})") from None
        raise
    echo(f"worker {'done' if finished else 'stopped'}")
    best = None
    with contextlib.suppress(ValueError):  # no complete trial yet
        best = best_trial(the_study).user_attrs.get("mlflow_run_id")
    echo_links(tracker, best)


def _cause(error: BaseException) -> str:
    """The root of an exception chain, one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


command = worker
