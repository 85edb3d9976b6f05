"""Distributed sweeps with real components: PostgreSQL, an `mlflow server`, `betasweep worker` subprocesses.

The servers are the session's (tests/servers.py); each test has its own study database and MLflow
experiment. Trials use a tiny budget on the real dSprites grid (seconds each). Nothing is mocked: workers
are killed with SIGKILL and PostgreSQL is restarted under them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from helpers import betasweep_command, invoke_betasweep, tiny_spec
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "8")
WORKER_TIMEOUT_S = 240  # generous: the CI machine has 2 shared cores


def _env() -> dict[str, str]:
    # One torch thread per worker: three workers share two cores.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


@dataclass
class Study:
    """A study created with `betasweep study create` in a fresh database, and its workers."""

    name: str
    storage: str
    tracking_uri: str
    directory: Path
    workers: list[Worker]

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.load().get_trials(deepcopy=False)

    def start_worker(self, *options: str) -> Worker:
        log = self.directory / f"worker-{len(self.workers)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*betasweep_command(), "worker", "--study", self.name, "--storage", self.storage,
                 "--tracking-uri", self.tracking_uri, "--no-progress", *HEARTBEAT, *options],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory, env=_env(),
            )
        self.workers.append(Worker(process, log))
        return self.workers[-1]

    def wait_workers(self, timeout: float = WORKER_TIMEOUT_S) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for worker in self.workers:
            try:
                codes.append(worker.process.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker {worker.pid} still running after {timeout:.0f} s:\n"
                                     + self.logs()) from None
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.pid} (exit {w.process.poll()}):\n{w.output()[-3000:]}" for w in self.workers)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                worker.process.wait(timeout=30)


@pytest.fixture
def make_study(postgres_url, mlflow_server, dsprites_path, tmp_path):
    """`make_study(n_trials)`: a study on PostgreSQL with its MLflow parent run on the server; kills its workers after."""
    made: list[Study] = []

    def make(n_trials: int, *, cli: bool = False, **overrides) -> Study:
        name = f"dist-{secrets.token_hex(4)}"
        raw = tiny_spec(dsprites_path, name, n_trials, **overrides)
        if cli:  # the command (in this process: betasweep.cli.main), twice: the second finds the study (--exist-ok)
            spec_path = tmp_path / "spec.yaml"
            spec_path.write_text(yaml.safe_dump(raw))
            for _ in range(2):
                proc = invoke_betasweep("study", "create", spec_path, "--storage", postgres_url, "--tracking-uri",
                                        mlflow_server, "--exist-ok", cwd=tmp_path)
                assert proc.returncode == 0, proc.stderr[-3000:]
        else:  # the same function in this process (saves an interpreter start)
            from betasweep.sweeps.spec import parse_spec
            from betasweep.sweeps.study import create_study, make_storage
            from betasweep.tracking import Tracker

            create_study(parse_spec(raw), make_storage(postgres_url), Tracker(mlflow_server, name))
        made.append(Study(name, postgres_url, mlflow_server, tmp_path, []))
        return made[-1]

    try:
        yield make
    finally:
        for study in made:
            study.stop_all()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Poll ``predicate()`` until it returns something truthy (errors count as not yet: servers may be restarting)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as error:  # noqa: BLE001 (e.g. PostgreSQL restarting)
            value, last_error = None, error
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


def child_runs(study: Study) -> dict[int, list]:
    """The study's child runs on the server, by trial number."""
    client = MlflowClient(study.tracking_uri)
    experiment = client.get_experiment_by_name(study.name)
    parent = study.load().user_attrs["mlflow_parent_run_id"]
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                              max_results=1000)
    by_trial: dict[int, list] = {}
    for run in runs:
        by_trial.setdefault(int(run.data.tags["betasweep.trial"]), []).append(run)
    return by_trial


