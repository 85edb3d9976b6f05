"""Options and helpers shared by several commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

EXIT_USAGE = 2

STORAGE_HELP = ("Optuna storage URL: sqlite:///betasweep.db (one process), postgresql+psycopg://user:pw@host/db, "
                "or grpc://host:port (betasweep storage-proxy).")
TRACKING_HELP = "MLflow tracking URI: sqlite:///mlflow.db (local) or http://host:5000 (a tracking server)."

CHECKPOINT_ARG = click.argument("checkpoint")
TRACKING_OPTION = click.option("--tracking-uri", default="sqlite:///mlflow.db", show_default=True,
                               help="MLflow store for runs:/ and models:/ checkpoints.")


CHECKPOINT_DIR_OPTION = click.option(
    "--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder on a filesystem every worker shares for the seeds' training checkpoints (a retried trial "
         "resumes from them) [default: the trial's MLflow run artifacts].")


def heartbeat_options(command):
    """``--heartbeat-interval`` and ``--grace-period`` of a process that runs a study's trials (worker, race)."""
    command = click.option("--grace-period", type=click.IntRange(min=2), default=180, show_default=True,
                           help="Seconds without a heartbeat after which a trial counts as dead and is retried.")(command)
    return click.option("--heartbeat-interval", type=click.IntRange(min=1), default=60, show_default=True,
                        help="Seconds between this process's heartbeats to the study.")(command)


def rank_by_option(what: str):
    """``--rank-by METRIC``: the panel value ``what`` uses (default: the study's objective)."""
    return click.option("--rank-by", "rank_by", default=None, metavar="METRIC",
                        help=f"{what} by this panel value (beta_vae, factor_vae, mig, sap, dci_disentanglement, ..., "
                             "udr) [default: the study's objective].")


def emit_json(obj) -> None:
    """The command's result on stdout, as indented JSON."""
    click.echo(json.dumps(obj, indent=2))


def echo(message: str) -> None:
    """A progress or status line, on stderr (stdout carries the result)."""
    click.echo(message, err=True)


def progress_option(what: str = "training"):
    """``--progress/--no-progress``: a progress bar of ``what``; by default only when stderr is a terminal.

    The command gets a bool (:func:`show_progress` resolves the default): in a file or CI log a bar is
    thousands of carriage-return updates, so there the commands print a few plain lines instead.
    """
    return click.option("--progress/--no-progress", default=None,
                        help=f"Progress bar of the {what} [default: when stderr is a terminal].",
                        callback=lambda ctx, param, value: show_progress(value))


def show_progress(value: bool | None) -> bool:
    """``value`` if given, else whether stderr is a terminal."""
    import sys

    return sys.stderr.isatty() if value is None else bool(value)


def echo_links(tracker, best_run_id: str | None = None) -> None:
    """Where to look in the MLflow UI: the command serving a local store, the study's runs, the best trial's run.

    Links open the UI's training view (``?workflowType=machine_learning``; see :mod:`betasweep.tracking.ui`).
    """
    command = tracker.ui_command()
    if command:
        echo(f"MLflow UI: {command}   (then open the links below)")
    echo(f"  study's runs: {tracker.experiment_link()}")
    if best_run_id:
        echo(f"  best trial:   {tracker.run_link(best_run_id)}")
        echo(f"  its traversal: {tracker.artifact_link(best_run_id, 'figures/traversal.png')}")


STORAGE_ENV = "BETASWEEP_STORAGE"


def storage_option(default: str | None, *, required: bool = False, help: str = STORAGE_HELP):
    """``--storage URL``, by default from the environment variable ``BETASWEEP_STORAGE``.

    A URL with a password belongs in the environment (or libpq's ``~/.pgpass`` / service file with a
    URL that names no password), not on the command line, where every user of the machine reads it
    in ``ps``. It is printed and logged only through :func:`betasweep.sweeps.proxy.redact_url`.
    """
    return click.option("--storage", default=default, show_default=default is not None, required=required,
                        envvar=STORAGE_ENV, show_envvar=True,
                        help=help + f" Prefer the environment variable {STORAGE_ENV} for a URL with a password.")


DATA_FROM_CHECKPOINT_OPTION = click.option(
    "--data-from-checkpoint", is_flag=True,
    help="Read the dataset at the path the checkpoint records (a checkpoint made elsewhere may name any file) "
         "[default: only --data-path, or the recorded path once confirmed at a terminal].")


def model_and_data(checkpoint: str, data_path: Path | None, tracking_uri: str, *, data_from_checkpoint: bool = False):
    """The model of CHECKPOINT (a file, ``runs:/RUN_ID/checkpoint`` or ``models:/NAME@best``) and its dataset.

    The dataset is read from ``data_path`` when given. The path the checkpoint records is used only
    when the user confirms it: ``data_from_checkpoint`` (``--data-from-checkpoint``), or a yes at a
    terminal; otherwise a one-line error names the recorded path and both options. A procedural
    dataset (no path) needs no confirmation.

    Raises:
        click.UsageError: the checkpoint records a path and neither was given (no terminal to ask at).
        click.Abort: the user declined at the terminal.
    """
    import sys

    from betasweep.api import model as api

    loaded = api.load_model(checkpoint, tracking_uri=tracking_uri)
    recorded = loaded.recorded_data_path
    if data_path is None and recorded and not data_from_checkpoint:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise click.UsageError(f"{loaded.path} records its {loaded.dataset} data at {recorded}: pass --data-path "
                                   f"{recorded} (or --data-from-checkpoint to read the recorded path)")
        if not click.confirm(f"{loaded.path} records its {loaded.dataset} data at {recorded}; read it?", err=True):
            raise click.Abort()
        data_from_checkpoint = True
    return loaded.model, loaded.state, api.load_data(loaded, data_path, data_from_checkpoint=data_from_checkpoint)
