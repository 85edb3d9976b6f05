"""Links into the MLflow UI that open on the training view, and the command that serves it.

MLflow 3's UI picks its mode from the URL's ``workflowType`` query parameter (else the browser's
stored choice, by default ``genai``: traces, judges, prompts, with training runs tucked under
"Evaluations"). Every link betasweep prints carries ``workflowType=machine_learning``, so it opens
on the runs table (experiment) or the run page (trial). The experiment also carries the tag
``mlflow.experimentKind = custom_model_development`` (MLflow's ``ExperimentKind`` value for model
training; see the UI's ``CUSTOM_MODEL_DEVELOPMENT``), which the UI reads as the experiment's kind.

A local store (``sqlite:///mlflow.db``) has no server: its links point at what
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` serves, ``http://127.0.0.1:5000``, and
:func:`ui_command` gives that command. A tracking server's links point at the server itself.
"""

from __future__ import annotations

import shlex
import urllib.parse

__all__ = ["EXPERIMENT_KIND_TAG", "MODEL_DEVELOPMENT", "LOCAL_UI", "ui_base", "ui_command", "experiment_link", "run_link",
           "artifact_link"]

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"
LOCAL_UI = "http://127.0.0.1:5000"  # `mlflow ui`'s default host and port
_QUERY = "workflowType=machine_learning"


def ui_base(tracking_uri: str) -> str:
    """The UI's address for a tracking URI: the server itself (``http(s)://``), else ``mlflow ui``'s ``http://127.0.0.1:5000``."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def ui_command(tracking_uri: str) -> str | None:
    """The command that serves a local store's UI (``mlflow ui --backend-store-uri sqlite:///mlflow.db``); None for a server."""
    if tracking_uri.startswith(("http://", "https://")):
        return None
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


def experiment_link(tracking_uri: str, experiment_id: str) -> str:
    """``<ui base>/#/experiments/ID?workflowType=machine_learning``: the experiment's runs table."""
    return f"{ui_base(tracking_uri)}/#/experiments/{urllib.parse.quote(str(experiment_id))}?{_QUERY}"


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """``<ui base>/#/experiments/ID/runs/RUN_ID?workflowType=machine_learning``: one run's page."""
    return (f"{ui_base(tracking_uri)}/#/experiments/{urllib.parse.quote(str(experiment_id))}"
            f"/runs/{urllib.parse.quote(run_id)}?{_QUERY}")


def artifact_link(tracking_uri: str, experiment_id: str, run_id: str, path: str) -> str:
    """``.../runs/RUN_ID/artifacts/PATH?workflowType=machine_learning``: the run's Artifacts tab showing one file."""
    base = run_link(tracking_uri, experiment_id, run_id).split("?", 1)[0]
    return f"{base}/artifacts/{urllib.parse.quote(path)}?{_QUERY}"
