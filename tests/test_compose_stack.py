"""docker-compose.yml started for real, as a team would: ``docker compose up`` with two workers, a small
sweep to its end, a worker killed mid-trial, the MLflow container stopped for 60 s mid-trial, then
``down`` (with Debian's ``docker-compose`` 1.29) and ``up`` again.

Images: tests/docker_stack.py (a debootstrapped base, the project's Dockerfile on it, a stand-in for the
official postgres image). Network: every service on the host's network, on 127.0.0.1 only
(tests/fixtures/compose.test.yml). The tests are marked ``compose``: ``pytest -m compose`` times them apart.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

import docker_stack

# A first run builds every image (about 20 minutes on a loaded machine) inside the first test's time.
pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]

REPO = docker_stack.REPO
OVERRIDE = REPO / "tests" / "fixtures" / "compose.test.yml"
N_TRIALS = 4
GRACE_PERIOD = 20
OUTAGE_S = 60

# The distributed example trimmed: 1 seed per trial, 600 steps of a small model, checkpoints every
# 50 steps (each uploaded to the MLflow server), a small metric.
SPEC = {
    "study": "compose-test",
    "dataset": {"name": "shapes", "subsample": [1, 1, 4, 2, 2]},
    "search_space": {"beta": {"low": 0.5, "high": 8.0, "log": True}},
    "fixed": {"latent_dim": 6, "width": 16, "batch_size": 16, "learning_rate": 0.001, "threads": 1,
              "log_every": 50, "checkpoint_every": 50},
    "train_samples": 16 * 600,
    "seed": {"policy": "per_trial", "value": 0},
    "metric": {"seed": 0, "objective": "beta_vae", "panel": ["beta_vae"],
               "full": {"num_train": 300, "num_eval": 150, "batch_size": 16}},
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "none"},
    "n_trials": N_TRIALS,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One compose project of docker-compose.yml + the test override, with its own .env."""

    def __init__(self, root: Path, compose: list[str]):
        self.compose_cmd = compose
        self.project = f"bstest{secrets.token_hex(3)}"
        self.passwords = {key: secrets.token_urlsafe(18) for key in (
            "POSTGRES_PASSWORD", "STUDY_DB_PASSWORD", "WORKER_DB_PASSWORD", "DASHBOARD_DB_PASSWORD",
            "MLFLOW_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")}
        spec_dir, data_dir = root / "spec", root / "data"
        for folder in (root, spec_dir, data_dir):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o755)  # the containers' user (uid 10001) reads the spec
        (spec_dir / "compose-test.yaml").write_text(yaml.safe_dump(SPEC))
        (spec_dir / "compose-test.yaml").chmod(0o644)
        self.ports = {"POSTGRES_PORT": _free_port(), "MLFLOW_PORT": _free_port(), "DASHBOARD_PORT": _free_port()}
        self.env = {
            **self.passwords, **{k: str(v) for k, v in self.ports.items()},
            "POSTGRES_USER": "postgres", "OPTUNA_DB": "optuna", "MLFLOW_DB": "mlflow",
            "BIND_ADDRESS": "127.0.0.1", "LISTEN_ADDRESS": "127.0.0.1",
            "SPEC_DIR": str(spec_dir), "STUDY_SPEC": "compose-test.yaml", "STUDY_NAME": SPEC["study"],
            "DATA_DIR": str(data_dir), "BETASWEEP_TAG": docker_stack.IMAGE_TAG,
            "WORKER_HEARTBEAT_INTERVAL": "5", "WORKER_GRACE_PERIOD": str(GRACE_PERIOD), "MLFLOW_WORKERS": "2",
        }
        self.env_file = root / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))
        self.env_file.chmod(0o600)
        self.log = root / "compose.log"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['MLFLOW_PORT']}"

    def storage_url(self, role: str = "betasweep_study", password_key: str = "STUDY_DB_PASSWORD") -> str:
        return (f"postgresql+psycopg://{role}:{self.passwords[password_key]}@127.0.0.1:{self.ports['POSTGRES_PORT']}"
                f"/optuna")

    def compose(self, *args: str, command: list[str] | None = None, check: bool = True,
                timeout: float = 900) -> subprocess.CompletedProcess:
        # The .env alone decides: none of its variables from this process's environment.
        env = {k: v for k, v in os.environ.items() if k not in self.env}
        full = [*(command or self.compose_cmd), "--project-name", self.project, "--project-directory", str(REPO),
                "--env-file", str(self.env_file), "-f", str(REPO / "docker-compose.yml"), "-f", str(OVERRIDE), *args]
        result = subprocess.run(full, capture_output=True, text=True, env=env, timeout=timeout)
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(full[len(command or self.compose_cmd):])}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            # The services' own last lines say why (a one-shot service's exit 2 names its bad input).
            logs = subprocess.run([*full[:full.index(args[0])], "logs", "--no-color", "--tail", "20"],
                                  capture_output=True, text=True, env=env, timeout=120).stdout
            raise AssertionError(f"compose {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}\n"
                                 f"services' last lines:\n{logs[-4000:]}")
        return result

    def containers(self, service: str) -> list[str]:
        out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                              "--filter", f"label=com.docker.compose.service={service}"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    def healthy(self, service: str) -> bool:
        """Every container of ``service`` reports healthy (its compose healthcheck)."""
        containers = self.containers(service)
        states = [subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", c], capture_output=True,
                                 text=True).stdout.strip() for c in containers]
        return bool(states) and all(state == "healthy" for state in states)

    def logs(self) -> str:
        return self.compose("logs", "--no-color", check=False).stdout


