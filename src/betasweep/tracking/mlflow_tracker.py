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
import http.client
import logging
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from betasweep.errors import BetasweepError
from betasweep.tracking.ui import (EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT, artifact_link, experiment_link, run_link,
                                  ui_command)

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TrackingError",
    "TrackingUnavailable",
    "Tracker",
    "call_with_retry",
    "retry_seconds",
    "TrialRun",
    "check_reachable",
    "download_checkpoint",
    "flatten_metrics",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
STUDY_TAG, TRIAL_TAG, ROLE_TAG = "betasweep.study", "betasweep.trial", "betasweep.role"
_MAX_PARAM_LENGTH = 500
_log = logging.getLogger(__name__)


class TrackingError(BetasweepError):
    """The MLflow tracking store cannot be reached or used."""


class TrackingUnavailable(TrackingError):
    """The tracking server stayed unreachable (or kept failing) for the whole retry budget
    (``BETASWEEP_MLFLOW_RETRY_S``): the trial ends and is queued again (:func:`betasweep.sweeps.study.run_trials`)."""


API_TIMEOUT_S = 60.0  # the reachability check's API request, once /health answered
REACHABLE_RETRY_S = 60.0
"""Seconds :func:`check_reachable` keeps asking a tracking server that stalls, drops connections or answers 5xx."""
RETRY_ENV = "BETASWEEP_MLFLOW_RETRY_S"
DEFAULT_RETRY_S = 300.0
_MAX_BACKOFF_S = 30.0
# MLflow error codes that a retry cannot fix (the request itself is wrong)
_PERMANENT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                              "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST",
                              "ENDPOINT_NOT_FOUND", "NOT_FOUND", "MALFORMED_REQUEST"})


