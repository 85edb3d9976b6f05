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

Strangers are kept out: the study's user attributes (its spec, dataset path, tracking URI) are
re-read by every worker, so whoever can write them steers every worker. With a token (the proxy's
and the workers' ``BETASWEEP_PROXY_TOKEN``, or a file named by ``BETASWEEP_PROXY_TOKEN_FILE``; never
argv, which ``ps`` shows to every user) each call must carry ``authorization: Bearer <token>``
(:class:`TokenInterceptor`, a gRPC server interceptor; else ``UNAUTHENTICATED``). With a
certificate the port speaks TLS (workers verify it with ``BETASWEEP_PROXY_CA``).
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

__all__ = ["GRPC_SCHEME", "HEARTBEAT_ATTR", "GrpcStorage", "TokenInterceptor", "parse_grpc_url", "open_grpc_storage",
           "make_proxy_server", "proxy_channel", "proxy_token", "redact_url"]

GRPC_SCHEME = "grpc://"
HEARTBEAT_ATTR = "betasweep:heartbeat"
DEFAULT_PROXY_PORT = 13000
CONNECT_TIMEOUT_S = 10.0

_log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """A storage URL fit for messages and logs, the password as ``***`` (``study.redact`` too: this
    module has no torch or mlflow imports, so the proxy and ``submit --dry-run`` stay light)."""
    import sqlalchemy.engine

    if "://" not in url:  # a file path (a journal file): nothing to hide
        return url
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only its scheme
        return url.split(":", 1)[0] + "://..."


def first_line(error: BaseException) -> str:
    """``"ErrorType: first line of its message"`` of the error's cause, at most 300 characters."""
    cause = error.__cause__ or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"[:300]


TOKEN_ENV, TOKEN_FILE_ENV, CA_ENV = "BETASWEEP_PROXY_TOKEN", "BETASWEEP_PROXY_TOKEN_FILE", "BETASWEEP_PROXY_CA"
TOKEN_HEADER = "authorization"  # gRPC metadata key; value "Bearer <token>"


def proxy_token(environ=None) -> str | None:
    """The proxy's shared token: ``$BETASWEEP_PROXY_TOKEN``, else the first line of the file named by
    ``$BETASWEEP_PROXY_TOKEN_FILE``; None when neither is set. Never taken from the command line
    (``ps`` shows every process's argv to every user).

    Raises:
        ConfigError: the token file cannot be read or is empty.
    """
    import os

    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_ENV)
    if token:
        return token.strip()
    path = environ.get(TOKEN_FILE_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{TOKEN_FILE_ENV}={path}: cannot read the proxy token ({getattr(error, 'strerror', None) or error})") from None
    if not token:
        raise ConfigError(f"{TOKEN_FILE_ENV}={path}: the file is empty (expected the proxy's token on its first line)")
    return token


def _read_file(path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot read ({error.strerror or error})") from None


class TokenInterceptor:
    """A gRPC server interceptor: calls without metadata ``authorization: Bearer <token>`` end ``UNAUTHENTICATED``.

    The comparison takes constant time (:func:`hmac.compare_digest`). Every method of Optuna's proxy is
    unary-unary, so a refused call is answered by a unary handler that aborts.
    """

    def __init__(self, token: str) -> None:
        import grpc

        self._expected = f"Bearer {token}".encode()

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong proxy token (BETASWEEP_PROXY_TOKEN)")

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, handler_call_details):
        import hmac

        given = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_HEADER, "")
        given = given.encode() if isinstance(given, str) else bytes(given)
        if hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        return self._refusal


def _client_interceptor(token: str):
    """A client-side interceptor adding ``authorization: Bearer <token>`` to every unary call."""
    import grpc

    class _Details(grpc.ClientCallDetails):
        def __init__(self, details, metadata):
            self.method, self.timeout, self.credentials = details.method, details.timeout, details.credentials
            self.wait_for_ready = getattr(details, "wait_for_ready", None)
            self.compression = getattr(details, "compression", None)
            self.metadata = metadata

    class _Token(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, client_call_details, request):
            metadata = [*(client_call_details.metadata or ()), (TOKEN_HEADER, f"Bearer {token}")]
            return continuation(_Details(client_call_details, metadata), request)

    return _Token()


