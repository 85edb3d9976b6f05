"""``betasweep study create``: create a study once, for workers to share."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import TRACKING_HELP, storage_option
from betasweep.errors import DataError

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
    from betasweep.sweeps.objective import load_spec_data
    from betasweep.sweeps.spec import load_spec
    from betasweep.sweeps.study import DEFAULT_STORAGE, create_study, make_storage, redact
    from betasweep.tracking import DEFAULT_TRACKING_URI, Tracker

    spec = load_spec(spec_path)
    # a worker would fail each trial on a dataset that does not open: refuse it here, before anything is written
    if spec.dataset["name"] != "celeba":
        load_spec_data(spec)
    elif not Path(spec.dataset.get("path") or "").is_dir():
        raise DataError(f"dataset.path {spec.dataset.get('path')}: expected the CelebA folder (list_attr_celeba.txt, "
                        "img_align_celeba/)")
    storage_url = storage or DEFAULT_STORAGE
    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    tracker = Tracker(tracking_uri, spec.study)
    created = create_study(spec, make_storage(storage_url, tracking_uri=tracking_uri), tracker, load_if_exists=exist_ok)
    click.echo(json.dumps({"study": created.study_name, "storage": redact(storage_url), "tracking_uri": tracking_uri,
                           "mlflow_parent_run_id": created.user_attrs.get("mlflow_parent_run_id")}))


command = study
