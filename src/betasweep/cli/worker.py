"""``betasweep worker``: join an existing study and run its trials; a shell over :func:`betasweep.api.work`."""

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

    from betasweep.api import study as api
    from betasweep.sweeps.worker import WorkerStopped

    if storage is None:
        raise click.UsageError("--storage is required: the URL of the study's database")
    for name, value in WORKER_MLFLOW_ENV.items():
        os.environ.setdefault(name, value)

    def on_sigterm(signum, frame):
        raise WorkerStopped(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)  # run_trials installs its own while trials run
    try:
        done = api.work(study_name, storage=storage, tracking_uri=tracking_uri, max_complete_trials=max_complete_trials,
                        n_trials=n_trials, timeout=timeout, progress=progress, heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period, checkpoint_dir=checkpoint_dir, echo=echo)
    except KeyboardInterrupt:  # stopped before or between trials: nothing to clean up
        echo("worker stopped")
        return
    echo(f"worker {'done' if done.finished else 'stopped'}")
    echo_links(done.tracker, done.best_run_id)


command = worker