def proxy_channel(host: str, port: int, *, token: str | None = None, ca_file: str | None = None):
    """A gRPC channel to the proxy: TLS when ``ca_file`` (the CA that signed the proxy's certificate) is
    given, and the token in each call's metadata when given. Defaults: ``$BETASWEEP_PROXY_TOKEN`` (or
    its ``_FILE``) and ``$BETASWEEP_PROXY_CA``.
    """
    import os

    import grpc

    token = proxy_token() if token is None else token
    ca_file = os.environ.get(CA_ENV) if ca_file is None else ca_file
    options = [("grpc.max_receive_message_length", -1)]
    if ca_file:
        credentials = grpc.ssl_channel_credentials(root_certificates=_read_file(ca_file, CA_ENV))
        channel = grpc.secure_channel(f"{host}:{port}", credentials, options=options)
    else:
        channel = grpc.insecure_channel(f"{host}:{port}", options=options)
    if token:
        channel = grpc.intercept_channel(channel, _client_interceptor(token))
    return channel


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

    def _setup(self) -> None:
        """Optuna's setup on a channel with the token and TLS of :func:`proxy_channel`."""
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        self._channel = proxy_channel(self._host, self._port)
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)

    def wait_server_ready(self, timeout: float | None = None) -> None:
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as error:
            raise ConnectionError("GRPC connection timeout") from error

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
                          "(start one with `betasweep storage-proxy --storage postgresql+psycopg://...`; with TLS set "
                          f"{CA_ENV})") from None
    import grpc

    try:  # one cheap call: a proxy that refuses this client's token says so now, in one line
        storage.get_all_studies()
    except grpc.RpcError as error:
        storage.close()
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise ConfigError(f"--storage {url}: the storage proxy refuses this client: set {TOKEN_ENV} (or "
                              f"{TOKEN_FILE_ENV}) to the proxy's token") from None
        raise ConfigError(f"--storage {url}: the storage proxy fails ({error.code().name}: {error.details()})") from None
    return storage


def make_proxy_server(storage_url: str, *, host: str, port: int, threads: int, interceptors=(),
                      token: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                      tls_client_ca: str | None = None):
    """Optuna's gRPC proxy server for the database at ``storage_url`` (bound, not started).

    The servicer is Optuna's (``optuna.storages._grpc``, as :func:`optuna.storages.run_grpc_proxy_server`
    builds it) over Optuna's cached RDB storage. The server answers each request on one of
    ``threads`` threads; each thread uses at most one database connection (the SQLAlchemy pool
    holds ``threads``, no overflow), so the database sees at most ``threads`` connections from the
    proxy however many workers there are.

    With ``token`` every call must carry it (:class:`TokenInterceptor`; else ``UNAUTHENTICATED``).
    With ``tls_cert`` and ``tls_key`` (PEM files) the port speaks TLS; with ``tls_client_ca`` too,
    clients must present a certificate that CA signed (mutual TLS).

    Returns:
        ``(server, bound_port)``: a ``grpc.Server`` and the port it listens on (``port=0``: a free one).

    Raises:
        ConfigError: the storage is not a database URL that opens, a TLS file cannot be read or only one
            of cert and key is given, or the address cannot be bound.
    """
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from optuna.storages import RDBStorage, get_storage
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    if storage_url.startswith(GRPC_SCHEME):
        raise ConfigError(f"--storage {storage_url}: the proxy needs the database's URL, not another proxy's")
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together (the proxy's certificate and its private key)")
    credentials = None
    if tls_cert:
        client_ca = _read_file(tls_client_ca, "--tls-client-ca") if tls_client_ca else None
        credentials = grpc.ssl_server_credentials([(_read_file(tls_key, "--tls-key"), _read_file(tls_cert, "--tls-cert"))],
                                                  root_certificates=client_ca, require_client_auth=client_ca is not None)
    if token:
        interceptors = (TokenInterceptor(token), *interceptors)
    engine_kwargs = {"pool_pre_ping": True}
    if storage_url.startswith("postgresql"):
        engine_kwargs.update(pool_size=threads, max_overflow=0)
    try:
        storage = get_storage(RDBStorage(storage_url, engine_kwargs=engine_kwargs))
    except Exception as error:
        raise ConfigError(f"--storage {redact_url(storage_url)}: cannot open ({first_line(error)})") from None
    server = grpc.server(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="proxy"),
                         interceptors=list(interceptors))
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    try:
        address = f"{host}:{port}"
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there (port in use or address not local)")
    return server, bound
