"""Real servers for the distributed-sweep tests: PostgreSQL (initdb + pg_ctl) and `mlflow server`.

Nothing here is mocked: `PostgresServer` runs Debian's PostgreSQL binaries in a temporary directory on a
free loopback port, `MlflowServer` runs `python -m mlflow server` backed by a database on it, with
artifacts proxied to a local directory. Both classes are plain Python (no pytest) so that
`benchmarks/storage.py` starts PostgreSQL the same way; the pytest fixtures at the bottom wrap them.

Register the fixtures from `tests/conftest.py` with::

    pytest_plugins = ["servers"]

(pytest's default ``prepend`` import mode puts ``tests/`` on ``sys.path`` because ``tests/`` has no
``__init__.py``, so this module imports as ``servers``.)

PostgreSQL refuses to run as root. When the tests run as root (CI containers), the server runs as the
``postgres`` system user that Debian's ``postgresql`` package creates, through ``runuser``; otherwise
as the current user. Without the binaries the fixtures skip, except when ``CI`` is set: CI installs
them (``.ci/run``), so their absence there is a failure.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PG_SYSTEM_USER = "postgres"  # the unprivileged account of Debian's postgresql package
DB_SUPERUSER = "betasweep"  # the database role the tests connect as (password auth over TCP)

# Fast settings for tests: a tmpdir cluster that is thrown away needs no fsync. The benchmark passes
# `settings={}` to measure PostgreSQL's defaults.
TEST_SETTINGS: Mapping[str, str] = {"fsync": "off", "full_page_writes": "off", "max_connections": "200"}


class ServerUnavailable(RuntimeError):
    """The binaries or the system user a server needs are not on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_pg_bin() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `pg_isready`.

    `PG_BIN` if set, else the newest `/usr/lib/postgresql/*/bin` (Debian keeps them off `PATH`), else `PATH`.
    """
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name))
    candidates.extend(reversed(debian))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "pg_isready")):
            return directory
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in PG_BIN, /usr/lib/postgresql/*/bin or PATH; "
        "install Debian's `postgresql` package (apt-get install -y postgresql)")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


class PostgresServer:
    """A PostgreSQL cluster in its own directory, listening on 127.0.0.1:`port` only.

    `start()`, `stop()` and `restart()` keep the data directory and the port, so a test can take the
    database away under running workers and bring it back. `cleanup()` stops it and deletes the directory.

    Args:
        base_dir: an empty directory to create the cluster in; a fresh one under the system tmpdir if None.
            Every ancestor must be traversable by the server's user (pytest's `tmp_path` is not, as root).
        port: the TCP port; a free one if None.
        settings: `postgres -c` settings; `TEST_SETTINGS` by default.
    """

    def __init__(self, base_dir: str | Path | None = None, *, port: int | None = None,
                 settings: Mapping[str, str] | None = None) -> None:
        self.bin = find_pg_bin()
        self.run_as = _unprivileged_user()
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="betasweep-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_file = self.base_dir / "postgres.log"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = DB_SUPERUSER
        self.password = secrets.token_hex(16)
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        self._initialised = False
        atexit.register(self.cleanup)

    # --- lifecycle -------------------------------------------------------------------------------------
    def init(self) -> None:
        """`initdb`: a cluster owned by `run_as`, superuser `betasweep` with a random password (scram over TCP)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.run_as is not None:
            for path in (self.base_dir, self.socket_dir, pwfile):
                shutil.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run([self.bin / "initdb", "-D", self.data_dir, "-U", self.user, f"--pwfile={pwfile}",
                   "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8", "--locale=C",
                   "--no-sync"])
        pwfile.unlink()
        self._initialised = True

    def start(self) -> None:
        """Start the server (initialising the cluster the first time) and wait until it accepts connections."""
        if not self._initialised:
            self.init()
        options = [f"-p {self.port}", f"-k {self.socket_dir}", f"-c listen_addresses={self.host}"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        self._run([self.bin / "pg_ctl", "-D", self.data_dir, "-l", self.log_file, "-o", " ".join(options),
                   "-w", "-t", "60", "start"])
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (roll back open transactions, disconnect clients), or `immediate` (as a crash)."""
        if self.is_running():
            self._run([self.bin / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", "60", "stop"])

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same data directory and port; clients lose their connections."""
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stop the server if it runs and delete its directory (idempotent; also registered with atexit)."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").is_file():
            return False
        result = subprocess.run(self._command([self.bin / "pg_ctl", "-D", self.data_dir, "status"]),
                                capture_output=True, text=True)
        return result.returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll `pg_isready` on the TCP address until the server accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run([str(self.bin / "pg_isready"), "-h", self.host, "-p", str(self.port),
                                     "-U", self.user, "-d", "postgres", "-t", "2"], capture_output=True, text=True)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on {self.host}:{self.port} not ready after {timeout:.0f} s: "
                                   f"{result.stdout.strip()}\n{self.log_tail()}")
            time.sleep(0.1)

    # --- databases -------------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy URL, e.g. `postgresql+psycopg://betasweep:PW@127.0.0.1:PORT/optuna`."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """`CREATE DATABASE name` (an error if it exists); returns its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log_tail(self, n: int = 30) -> str:
        if not self.log_file.is_file():
            return "(no server log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])

    # --- helpers ---------------------------------------------------------------------------------------
    def _command(self, args: list) -> list[str]:
        args = [str(arg) for arg in args]
        if self.run_as is None:
            return args
        return ["runuser", "-u", self.run_as.pw_name, "--", *args]

    def _run(self, args: list) -> None:
        result = subprocess.run(self._command(args), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, cwd=self.base_dir)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args[:2]))} ... failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}\n{self.log_tail()}")

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None (the current user) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise ServerUnavailable(f"running as root and there is no `{PG_SYSTEM_USER}` system user to run "
                                "PostgreSQL as (Debian's postgresql package creates it)") from None
    if not shutil.which("runuser"):
        raise ServerUnavailable("running as root and `runuser` (util-linux) is missing")
    return user


