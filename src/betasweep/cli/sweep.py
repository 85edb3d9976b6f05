"""``betasweep sweep``: create (or load) a study and run its trials in this process; a shell over :func:`betasweep.api.sweep`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import (CHECKPOINT_DIR_OPTION, TRACKING_HELP, echo, echo_links, progress_option,
                                   storage_option)

@click.command("sweep")
@click.argument("spec_path", metavar="[SPEC]", required=False, type=click.Path(path_type=Path))
@click.option("--n-trials", type=click.IntRange(min=1), default=None, help="Trials to run here [default: the spec's].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop starting trials after this many seconds.")
@storage_option("sqlite:///betasweep.db")
@click.option("--tracking-uri", default="sqlite:///mlflow.db", show_default=True, help=TRACKING_HELP)
@progress_option("trials' training")
@CHECKPOINT_DIR_OPTION
@click.option("--jobs", default=None, metavar="N|auto",
              help="Processes of one torch thread each that run the study's trials on this machine (auto: one per "
                   "core); with the default storage, N > 1 keeps the study in betasweep.journal (Optuna's "
                   "JournalStorage: SQLite is for one process) [default: 1 with a SPEC, auto without].")
def sweep(spec_path, n_trials, timeout, storage, tracking_uri, progress, checkpoint_dir, jobs):
    """Create (or load) the study of SPEC and run its trials in this process (and --jobs N - 1 others).

    With no SPEC: a short default sweep on the embedded defaults (procedural shapes, local study,
    local MLflow store) on every core (--jobs auto): 6 trials of 2 seeds each at batch 16, scored by
    the panel without DCI.
    """
    from betasweep.api import study as api

    result = api.sweep(spec_path, n_trials=n_trials, timeout=timeout, storage=storage, tracking_uri=tracking_uri,
                       progress=progress, checkpoint_dir=checkpoint_dir, jobs=jobs, echo=echo)
    if not result.complete_trials:
        echo(f"study {result.study!r} has no complete trial yet")
        echo_links(result.tracker)
        return
    click.echo(json.dumps(result.summary, indent=2))
    echo_links(result.tracker, result.summary.get("mlflow_run_id"))
    echo(f"next: betasweep report --study {result.study} --storage {result.storage} --tracking-uri {tracking_uri}")


command = sweep
