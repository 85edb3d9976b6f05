"""MLflow bookkeeping of a study: one experiment, one parent run, one child run per trial.

Runs are linked both ways: each child run carries the tags ``betasweep.study`` and
``betasweep.trial`` (and MLflow's ``mlflow.parentRunId``), and the objective stores the child's run
id in the trial's user attribute ``mlflow_run_id``. The parent run's id is kept in the study's user
attribute ``mlflow_parent_run_id``.

Everything goes through an explicit :class:`mlflow.MlflowClient`, never MLflow's global "active
run", so several studies or threads never step on each other's state.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from betasweep.errors import BetasweepError
from betasweep.tracking.ui import (EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT, artifact_link, experiment_link, run_link,
                                  ui_command)

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TrackingError",
    "Tracker",
    "TrialRun",
    "check_reachable",
    "download_checkpoint",
    "flatten_metrics",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
STUDY_TAG, TRIAL_TAG, ROLE_TAG = "betasweep.study", "betasweep.trial", "betasweep.role"
_MAX_PARAM_LENGTH = 500


class TrackingError(BetasweepError):
    """The MLflow tracking store cannot be reached or used."""


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """For an ``http(s)://`` tracking URI, check within seconds that the server answers and serves this client.

    Two requests: ``GET /health``, then one cheap API call (``search_experiments(max_results=1)``)
    with no retries and a ``timeout_s`` timeout, because a server can be healthy and still refuse
    every API request (MLflow 3 answers 403 to a ``Host`` header not in its ``--allowed-hosts``).
    MLflow's own client retries unreachable servers for minutes; this fails fast instead.

    Raises:
        TrackingError: the server does not answer, answers with an error, or refuses this client.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (a user-given server)
            if response.status != 200:
                raise TrackingError(f"MLflow tracking server {tracking_uri} answered {response.status} on /health")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"MLflow tracking server {tracking_uri} is not reachable ({reason})") from None
    _check_api(tracking_uri, timeout_s)


def _check_api(tracking_uri: str, timeout_s: float) -> None:
    """One API request through MLflow's client (its auth settings apply), without retries."""
    from mlflow.exceptions import MlflowException

    try:
        with _http_settings(max_retries=0, timeout_s=timeout_s):
            MlflowClient(tracking_uri).search_experiments(max_results=1)
    except MlflowException as error:
        status = getattr(error, "get_http_status_code", lambda: None)()
        text = " ".join(str(error).split())
        if status == 403 or "403" in text:
            host = urllib.parse.urlsplit(tracking_uri).netloc
            raise TrackingError(
                f"MLflow tracking server {tracking_uri} refuses this client (403 Forbidden): if its host check "
                f"rejects the name {host!r}, add it to the server's --allowed-hosts (MLFLOW_SERVER_ALLOWED_HOSTS); "
                f"if it requires credentials, set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
            ) from None
        raise TrackingError(f"MLflow tracking server {tracking_uri} is healthy but its API fails: {text[:300]}") from None


@contextlib.contextmanager
def _http_settings(*, max_retries: int, timeout_s: float) -> Iterator[None]:
    """Set MLflow's HTTP retry and timeout variables for the block (MLflow reads them per request), then restore them."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries),
             "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s)))}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _artifact_progress_bars(enabled: bool) -> Iterator[None]:
    """MLflow's artifact download bars on (a terminal) or off (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``) for the block."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(name)
    if saved is None:
        os.environ[name] = "true" if enabled else "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)