def assert_artifacts_readable_through_the_server(study: Study, run_id: str, dst: Path) -> None:
    import mlflow.artifacts

    from betasweep.training import load_checkpoint

    assert MlflowClient(study.tracking_uri).get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    checkpoint = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoint/checkpoint.pt",
                                                     tracking_uri=study.tracking_uri, dst_path=str(dst / run_id))
    model, state = load_checkpoint(checkpoint)
    assert state["samples_seen"] >= 800 and model.config.width == 8
    traversal = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="figures/traversal.png",
                                                    tracking_uri=study.tracking_uri, dst_path=str(dst / run_id))
    assert Path(traversal).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def assert_complete_trials_have_one_finished_run_with_artifacts(study: Study, trials, dst: Path) -> None:
    runs = child_runs(study)
    for trial in (t for t in trials if t.state == TrialState.COMPLETE):
        assert len(runs.get(trial.number, [])) == 1, f"trial {trial.number}: {len(runs.get(trial.number, []))} runs"
        run = runs[trial.number][0]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.info.status == "FINISHED" and run.data.metrics["score"] == pytest.approx(trial.value)
        assert_artifacts_readable_through_the_server(study, run.info.run_id, dst)


def retried_numbers(trials) -> set[int]:
    """Numbers of trials that some later trial retries (Optuna's heartbeat retry or a graceful stop's re-queue)."""
    retried = set()
    for trial in trials:
        retried.update(trial.system_attrs.get("retry_history", []))
        if "retried_from" in trial.user_attrs and trial.state != TrialState.FAIL:
            retried.add(trial.user_attrs["retried_from"])
    return retried


# ---------------------------------------------------------------------------------------------------------------


def test_three_workers_share_one_study_to_exactly_n_complete_trials(make_study, tmp_path):
    study = make_study(n_trials=5, cli=True)
    for _ in range(3):
        study.start_worker()  # the study-wide target defaults to the spec's n_trials
    codes = study.wait_workers()
    assert codes == [0, 0, 0], study.logs()

    trials = study.trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 5, study.logs()
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == 5
    assert len({t.user_attrs["worker"] for t in trials}) >= 2, "the workers did not share the study"
    runs = child_runs(study)
    assert sorted(runs) == numbers and all(len(r) == 1 for r in runs.values())
    assert_complete_trials_have_one_finished_run_with_artifacts(study, trials, tmp_path / "downloads")
    # the worker that saw the study reach its target ended the study's MLflow run
    parent = study.load().user_attrs["mlflow_parent_run_id"]
    assert MlflowClient(study.tracking_uri).get_run(parent).info.status == "FINISHED"
    # A worker that joins a finished study stops at once (here in this process: the same loop).
    from betasweep.sweeps.study import load_study, make_storage, run_trials
    from betasweep.tracking import Tracker

    loaded, spec = load_study(study.name, make_storage(study.storage))
    said: list[str] = []
    assert run_trials(loaded, spec, Tracker(study.tracking_uri, study.name), max_complete=5, echo=said.append)
    assert said == [f"study {study.name!r} has 5 complete trial(s): done"] and len(study.trials()) == 5
    # A retry queued after the target was reached (a trial started just before it) is owed: it still runs.
    loaded.enqueue_trial(trials[0].params, user_attrs={"retried_from": 0})
    assert run_trials(loaded, spec, Tracker(study.tracking_uri, study.name), max_complete=5, echo=said.append)
    after = study.trials()
    assert [t.state for t in after] == [TrialState.COMPLETE] * 6 and after[5].params == trials[0].params, said
    assert said[-1] == f"study {study.name!r} has 5 complete trial(s): done"


