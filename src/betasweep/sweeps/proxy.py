"""Optuna's gRPC storage proxy, with heartbeats: many workers, one set of database connections.

Past a few dozen workers per PostgreSQL, workers talk to one ``betasweep storage-proxy`` process
(Optuna's :func:`optuna.storages.run_grpc_proxy_server`, Optuna >= 4.2) instead of the database:
the proxy holds the only database connections (at most one per server thread) and caches the
finished trials, so each worker's ``ask`` reads only the trials that changed. Workers use
``grpc://HOST:PORT`` as their storage URL.

Optuna's gRPC client (:class:`optuna.storages.GrpcStorageProxy`) has no heartbeats, so a worker
killed behind the proxy would leave its trial RUNNING for ever. :class:`GrpcStorage` adds them
through the proxy's ordinary API: the trial's heartbeat is a system attribute
(``betasweep:heartbeat``, the worker's clock in Unix seconds) that Optuna's heartbeat thread
rewrites every ``heartbeat_interval`` seconds; a RUNNING trial whose last heartbeat (or, before the
first one, whose start) is older than ``grace_period`` seconds is stale. Every worker runs
Optuna's :func:`optuna.storages.fail_stale_trials` before each trial and while it waits, exactly as
on PostgreSQL: the stale trial is failed (the proxy's database serialises the state change, so one
worker wins), its MLflow run is ended KILLED and its params are queued again
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`). Timestamps of different machines are
compared, so their clocks must agree to well within the grace period (NTP does).
"""

from __future__ import annotations

import logging
import time
from typing import Callable
from urllib.parse import urlsplit

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from betasweep.errors import ConfigError

__all__ = ["GRPC_SCHEME", "HEARTBEAT_ATTR", "GrpcStorage", "parse_grpc_url", "open_grpc_storage", "make_proxy_server"]

GRPC_SCHEME = "grpc://"
HEARTBEAT_ATTR = "betasweep:heartbeat"
DEFAULT_PROXY_PORT = 13000
CONNECT_TIMEOUT_S = 10.0

_log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """A storage URL fit for messages and logs, the password as ``***`` (``study.redact`` too: this
    module has no torch or mlflow imports, so the proxy and ``submit --dry-run`` stay light)."""
    import sqlalchemy.engine

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only its scheme
        return url.split(":", 1)[0] + "://..."


def _first_line(error: BaseException) -> str:
    """``"ErrorType: first line of its message"`` of the error's cause, at most 300 characters."""
    cause = error.__cause__ or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"[:300]


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` -> ``(HOST, PORT)``.

    Raises:
        ConfigError: not of that form.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "grpc" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"--storage {url}: expected grpc://HOST:PORT (the address of `betasweep storage-proxy`)")
    return parts.hostname, port


class GrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC client with heartbeats kept as a trial system attribute (see the module's docstring).

    Args:
        host, port: the proxy's address.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a RUNNING trial is stale.
        stale_trial_callback: called with (study, failed trial) for each stale trial this worker failed.
    """

    def __init__(self, *, host: str, port: int, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
        super().__init__(host=host, port=port)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except Exception as error:  # proxy or database away for a moment, or the trial just finished
            _log.warning("heartbeat of trial id %d not recorded: %s", trial_id, error)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            last = trial.system_attrs.get(HEARTBEAT_ATTR)
            if last is None and trial.datetime_start is not None:
                last = trial.datetime_start.timestamp()
            if last is not None and now - float(last) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_trial_callback


def open_grpc_storage(url: str, *, heartbeat_interval: int, grace_period: int,
                      stale_trial_callback=None, timeout: float = CONNECT_TIMEOUT_S) -> GrpcStorage:
    """A :class:`GrpcStorage` on ``grpc://HOST:PORT``, once the proxy answers.

    Raises:
        ConfigError: malformed URL, or no proxy answers within ``timeout`` seconds.
    """
    import socket

    host, port = parse_grpc_url(url)
    try:  # a closed port answers at once; wait_server_ready would retry until its timeout
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise ConfigError(f"--storage {url}: no storage proxy answers there ({error.strerror or error}); start one "
                          "with `betasweep storage-proxy --storage postgresql+psycopg://...`") from None
    storage = GrpcStorage(host=host, port=port, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                          stale_trial_callback=stale_trial_callback)
    try:
        storage.wait_server_ready(timeout=timeout)
    except ConnectionError:
        storage.close()
        raise ConfigError(f"--storage {url}: no storage proxy answers there within {timeout:.0f} s "
                          "(start one with `betasweep storage-proxy --storage postgresql+psycopg://...`)") from None
    return storage


def make_proxy_server(storage_url: str, *, host: str, port: int, threads: int, interceptors=()):
    """Optuna's gRPC proxy server for the database at ``storage_url`` (bound, not started).

    The servicer is Optuna's (``optuna.storages._grpc``, as :func:`optuna.storages.run_grpc_proxy_server`
    builds it) over Optuna's cached RDB storage. The server answers each request on one of
    ``threads`` threads; each thread uses at most one database connection (the SQLAlchemy pool
    holds ``threads``, no overflow), so the database sees at most ``threads`` connections from the
    proxy however many workers there are.

    Returns:
        ``(server, bound_port)``: a ``grpc.Server`` and the port it listens on (``port=0``: a free one).

    Raises:
        ConfigError: the storage is not a database URL that opens, or the address cannot be bound.
    """
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from optuna.storages import RDBStorage, get_storage
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    if storage_url.startswith(GRPC_SCHEME):
        raise ConfigError(f"--storage {storage_url}: the proxy needs the database's URL, not another proxy's")
    engine_kwargs = {"pool_pre_ping": True}
    if storage_url.startswith("postgresql"):
        engine_kwargs.update(pool_size=threads, max_overflow=0)
    try:
        storage = get_storage(RDBStorage(storage_url, engine_kwargs=engine_kwargs))
    except Exception as error:
        raise ConfigError(f"--storage {redact_url(storage_url)}: cannot open ({_first_line(error)})") from None
    server = grpc.server(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="proxy"),
                         interceptors=list(interceptors))
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there (port in use or address not local)")
    return server, bound