def retry_seconds() -> float:
    """The retry budget of one MLflow call inside a trial: ``$BETASWEEP_MLFLOW_RETRY_S`` seconds (default 300).

    Raises:
        TrackingError: the variable is not a number >= 0.
    """
    raw = os.environ.get(RETRY_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or not math.isfinite(value):
        raise TrackingError(f"{RETRY_ENV}={raw!r}: expected seconds >= 0")
    return value


def _transient(error: BaseException) -> bool:
    """Whether ``error`` of an MLflow call may go away by itself (server down, restarting, timing out)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return getattr(error, "error_code", None) not in _PERMANENT_CODES
    try:
        import requests

        if isinstance(error, requests.exceptions.RequestException):
            return True
    except ImportError:  # pragma: no cover - mlflow depends on requests
        pass
    return isinstance(error, (OSError, TimeoutError))


def call_with_retry(fn, *args, what: str = "MLflow call", budget_s: float | None = None,
                    transient: Callable[[BaseException], bool] | None = None, **kwargs):
    """``fn(*args, **kwargs)``, retried with exponential backoff (1 s doubling, at most 30 s apart) while it
    fails transiently (``transient(error)``, default: the server down, restarting or timing out), for at most
    ``budget_s`` seconds (default :func:`retry_seconds`, set by ``BETASWEEP_MLFLOW_RETRY_S``).

    MLflow's own HTTP retries are cut to one per attempt meanwhile, so the budget is what bounds the wait
    (each attempt still has MLflow's request timeout). A permanent error (a bad request) is raised at once.

    Raises:
        TrackingUnavailable: still failing when the budget is spent (the last error as its cause).
    """
    budget = retry_seconds() if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    delay, failures = 1.0, 0
    while True:
        try:
            with _http_settings(max_retries=1, timeout_s=None):
                return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - sorted into transient (retried) and permanent (raised)
            if not (transient or _transient)(error):
                raise
            failures += 1
            left = deadline - time.monotonic()
            first = (" ".join(str(error).split()) or type(error).__name__)[:200]
            if left <= 0:
                hint = f"; {RETRY_ENV} sets the budget" if budget_s is None else ""
                raise TrackingUnavailable(f"MLflow unreachable: {what} failed for {budget:.0f} s "
                                          f"({failures} attempts{hint}): {first}") from error
            if failures == 1:
                _log.warning("%s failed (%s); retrying for up to %.0f s", what, first, budget)
            time.sleep(min(delay, max(left, 0.0)))
            delay = min(delay * 2, _MAX_BACKOFF_S)


def check_reachable(tracking_uri: str, timeout_s: float = 5.0, *, budget_s: float | None = None) -> None:
    """For an ``http(s)://`` tracking URI, check that the server answers and serves this client.

    Two requests: ``GET /health``, then one cheap API call (``search_experiments(max_results=1)``)
    without MLflow's own retries (which wait minutes on an unreachable server), because a server can be
    healthy and still refuse every API request (MLflow 3 answers 403 to a ``Host`` header not in its
    ``--allowed-hosts``). A server that is not there (connection refused, unknown host) or refuses this
    client (4xx) fails at once. A server that is there but stalls (no answer within ``timeout_s`` s),
    drops the connection or answers 5xx is asked again (:func:`call_with_retry`) for ``budget_s``
    seconds (default :data:`REACHABLE_RETRY_S`, 60): the uvicorn supervisor of a multi-worker ``mlflow
    server`` kills a worker that misses its 5-s healthcheck on a loaded host and starts another, and a
    request caught in that moment fails although the server is healthy (``study create`` in the compose
    stack exited 2 so).

    Raises:
        TrackingError: the server does not answer, answers with an error, or refuses this client.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        call_with_retry(_check_once, tracking_uri, timeout_s, what="the reachability check",
                        budget_s=REACHABLE_RETRY_S if budget_s is None else budget_s,
                        transient=lambda error: isinstance(error, _Stalled))
    except TrackingUnavailable as error:  # a TrackingError as any other failure of the check; one line
        raise TrackingError(str(error)) from None


class _Stalled(TrackingError):
    """A tracking server that is there but did not answer this time (timeout, dropped connection, 5xx)."""


def _check_once(tracking_uri: str, timeout_s: float) -> None:
    """One ``GET /health`` and one API request; :class:`_Stalled` for what may pass by itself."""
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (a user-given server)
            if response.status != 200:
                raise TrackingError(f"MLflow tracking server {tracking_uri} answered {response.status} on /health")
    except urllib.error.HTTPError as error:
        kind = _Stalled if error.code >= 500 else TrackingError
        raise kind(f"MLflow tracking server {tracking_uri} answered {error.code} on /health") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        kind = _Stalled if isinstance(reason, (TimeoutError, ConnectionResetError, ConnectionAbortedError,
                                               BrokenPipeError, http.client.HTTPException)) else TrackingError
        raise kind(f"MLflow tracking server {tracking_uri} is not reachable ({reason})") from None
    _check_api(tracking_uri, timeout_s)


def _check_api(tracking_uri: str, timeout_s: float) -> None:
    """One API request through MLflow's client (its auth settings apply), without retries."""
    from mlflow.exceptions import MlflowException

    try:
        # the server answered /health: a slow first API answer (a fresh server, a loaded machine) is not a failure
        with _http_settings(max_retries=0, timeout_s=max(timeout_s, API_TIMEOUT_S)):
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
        # a dropped connection or a 5xx (MLflow's INTERNAL_ERROR) may pass; a refused credential or request does not
        kind = _Stalled if _transient(error) else TrackingError
        raise kind(f"MLflow tracking server {tracking_uri} is healthy but its API fails: {text[:300]}") from None


@contextlib.contextmanager
def _http_settings(*, max_retries: int, timeout_s: float | None) -> Iterator[None]:
    """Set MLflow's HTTP retry and timeout variables for the block (MLflow reads them per request), then restore
    them; ``timeout_s=None`` keeps the timeout as it is."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries)}
    if timeout_s is not None:
        names["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout_s)))
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
    """A child run of one trial. Metrics, params and artifacts go straight to the tracking store.

    Every call is retried with backoff while the tracking server is unreachable, for at most
    ``BETASWEEP_MLFLOW_RETRY_S`` seconds (:func:`call_with_retry`), then raises
    :class:`TrackingUnavailable`. :meth:`close_quietly` is the exception: one quick try, never raises.
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def _call(self, what: str, fn, *args, **kwargs):
        return call_with_retry(fn, *args, what=f"{what} of run {self.run_id}", **kwargs)

    def log_params(self, params: dict[str, Any]) -> None:
        self._call("log_params", self.client.log_batch,
                   self.run_id, params=[Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in flatten_metrics(metrics).items()]
        if batch:
            self._call("log_metrics", self.client.log_batch, self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._call("set_tags", self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._call("log_artifact", self.client.log_artifact, self.run_id, str(path), artifact_path)

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
        self._call("log_image", self.client.log_image, self.run_id, image, key=key, step=int(step), synchronous=True)

    def artifact_uri(self, path: str = "") -> str:
        base = self._call("get_run", self.client.get_run, self.run_id).info.artifact_uri
        return f"{base}/{path}" if path else base

    def end(self, status: str = "FINISHED") -> None:
        """Close the run: ``FINISHED``, ``FAILED`` (diverged or crashed) or ``KILLED`` (pruned, stopped)."""
        self._call("set_terminated", self.client.set_terminated, self.run_id, status=status)

    def close_quietly(self, status: str, tags: dict[str, Any] | None = None, *, budget_s: float = 10.0) -> bool:
        """Tag and end the run for an error handler: a short bounded try (``budget_s``), never raises.

        Returns whether the run was ended; if not (the server is down), the trial's retry ends it later
        (:meth:`Tracker.end_run_if_running` on the previous attempt's run).
        """
        try:
            if tags:
                call_with_retry(self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()],
                                what="set_tags", budget_s=budget_s)
            call_with_retry(self.client.set_terminated, self.run_id, status=status, what="set_terminated",
                            budget_s=budget_s)
            return True
        except Exception as error:  # noqa: BLE001 - an error handler must not raise again
            _log.warning("run %s not ended %s now (%s); its trial's retry ends it", self.run_id, status,
                         type(error).__name__)
            return False


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
        run = call_with_retry(self.client.create_run, self.experiment_id, run_name=self.study_name,
                              tags={STUDY_TAG: self.study_name, ROLE_TAG: "study"}, what="create the parent run")
        TrialRun(self.client, run.info.run_id).log_params(params)
        return run.info.run_id

    def end_parent_run(self, run_id: str, status: str = "FINISHED") -> bool:
        """End the study's parent run (the study reached its target, or its only process stopped).

        Returns whether it was running (a second worker seeing the same target changes nothing).
        """
        return self.end_run_if_running(run_id, status)

    def reopen_run(self, run_id: str) -> bool:
        """Mark an ended parent run RUNNING again (trials are added to its study); returns whether it had ended."""
        run = call_with_retry(self.client.get_run, run_id, what=f"get_run {run_id}")
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            return False
        call_with_retry(self.client.update_run, run_id, status="RUNNING", what=f"reopen run {run_id}")
        return True

    def find_parent_run(self) -> str | None:
        runs = call_with_retry(self.client.search_runs, [self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study'",
                               max_results=1, order_by=["attributes.start_time ASC"], what="find the parent run")
        return runs[0].info.run_id if runs else None

    # -- trial runs -------------------------------------------------------------------------------

    def start_run(self, run_name: str, tags: dict[str, Any] | None = None) -> TrialRun:
        """A top-level run of this experiment (e.g. an attribute classifier's training)."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()})
        return TrialRun(self.client, run.info.run_id)

    def start_trial_run(self, parent_run_id: str, trial_number: int, tags: dict[str, Any] | None = None) -> TrialRun:
        run = call_with_retry(
            self.client.create_run,
            self.experiment_id,
            what=f"create the run of trial {trial_number}",
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
        run = call_with_retry(self.client.get_run, run_id, what=f"get_run {run_id}")
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            call_with_retry(self.client.set_terminated, run_id, status=status, what=f"end run {run_id}")
            return True
        return False

    # -- files and the registry -------------------------------------------------------------------

    def list_artifacts(self, run_id: str, path: str | None = None) -> set[str]:
        """The paths of a run's artifacts directly under ``path`` (MLflow's ``list_artifacts``), retried like
        every call inside a trial (:func:`call_with_retry`): a retried trial looking for its failed attempt's
        checkpoints waits out a tracking-server outage instead of training again from step 0.

        Raises:
            TrackingUnavailable: the server stayed unreachable for the retry budget.
        """
        return {a.path for a in call_with_retry(self.client.list_artifacts, run_id, path,
                                                what=f"list artifacts {path or '/'} of run {run_id}")}

    def download(self, run_id: str, artifact_path: str, dst: str | os.PathLike) -> Path:
        """Fetch one artifact (file or folder) of a run into ``dst``; returns its local path."""
        with _artifact_progress_bars(sys.stderr.isatty()):  # MLflow draws a bar per file, also into log files
            return Path(call_with_retry(self.client.download_artifacts, run_id, artifact_path, str(dst),
                                        what=f"download {artifact_path} of run {run_id}"))

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