class MlflowServer:
    """`mlflow server` on 127.0.0.1:`port`: runs in `backend_store_uri`, artifacts proxied to `artifacts_dir`.

    Clients use `uri` (`http://127.0.0.1:PORT`) for runs and artifacts alike (`mlflow-artifacts:/`), so they
    need no storage of their own. The process is its own session; `stop()` signals the whole group.

    MLflow's job execution (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION`, on by default in MLflow 3: a huey consumer and
    its workers beside the server, for GenAI scorers and trace jobs, which betasweep never submits) is off unless
    the environment sets it: it doubled the CPU seconds of a server start (15.8 against 7.4 s, 10 processes
    against 2), and the tests start a dozen servers on 2 cores.
    """

    def __init__(self, backend_store_uri: str, artifacts_dir: str | Path, *, port: int | None = None,
                 log_file: str | Path | None = None) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_file = Path(log_file) if log_file else self.artifacts_dir.parent / "mlflow-server.log"
        self.process: subprocess.Popen | None = None
        atexit.register(self.stop)

    def start(self, timeout: float = 120.0, env: Mapping[str, str] | None = None) -> None:
        """Start the server and wait until ``/health`` answers; ``env``: the environment to start it in (default:
        this process's, read now)."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", self.backend_store_uri,
                   "--serve-artifacts", "--artifacts-destination", str(self.artifacts_dir),
                   "--default-artifact-root", "mlflow-artifacts:/"]
        base = os.environ if env is None else env
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **base, "PYTHONUNBUFFERED": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=self.artifacts_dir.parent, start_new_session=True)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        """Poll `GET /health` until it answers 200; fail early with the log if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server at {self.uri} not healthy after {timeout:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it has not exited within 10 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, n: int = 40) -> str:
        if not self.log_file.is_file():
            return "(no server log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])


# --- pytest fixtures ------------------------------------------------------------------------------------
def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where `.ci/run` installs PostgreSQL and its absence is a bug."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session on 127.0.0.1 (see `PostgresServer`): `url(db)`,
    `create_database(name)`, `stop()`, `start()`, `restart()`. Removed with its data at the end."""
    try:
        server = PostgresServer()
    except ServerUnavailable as error:
        _unavailable(str(error))
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server for this test; its `postgresql+psycopg://` URL."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    return postgres_server.create_database(f"{name}_{secrets.token_hex(3)}")


@pytest.fixture(scope="session")
def mlflow_server(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` for the session, runs in PostgreSQL (database `mlflow`), artifacts proxied to a
    temporary directory. Yields its tracking URI, `http://127.0.0.1:PORT`."""
    root = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(postgres_server.create_database("mlflow"), root / "artifacts", log_file=root / "server.log")
    try:
        server.start()
        yield server.uri
    finally:
        server.stop()


# --- a real browser -------------------------------------------------------------------------------------
def find_chromium() -> str:
    """Debian's `chromium` (or `chromium-browser`, `google-chrome`) on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise ServerUnavailable("no Chromium on PATH; install Debian's `chromium` package (apt-get install -y chromium)")


class Chromium:
    """Headless Chromium on loopback pages: `open(url)` renders a page (JavaScript run for a virtual-time budget),
    returns its DOM after rendering and optionally writes a screenshot.

    Each call starts a fresh browser with an empty profile of its own, so nothing a page stored in the
    browser (MLflow keeps the UI's chosen mode in localStorage) carries over to the next page.
    """

    def __init__(self, base_dir: str | Path) -> None:
        self.executable = find_chromium()
        self.base_dir = Path(base_dir)

    def open(self, url: str, *, screenshot: str | Path | None = None, window: tuple[int, int] = (1400, 1000),
             budget_ms: int = 10_000, timeout: float = 120.0) -> str:
        profile = Path(tempfile.mkdtemp(prefix="profile-", dir=self.base_dir))
        command = [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                   f"--virtual-time-budget={budget_ms}", "--dump-dom"]
        if screenshot is not None:
            command.append(f"--screenshot={screenshot}")
        result = subprocess.run([*command, url], capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, cwd=self.base_dir)
        shutil.rmtree(profile, ignore_errors=True)
        if result.returncode != 0:
            raise RuntimeError(f"chromium exited {result.returncode} on {url}:\n{result.stderr[-2000:]}")
        return result.stdout


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    """Headless Chromium (Debian's `chromium` package; skipped without it, a failure under CI)."""
    try:
        return Chromium(tmp_path_factory.mktemp("chromium"))
    except ServerUnavailable as error:
        _unavailable(str(error))