@contextmanager
def _mlflow_login(stack: Stack):
    """This process's MLflow client as the stack's admin (restored after, for other tests in this process)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=stack.passwords["MLFLOW_ADMIN_PASSWORD"])
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _study(stack: Stack):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=SPEC["study"], storage=stack.storage_url())


def _wait(condition, timeout: float, what: str, stack: Stack, poll: float = 2.0):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 (the study's database may still be starting)
            last_error = error
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error}); "
                         f"logs:\n{stack.logs()[-6000:]}")


def _running(stack: Stack) -> list:
    import optuna

    return _study(stack).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def _checkpointed(trial) -> bool:
    return any(int(step) > 0 for step in (trial.user_attrs.get("checkpoint_steps") or {}).values())


def _summary(trials) -> list:
    return [(t.number, t.state.name, {k: v for k, v in t.user_attrs.items()
                                      if k in ("attempt_of", "resumed", "checkpoint_steps", "fail_reason", "worker")})
            for t in trials]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    reason = docker_stack.unavailable()
    if reason:
        pytest.skip(reason)
    started = docker_stack.ensure_dockerd()
    docker_stack.build_images()
    stack = Stack(tmp_path_factory.mktemp("compose"), docker_stack.compose_command())
    try:
        yield stack
    finally:
        with open(stack.log, "a") as log:  # kept for a failure's post-mortem (pytest's basetemp)
            log.write(stack.logs())
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
        if started is not None:
            started.terminate()
            started.wait(timeout=60)


def test_up_two_workers_survive_a_killed_worker_and_an_mlflow_outage(stack):
    import optuna

    stack.compose("up", "--detach", "--no-build", "--scale", "worker=2", timeout=900)
    assert len(stack.containers("worker")) == 2
    _wait(lambda: stack.healthy("optuna-dashboard") and stack.healthy("mlflow"), 300, "a healthy dashboard", stack)

    # Strangers kept out: every server listens on loopback only, MLflow wants a password, no password in ps.
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout
    for name, port in stack.ports.items():
        addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()
                     if line.split()[3].endswith(f":{port}")}
        assert addresses == {"127.0.0.1"}, (name, addresses)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "betasweep worker" in ps and "mlflow server" in ps and "optuna-dashboard" in ps
    for key, password in stack.passwords.items():
        assert password not in ps, f"{key} is on a command line"

    # Each service as its own PostgreSQL role: workers change rows but not the schema.
    import sqlalchemy

    engine = sqlalchemy.create_engine(stack.storage_url("betasweep_worker", "WORKER_DB_PASSWORD"))
    with engine.connect() as connection, pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied"):
        connection.execute(sqlalchemy.text("CREATE TABLE intruder (x int)"))
    engine.dispose()
    superuser = sqlalchemy.create_engine(stack.storage_url("postgres", "POSTGRES_PASSWORD"))
    with superuser.connect() as connection:  # the superuser sees every session's role
        roles = set(connection.execute(sqlalchemy.text(
            "SELECT usename FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()")).scalars())
    superuser.dispose()
    # (a worker holds its connection only while it talks to the study; MLflow and the dashboard keep theirs)
    assert {"betasweep_mlflow", "betasweep_dashboard"} <= roles <= {
        "betasweep_study", "betasweep_worker", "betasweep_mlflow", "betasweep_dashboard"}, roles

    # One worker killed outright mid-trial: once both workers train a trial that has checkpoints, one
    # worker container gets SIGKILL; its trial stops sending heartbeats and is retried by the other.
    def both_checkpointed():
        running = _running(stack)
        return running if len(running) == 2 and all(_checkpointed(t) for t in running) else None

    at_kill = {t.number for t in _wait(both_checkpointed, 900, "two running trials with checkpoints", stack)}
    subprocess.run(["docker", "kill", "--signal", "KILL", stack.containers("worker")[0]], check=True,
                   capture_output=True)

    # The MLflow container stopped for 60 s while a trial trains, then started again.
    at_outage = {t.number for t in _wait(lambda: [t for t in _running(stack) if t.number not in at_kill], 900,
                                         "a trial started after the kill", stack)}
    stack.compose("stop", "mlflow", timeout=120)
    time.sleep(OUTAGE_S)
    stack.compose("start", "mlflow", timeout=300)

    # The study ends with its n_trials complete trials; the killed trial was retried and resumed.
    def finished():
        study = _study(stack)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return study if len(complete) >= N_TRIALS and not stack.containers("worker") else None

    study = _wait(finished, 1500, f"{N_TRIALS} complete trials and the workers' exit", stack, poll=5)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    by_number = {t.number: t for t in trials}

    def outcome(number: int):
        """The final state of a trial's chain of attempts (a retry names its attempt in ``attempt_of``)."""
        retry = next((t for t in trials if t.user_attrs.get("attempt_of") == number), None)
        return outcome(retry.number) if retry is not None else by_number[number].state

    for number in at_kill | at_outage:  # nothing lost: each trial running then ended complete, retried or not
        assert outcome(number) == optuna.trial.TrialState.COMPLETE, (number, _summary(trials))
    retried = [t for t in trials if t.user_attrs.get("attempt_of") in at_kill]
    assert retried, f"no trial running at the kill ({sorted(at_kill)}) was retried: {_summary(trials)}"
    # ... and resumed: it started from the killed attempt's last uploaded checkpoint, not from step 0 (its
    # lookup waits out the MLflow outage: Tracker.list_artifacts retries like every call in a trial).
    resumed = [t for t in retried if any(int(how.get("step") or 0) > 0 for how in t.user_attrs.get("resumed", {}).values())]
    assert resumed, f"the killed trial's retry started from step 0: {_summary(trials)}"
    exits = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={stack.project}",
                            "--filter", "label=com.docker.compose.service=worker", "--format", "{{.Status}}"],
                           capture_output=True, text=True, check=True).stdout
    assert "Exited (0)" in exits, exits

    # Every complete trial's run, metrics, traversal and checkpoint are in the MLflow server (nothing lost).
    with _mlflow_login(stack):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=stack.mlflow_uri)
        for trial in complete:
            run = client.get_run(trial.user_attrs["mlflow_run_id"])
            assert run.info.status == "FINISHED", (trial.number, run.info.status)
            assert "beta_vae" in " ".join(run.data.metrics), (trial.number, sorted(run.data.metrics))
            paths = _artifact_paths(client, run.info.run_id)
            assert any("checkpoint.pt" in p for p in paths), (trial.number, paths)
            assert any("traversal" in p for p in paths), (trial.number, paths)
    stack.artifacts = {t.number: _artifact_paths_from(stack, t) for t in complete}
    stack.values = {t.number: t.value for t in complete}

    # No password in any service's log.
    logs = stack.logs()
    for key, password in stack.passwords.items():
        assert password not in logs, f"{key} is in the services' logs"


