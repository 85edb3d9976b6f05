"""``betasweep study create``: create a study once, for workers to share; a shell over :func:`betasweep.api.create_study`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import TRACKING_HELP, storage_option

@click.group()
def study():
    """Create studies (for workers to share)."""


@study.command("create")
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@storage_option(None)
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: sqlite:///mlflow.db]")
@click.option("--exist-ok", is_flag=True, help="Succeed if the study already exists with the same spec (re-runs of a stack).")
def study_create(spec_path, storage, tracking_uri, exist_ok):
    """Create the study of SPEC once (workers then join it with `betasweep worker`).

    The spec and its dataset are checked first (the dataset opened as a worker opens it), then the
    tracking server, so bad input writes nothing. A study left without its MLflow parent run (the
    tracking server failed between the two) is completed by running the same command again.
    The storage URL is printed with its password hidden.
    """
    from betasweep.api import study as api

    created = api.create_study(spec_path, storage=storage, tracking_uri=tracking_uri, exist_ok=exist_ok)
    click.echo(json.dumps(created.to_dict()))

command = study
