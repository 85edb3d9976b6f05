"""Where studies live: Optuna storages with heartbeats, and the errors a lost database raises.

Storage is Optuna's RDB storage (SQLite by default, PostgreSQL for many workers), the storage proxy
(``grpc://``, :mod:`betasweep.sweeps.proxy`) or, for several processes on one machine (``--jobs N``),
Optuna's JournalStorage on a file (``betasweep.journal``), each with heartbeats: a trial whose worker
died is failed after ``grace_period`` seconds and re-queued by
:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, and its MLflow run is ended KILLED.

This module (with :mod:`betasweep.sweeps.proxy` for gRPC) is the only one that reaches Optuna's storage
internals (``optuna.storages._heartbeat``, ``study._storage``): every other module asks it
(:func:`heartbeat_interval`, :func:`grace_period`, :func:`engine_of`, :func:`journal_path`).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Callable

import optuna
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from betasweep.errors import BetasweepError, ConfigError, in_chain
from betasweep.sweeps.proxy import first_line, open_grpc_storage
from betasweep.sweeps.proxy import redact_url as redact
from betasweep.sweeps.records import MLFLOW_RUN_ID, STUDY_TRACKING_URI
from betasweep.tracking import Tracker

__all__ = [
    "DEFAULT_STORAGE", "DEFAULT_JOURNAL", "JOURNAL_SUFFIXES", "HEARTBEAT_INTERVAL_S", "GRACE_PERIOD_S", "MAX_RETRY",
    "StorageError", "STORAGE_ERRORS", "storage_failure", "is_journal", "local_storage", "make_storage",
    "warn_if_shared_sqlite", "redact", "storage_of", "engine_of", "heartbeat_interval", "grace_period", "journal_path",
]

DEFAULT_STORAGE = "sqlite:///betasweep.db"
DEFAULT_JOURNAL = "betasweep.journal"
"""The local study of several processes (``--jobs N`` with the default storage): Optuna's
JournalStorage on this file, beside ``betasweep.db``."""
JOURNAL_SUFFIXES = (".journal", ".log")
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 180
MAX_RETRY = 3

_log = logging.getLogger(__name__)


class StorageError(BetasweepError):
    """The study's database went away (or failed) while a worker used it."""


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)
    try:  # behind the storage proxy (grpc://): the proxy went away
        import grpc

        errors += (grpc.RpcError,)
    except ImportError:
        pass
    return errors


STORAGE_ERRORS = _storage_errors()
"""What Optuna's RDB storage raises when its database is unreachable or fails mid-operation."""


def storage_failure(error: BaseException) -> BaseException | None:
    """The storage error in ``error``'s chain (itself, its ``__cause__`` or ``__context__``), if any.

    A lost database does not always surface as itself: when ``tell`` fails inside
    ``study.optimize``, Optuna 5's ``_run_trial`` then raises ``UnboundLocalError``
    (``updated_state``) with the storage error only as its context.
    """
    # `raise ... from None` hides its context (e.g. "no such study" over the proxy's NOT_FOUND): not a lost database
    return in_chain(error, STORAGE_ERRORS)


