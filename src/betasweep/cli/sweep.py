"""``betasweep sweep``: create (or load) a study and run its trials in this process."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import (CHECKPOINT_DIR_OPTION, TRACKING_HELP, echo, echo_links, progress_option,
                                   storage_option, study_summary)

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
    from betasweep.sweeps.objective import load_spec_data
    from betasweep.sweeps.spec import load_spec
    from betasweep.sweeps.jobs import local_workers, one_thread, resolve_jobs
    from betasweep.sweeps.study import (create_study, local_storage, make_storage, redact, run_trials,
                                        warn_if_shared_sqlite)
    from betasweep.tracking import Tracker

    jobs = resolve_jobs(jobs if jobs is not None else ("auto" if spec_path is None else 1))
    storage = local_storage(storage, jobs)
    spec = load_spec(spec_path)
    if spec.dataset["name"] != "celeba":  # a missing or malformed data file: one line, exit 2, no study or run made
        load_spec_data(spec)
    tracker = Tracker(tracking_uri, spec.study)
    the_study = create_study(spec, make_storage(storage, tracking_uri=tracking_uri), tracker, load_if_exists=True)
    warn_if_shared_sqlite(storage, the_study, worker=False, echo=echo)
    echo(f"study {spec.study!r}: {len(the_study.trials)} trial(s) so far; storage {redact(storage)}, tracking {tracking_uri}")
    n_trials, timeout = n_trials or spec.n_trials, timeout or spec.timeout
    if jobs == 1:
        run_trials(the_study, spec, tracker, n_trials=n_trials, timeout=timeout,
                   progress=progress, echo=echo, end_parent=True, checkpoint_dir=checkpoint_dir)
    else:  # the study-wide target of complete trials that `betasweep worker` processes share
        complete = sum(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False))
        target = None if n_trials is None else complete + n_trials
        with one_thread(), local_workers(jobs - 1, storage=storage, study_name=spec.study, tracking_uri=tracking_uri,
                                         mode="trials", max_complete=target, n_trials=n_trials, timeout=timeout,
                                         checkpoint_dir=checkpoint_dir, echo=echo) as workers:
            if not run_trials(the_study, spec, tracker, n_trials=n_trials, max_complete=target, timeout=timeout,
                              progress=progress, echo=echo, end_parent=True, checkpoint_dir=checkpoint_dir):
                workers.stop()  # stopped by a signal: so are the workers (their trials are queued again)
    if not any(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False)):
        echo(f"study {spec.study!r} has no complete trial yet")
        echo_links(tracker)
        return
    if spec.race is not None:  # the spec's race: seeds where the search's answer is undecided
        from betasweep.sweeps.race import race_study

        with one_thread(jobs > 1), local_workers(jobs - 1, storage=storage, study_name=spec.study,
                                                 tracking_uri=tracking_uri, mode="serve",
                                                 checkpoint_dir=checkpoint_dir, echo=echo):
            race_study(the_study, spec, tracker, spec.race, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir)
    summary = study_summary(the_study, spec)
    click.echo(json.dumps(summary, indent=2))
    echo_links(tracker, summary.get("mlflow_run_id"))
    echo(f"next: betasweep report --study {spec.study} --storage {redact(storage)} --tracking-uri {tracking_uri}")


command = sweep