def _artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out.extend(_artifact_paths(client, run_id, item.path) if item.is_dir else [item.path])
    return out


def _artifact_paths_from(stack: Stack, trial) -> list[str]:
    with _mlflow_login(stack):
        from mlflow.tracking import MlflowClient

        return sorted(_artifact_paths(MlflowClient(tracking_uri=stack.mlflow_uri), trial.user_attrs["mlflow_run_id"]))


def test_down_then_up_keeps_the_study_and_the_artifacts(stack):
    """`down` (volumes kept) with docker-compose 1.29 (v1) where installed, then `up` again (v2).

    v1 cannot `up` the test override: it refuses published ports on the host's network (v2 drops them),
    and an override cannot remove them; v1 runs the user's file as written (bridge network), which this
    engine (--bridge=none) cannot. ``test_compose.py`` checks v1 accepts the file and the override.
    """
    if not hasattr(stack, "artifacts"):
        pytest.skip("the sweep did not finish")
    import optuna

    stack.compose("down", "--timeout", "30", command=docker_stack.compose_v1(), timeout=300)
    assert not stack.containers("postgres") and not stack.containers("mlflow")
    stack.compose("up", "--detach", "--no-build", "--scale", "worker=2", timeout=900)
    study = _wait(lambda: _study(stack), 300, "the study after up", stack)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert {t.number: t.value for t in complete} == stack.values
    for trial in complete:  # the same artifacts, downloadable from the MLflow server's volume
        assert _artifact_paths_from(stack, trial) == stack.artifacts[trial.number]
    with _mlflow_login(stack):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=stack.mlflow_uri)
        checkpoint = next(p for p in stack.artifacts[complete[0].number] if p.endswith("checkpoint.pt"))
        local = client.download_artifacts(complete[0].user_attrs["mlflow_run_id"], checkpoint)
        assert Path(local).stat().st_size > 1000
    # The workers find the study's target reached and exit 0 (not restarted).
    _wait(lambda: not stack.containers("worker"), 300, "the workers' exit after up", stack)
    exits = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={stack.project}",
                            "--filter", "label=com.docker.compose.service=worker", "--format", "{{.Status}}"],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    assert all(line.startswith("Exited (0)") for line in exits if line), exits
    assert json.loads(json.dumps(stack.ports))  # the same ports: nothing else was reconfigured