class _Storage(RDBStorage):
    """:class:`RDBStorage` whose heartbeat thread survives a short database outage.

    Optuna's heartbeat thread dies on the first failed write, after which the trial looks dead to
    every other worker although it still trains. Here a failed heartbeat is logged and retried at
    the next interval, so an outage shorter than the grace period costs nothing.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except STORAGE_ERRORS as error:
            _log.warning("heartbeat of trial id %d not recorded (database unreachable?): %s",
                         trial_id, first_line(error))


def is_journal(url: str) -> bool:
    """Whether ``url`` names a journal file: a path (no ``scheme://``) ending ``.journal`` or ``.log``, as
    Optuna's CLI and optuna-dashboard take a JournalFileBackend file for ``--storage``."""
    return "://" not in url and url.endswith(JOURNAL_SUFFIXES)


def local_storage(url: str, jobs: int = 1) -> str:
    """The storage ``betasweep sweep`` / ``race`` use for ``url`` with ``jobs`` processes on this machine.

    SQLite locks the whole file on each write and is for one process: with ``jobs > 1`` the default
    ``sqlite:///betasweep.db`` becomes :data:`DEFAULT_JOURNAL` (Optuna's JournalStorage, whose
    file backend several processes of one machine append to under a file lock). A SQLite URL the
    user named is refused for ``jobs > 1``; any other URL (a journal file, PostgreSQL, the proxy)
    is kept. With ``jobs == 1`` the default is :data:`DEFAULT_JOURNAL` when that file exists and
    ``betasweep.db`` does not (the study of an earlier ``--jobs`` run), so ``betasweep report``
    finds it without ``--storage``.

    Raises:
        ConfigError: ``jobs > 1`` with a SQLite URL other than the default.
    """
    if url == DEFAULT_STORAGE:
        if jobs > 1 or (os.path.isfile(DEFAULT_JOURNAL) and not os.path.isfile("betasweep.db")):
            return DEFAULT_JOURNAL
        return url
    if jobs > 1 and url.startswith("sqlite"):
        raise ConfigError(f"--storage {url} with --jobs {jobs}: SQLite is for one process; give a journal file "
                          f"(--storage {DEFAULT_JOURNAL}) or PostgreSQL for several")
    return url


class _JournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's :class:`JournalStorage` on a file, with heartbeats (Optuna's journal has none).

    Each running trial's worker appends its time as the trial's system attribute ``heartbeat``
    every ``heartbeat_interval`` seconds; a RUNNING trial whose last heartbeat (or start) is older
    than ``grace_period`` is stale: :func:`optuna.storages.fail_stale_trials` fails it and the
    callback queues its retry, as with :class:`RDBStorage`. Processes share one clock (one machine).
    """

    def __init__(self, path: str, *, heartbeat_interval: int, grace_period: int, stale_trial_callback) -> None:
        super().__init__(JournalFileBackend(path))
        self.path = path
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError, RuntimeError, OSError) as error:
            _log.debug("heartbeat of trial id %d not recorded: %s", trial_id, error)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            last = max(float(trial.system_attrs.get("heartbeat", 0.0)), started)  # a retry carries its attempt's
            if now - last > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self._stale_trial_callback


def _end_stale_run(tracking_uri: str | None) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Called when a dead worker's trial is failed: end its MLflow run KILLED, then re-queue the trial."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get(MLFLOW_RUN_ID)
        uri = tracking_uri or study.user_attrs.get(STUDY_TRACKING_URI)
        if run_id and uri:
            try:
                tracker = Tracker(uri, study.study_name)
                tracker.end_run_if_running(run_id, "KILLED")
                tracker.client.set_tag(run_id, "optuna.state", "FAIL")
                tracker.client.set_tag(run_id, "fail_reason", "worker stopped sending heartbeats")
            except Exception as error:  # TrackingError, MlflowException: the retry must still be queued
                _log.warning("could not end run %s of stale trial %d: %s", run_id, trial.number, error)
        retry(study, trial)

    return callback


def make_storage(
    url: str,
    *,
    tracking_uri: str | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
) -> optuna.storages.BaseStorage:
    """Optuna storage with heartbeats and retry of a dead worker's trial.

    Args:
        url: ``sqlite:///file.db``, ``postgresql+psycopg://user:pw@host:port/db``,
            ``grpc://host:port`` for ``betasweep storage-proxy`` (heartbeats through the proxy: see
            :mod:`betasweep.sweeps.proxy`), or a journal file ``PATH.journal`` / ``PATH.log``
            (:func:`is_journal`; created if missing): Optuna's JournalStorage, for several
            processes on one machine.
        tracking_uri: where the trials' MLflow runs are (to end a dead worker's run).

    Raises:
        ConfigError: the URL is not a database URL Optuna can open, or no proxy answers at it.
    """
    url = local_storage(url)  # the default's journal, after a --jobs run (see local_storage)
    if url.startswith("grpc:"):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # gRPC proxy, heartbeats
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return open_grpc_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                 stale_trial_callback=_end_stale_run(tracking_uri))
    if is_journal(url):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # retry callback
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            return _JournalStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                   stale_trial_callback=_end_stale_run(tracking_uri))
        except Exception as error:  # OSError: a folder that does not exist or cannot be written
            raise ConfigError(f"--storage {url}: cannot open the journal file ({first_line(error)})") from None
    engine_kwargs = {"pool_pre_ping": True} if url.startswith("postgresql") else {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retry callback
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _Storage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_end_stale_run(tracking_uri),
        )
    except Exception as error:  # sqlalchemy.exc.ArgumentError, OperationalError, ModuleNotFoundError, ...
        raise ConfigError(f"--storage {redact(url)}: cannot open ({first_line(error)})") from None


def warn_if_shared_sqlite(storage_url: str, study: optuna.Study | None, *, worker: bool, echo: Callable[[str], None]) -> bool:
    """Warn when a SQLite study is (or is about to be) shared by several processes.

    SQLite locks the whole file on each write; several workers on it see "database is locked"
    errors and lost heartbeats. Returns whether it warned.
    """
    if not storage_url.startswith("sqlite"):
        return False
    running = study is not None and any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))
    if worker or running:
        echo("warning: SQLite storage is for one process; for several workers use PostgreSQL "
             "(--storage postgresql+psycopg://USER:PASSWORD@HOST:5432/DB)")
        return True
    return False


# -- what a study's storage is: Optuna keeps it in the private ``study._storage``, read here only --------

def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage ``study`` reads and writes (Optuna wraps an RDB storage in a cache: that cache)."""
    return study._storage


def engine_of(study: optuna.Study):
    """The SQLAlchemy engine under the study's storage (Optuna wraps RDB storage in a cache), or None."""
    storage = storage_of(study)
    storage = getattr(storage, "_backend", storage)
    return getattr(storage, "engine", None)


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between a running trial's heartbeats in the study's storage; None without heartbeats."""
    return getattr(storage_of(study), "get_heartbeat_interval", lambda: None)()


def grace_period(study: optuna.Study) -> float:
    """Seconds without a heartbeat after which a running trial is stale (:data:`GRACE_PERIOD_S` where the
    storage does not say)."""
    storage = storage_of(study)
    storage = getattr(storage, "_backend", storage)
    return getattr(storage, "grace_period", None) or GRACE_PERIOD_S


def journal_path(study: optuna.Study) -> str | None:
    """The journal file of a study on a journal file (:func:`is_journal`), else None."""
    storage = storage_of(study)
    return storage.path if isinstance(storage, _JournalStorage) else None