def _artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Local stores keep artifacts beside the database (``mlartifacts/<experiment>``); servers choose their own."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return str((db.parent / "mlartifacts" / experiment_name).resolve())
    return None


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalars as they are, lists as ``name_{i}`` (``kl_per_dim`` → ``kl_dim_0`` …); drops non-finite and non-numeric values."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (list, tuple)):
            base = key.removesuffix("kl_per_dim") + "kl_dim" if key.endswith("kl_per_dim") else key  # seed-1/kl_dim_0
            for i, v in enumerate(value):
                if isinstance(v, (int, float)) and math.isfinite(v):
                    flat[f"{prefix}{base}_{i}"] = float(v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


class TrialRun:
    """A child run of one trial. Metrics, params and artifacts go straight to the tracking store."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.client.log_batch(
            self.run_id, params=[Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in params.items()]
        )

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in flatten_metrics(metrics).items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_image(self, image: str | os.PathLike | Any, key: str, step: int) -> None:
        """A time-stepped image (MLflow's ``log_image(key=, step=)``): the UI's image grid compares it across runs.

        Args:
            image: a PNG path, a PIL image or a uint8 array ``(H, W[, C])``.
            key: the image's name (``traversal``, ``reconstruction``).
            step: training samples seen when it was drawn (the x of the run's metrics).
        """
        if isinstance(image, (str, os.PathLike)):
            from PIL import Image

            with Image.open(image) as opened:
                image = opened.convert("RGB")
        self.client.log_image(self.run_id, image, key=key, step=int(step), synchronous=True)

    def artifact_uri(self, path: str = "") -> str:
        base = self.client.get_run(self.run_id).info.artifact_uri
        return f"{base}/{path}" if path else base

    def end(self, status: str = "FINISHED") -> None:
        """Close the run: ``FINISHED``, ``FAILED`` (diverged or crashed) or ``KILLED`` (pruned, stopped)."""
        self.client.set_terminated(self.run_id, status=status)


class Tracker:
    """The MLflow side of one study.

    Args:
        tracking_uri: ``sqlite:///mlflow.db`` (default, artifacts in ``mlartifacts/`` beside it) or
            ``http://host:port`` of a tracking server (artifacts proxied by it).
        study_name: the Optuna study's name, used as the experiment's name.

    Raises:
        TrackingError: a tracking server that does not answer within seconds.
    """

    def __init__(self, tracking_uri: str, study_name: str):
        check_reachable(tracking_uri)
        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self.client = MlflowClient(tracking_uri)
        experiment = self.client.get_experiment_by_name(study_name)
        if experiment is None:
            try:
                self.experiment_id = self.client.create_experiment(
                    study_name, artifact_location=_artifact_location(tracking_uri, study_name),
                    tags={STUDY_TAG: study_name, EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT},
                )
            except Exception:  # another worker created it first
                experiment = self.client.get_experiment_by_name(study_name)
                if experiment is None:
                    raise
                self.experiment_id = experiment.experiment_id
        else:
            self.experiment_id = experiment.experiment_id
            if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_DEVELOPMENT:  # made by an earlier version
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)

    # -- links into the UI ------------------------------------------------------------------------

    def experiment_link(self) -> str:
        """The study's runs table in the MLflow UI (training view; see :mod:`betasweep.tracking.ui`)."""
        return experiment_link(self.tracking_uri, self.experiment_id)

    def run_link(self, run_id: str) -> str:
        """One run's page in the MLflow UI (training view)."""
        return run_link(self.tracking_uri, self.experiment_id, run_id)

    def artifact_link(self, run_id: str, path: str) -> str:
        """One artifact of a run shown in the UI (e.g. ``figures/traversal.png``)."""
        return artifact_link(self.tracking_uri, self.experiment_id, run_id, path)

    def ui_command(self) -> str | None:
        """``mlflow ui --backend-store-uri ...`` for a local store (None for a server): serves the links."""
        return ui_command(self.tracking_uri)

    # -- the study's parent run ------------------------------------------------------------------

    def create_parent_run(self, params: dict[str, Any]) -> str:
        """Create the study's parent run (RUNNING until the study reaches its target: :meth:`end_parent_run`) and return its id."""
        run = self.client.create_run(
            self.experiment_id, run_name=self.study_name, tags={STUDY_TAG: self.study_name, ROLE_TAG: "study"}
        )
        TrialRun(self.client, run.info.run_id).log_params(params)
        return run.info.run_id

    def end_parent_run(self, run_id: str, status: str = "FINISHED") -> bool:
        """End the study's parent run (the study reached its target, or its only process stopped).

        Returns whether it was running (a second worker seeing the same target changes nothing).
        """
        return self.end_run_if_running(run_id, status)

    def reopen_run(self, run_id: str) -> bool:
        """Mark an ended parent run RUNNING again (trials are added to its study); returns whether it had ended."""
        run = self.client.get_run(run_id)
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def find_parent_run(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study'", max_results=1, order_by=["attributes.start_time ASC"]
        )
        return runs[0].info.run_id if runs else None

    # -- trial runs -------------------------------------------------------------------------------

    def start_run(self, run_name: str, tags: dict[str, Any] | None = None) -> TrialRun:
        """A top-level run of this experiment (e.g. an attribute classifier's training)."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()})
        return TrialRun(self.client, run.info.run_id)

    def start_trial_run(self, parent_run_id: str, trial_number: int, tags: dict[str, Any] | None = None) -> TrialRun:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial_number}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                STUDY_TAG: self.study_name,
                TRIAL_TAG: str(trial_number),
                ROLE_TAG: "trial",
                **{k: str(v) for k, v in (tags or {}).items()},
            },
        )
        return TrialRun(self.client, run.info.run_id)

    def child_runs(self, parent_run_id: str) -> list:
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10_000
        )

    def end_run_if_running(self, run_id: str, status: str = "KILLED") -> bool:
        """End a run left RUNNING (e.g. by a killed worker); returns whether it was running."""
        run = self.client.get_run(run_id)
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            self.client.set_terminated(run_id, status=status)
            return True
        return False

    # -- files and the registry -------------------------------------------------------------------

    def download(self, run_id: str, artifact_path: str, dst: str | os.PathLike) -> Path:
        """Fetch one artifact (file or folder) of a run into ``dst``; returns its local path."""
        with _artifact_progress_bars(sys.stderr.isatty()):  # MLflow draws a bar per file, also into log files
            return Path(self.client.download_artifacts(run_id, artifact_path, str(dst)))

    def register_best(self, run_id: str, model_name: str, alias: str = "best", artifact_path: str = "checkpoint") -> int:
        """Register ``run_id``'s checkpoint folder as a new version of ``model_name`` and point ``alias`` at it.

        Returns:
            The new version number.
        """
        try:
            self.client.create_registered_model(model_name, tags={STUDY_TAG: self.study_name})
        except Exception as error:  # RESOURCE_ALREADY_EXISTS
            if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
                raise
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        version = self.client.create_model_version(model_name, source=source, run_id=run_id)
        self.client.set_registered_model_alias(model_name, alias, version.version)
        return int(version.version)




def download_checkpoint(uri: str, tracking_uri: str, dst: str | os.PathLike) -> Path:
    """Fetch a logged checkpoint: ``runs:/RUN_ID/checkpoint`` or ``models:/NAME@best`` (a folder holding ``checkpoint.pt``).

    Returns:
        The local path of ``checkpoint.pt``.

    Raises:
        TrackingError: the URI cannot be resolved or holds no checkpoint.
    """
    import mlflow.artifacts

    check_reachable(tracking_uri)
    try:
        with _artifact_progress_bars(sys.stderr.isatty()):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=tracking_uri))
    except Exception as error:  # MlflowException, OSError
        raise TrackingError(f"cannot fetch {uri} from {tracking_uri}: {str(error).splitlines()[0]}") from None
    path = local / "checkpoint.pt" if local.is_dir() else local
    if not path.is_file():
        raise TrackingError(f"{uri} holds no checkpoint.pt")
    return path