def test_a_worker_killed_mid_trial_has_its_trial_retried_and_its_run_ended(make_study, tmp_path):
    study = make_study(n_trials=4)
    for _ in range(3):
        study.start_worker()
    pids = {f":{w.pid}": w for w in study.workers}

    def running_trial_with_a_run():
        # In the middle of a trial: its MLflow run exists and it has trained for a moment.
        for trial in study.trials():
            worker = trial.user_attrs.get("worker", "")
            if trial.state == TrialState.RUNNING and "mlflow_run_id" in trial.user_attrs and worker[worker.rfind(":"):] in pids:
                if trial.datetime_start and time.time() - trial.datetime_start.timestamp() > 1.0:
                    return trial
        return None

    victim_trial = wait_for(running_trial_with_a_run, 180, "a RUNNING trial with its MLflow run")
    worker_id = victim_trial.user_attrs["worker"]
    victim = pids[worker_id[worker_id.rfind(":"):]]
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.process.wait(timeout=30) == -signal.SIGKILL

    others = [w for w in study.workers if w is not victim]
    for worker in others:
        assert worker.process.wait(timeout=WORKER_TIMEOUT_S) == 0, study.logs()

    trials = study.trials()
    killed = trials[victim_trial.number]
    assert killed.state == TrialState.FAIL, study.logs()
    retries = [t for t in trials if victim_trial.number in t.system_attrs.get("retry_history", [])]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE, [(t.number, t.state) for t in trials]
    assert retries[0].params == killed.params and retries[0].user_attrs["worker"] != worker_id
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]

    run = MlflowClient(study.tracking_uri).get_run(victim_trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "FAIL"
    assert "heartbeat" in run.data.tags["fail_reason"]
    assert_complete_trials_have_one_finished_run_with_artifacts(study, trials, tmp_path / "downloads")


def test_postgres_restarted_under_running_workers_leaves_a_consistent_study(make_study, postgres_server, tmp_path):
    study = make_study(n_trials=4)
    for _ in range(3):
        study.start_worker()
    wait_for(lambda: any(t.state == TrialState.COMPLETE for t in study.trials())
             and any(t.state == TrialState.RUNNING for t in study.trials()), 180,
             "a complete and a running trial")
    postgres_server.restart()

    codes = study.wait_workers()
    print(f"exit codes after the restart: {codes}")  # shown with -rP: recovered (0) or gave up (2)
    for worker, code in zip(study.workers, codes):
        output = worker.output()
        assert "Traceback" not in output, output[-3000:]
        if code != 0:  # gave up: one clear line saying what was lost
            last = output.strip().splitlines()[-1]
            assert code == 2 and last.startswith("betasweep: error: worker lost the study's database"), output[-3000:]
            assert postgres_server.password not in output

    # One more worker finishes the study: it fails the trials the others left RUNNING once their grace
    # period is over, runs their retries, and stops at the target.
    finisher = study.start_worker()
    assert finisher.process.wait(timeout=WORKER_TIMEOUT_S) == 0, study.logs()

    trials = study.trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 4, study.logs()
    assert TrialState.RUNNING not in states  # no orphan after the grace period
    retried = retried_numbers(trials)
    assert not [t.number for t in trials if t.number in retried and t.state == TrialState.COMPLETE]
    assert_complete_trials_have_one_finished_run_with_artifacts(study, trials, tmp_path / "downloads")


def test_sqlite_with_several_workers_warns_and_names_postgresql(dsprites_path, tmp_path):
    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage, warn_if_shared_sqlite
    from betasweep.tracking import Tracker

    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = parse_spec(tiny_spec(dsprites_path, "lonely", 1))
    study = create_study(spec, make_storage(url), Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "lonely"))
    messages: list[str] = []
    assert not warn_if_shared_sqlite(url, study, worker=False, echo=messages.append)  # one `sweep` process
    assert warn_if_shared_sqlite(url, study, worker=True, echo=messages.append)
    assert len(messages) == 1 and "PostgreSQL" in messages[0] and "postgresql+psycopg://" in messages[0]
    assert not warn_if_shared_sqlite("postgresql+psycopg://u:p@h/db", study, worker=True, echo=messages.append)
    # The command prints it too (and then runs its one trial); in this process, betasweep.cli.main.
    proc = invoke_betasweep("worker", "--study", "lonely", "--storage", url, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: SQLite storage is for one process; for several workers use PostgreSQL" in proc.stderr


def test_an_unreachable_tracking_server_is_reported_within_seconds():
    from betasweep.tracking import Tracker, TrackingError

    start = time.monotonic()
    with pytest.raises(TrackingError, match="not reachable"):
        Tracker("http://127.0.0.1:9", "nowhere")
    assert time.monotonic() - start < 10


def test_a_server_that_refuses_this_host_name_says_to_allow_it(mlflow_server):
    """MLflow 3 answers /health to anyone but 403 to API requests whose Host is not allowed: `127.1` is
    127.0.0.1 to the resolver but not among the server's default allowed hosts."""
    from betasweep.tracking import Tracker, TrackingError

    port = mlflow_server.rsplit(":", 1)[1]
    start = time.monotonic()
    with pytest.raises(TrackingError, match="--allowed-hosts") as error:
        Tracker(f"http://127.1:{port}", "refused")
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in str(error.value) and "127.1" in str(error.value)
    assert time.monotonic() - start < 15
    Tracker(mlflow_server, "allowed")  # the same server by its allowed name
