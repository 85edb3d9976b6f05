"""Outages as tests (issue 22): a real `mlflow server` killed for 60 s while a trial trains, and down while a
study is created. Real PostgreSQL and MLflow (tests/servers.py). The workers that live through an outage are
`betasweep worker` subprocesses; the commands around them (`study create`, a worker after the outage) run
in-process (`betasweep.cli.main`, as the console script), each a subprocess's seconds of imports less. The 60-s
outage runs on a thread from the module's start (:class:`Outage`), so the other tests run while its worker waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from helpers import betasweep_command, invoke_betasweep, tiny_spec
from servers import MlflowServer

OUTAGE_S = 60


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("BETASWEEP_STORAGE", None)
    env.update(extra)
    return env


def kill_server(server: MlflowServer) -> None:
    """SIGKILL the server's whole process group (no graceful shutdown), as a crashed container."""
    process, server.process = server.process, None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def in_process(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``betasweep ARGS`` in this process (:func:`helpers.invoke_betasweep`), without ``BETASWEEP_STORAGE``: for the
    commands that are not the outage's subject (a subprocess would spend its seconds importing torch and mlflow)."""
    return invoke_betasweep(*args, cwd=cwd, env={"BETASWEEP_STORAGE": None})


def _mlflow(postgres_server, root: Path, *, start: bool = True) -> MlflowServer:
    server = MlflowServer(postgres_server.create_database(f"mlflow_{secrets.token_hex(4)}"), root / "artifacts",
                          log_file=root / "mlflow.log")
    if start:
        server.start()
    return server


def _assert_trials_logged(study: optuna.Study, tracking_uri: str, n: int) -> None:
    """``n`` COMPLETE trials, each with its MLflow run FINISHED, its final metrics and its artifacts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == n, [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in study.trials]
    for trial in complete:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED", (trial.number, run.info.status)
        assert run.data.metrics["score"] == pytest.approx(trial.value)
        assert "beta_vae" in run.data.metrics and "loss" in run.data.metrics
        listed = {a.path for folder in ("checkpoint", "figures") for a in client.list_artifacts(run.info.run_id, folder)}
        assert {"checkpoint/checkpoint.pt", "figures/traversal.png", "figures/reconstruction.png"} <= listed, listed


class Outage:
    """The 60-s outage's scenario, run on a thread beside the module's other tests: a worker trains trial 0 of 2
    while its `mlflow server` is SIGKILLed for ``OUTAGE_S`` seconds, then started again on the same port.

    This process only waits through the outage (the worker is blocked on MLflow), so the fixture
    :func:`outage_60s` starts it before the module's first test and the other tests run meanwhile;
    :func:`test_mlflow_killed_for_60_s_while_a_trial_trains`, last in the file, waits for it and checks the outcome.
    """

    def __init__(self, postgres_server, dsprites_path, root: Path):
        self.root, self.name = root, f"outage-{secrets.token_hex(3)}"
        self.storage = postgres_server.create_database(f"t_outage_60_s_{secrets.token_hex(3)}")
        self.server = _mlflow(postgres_server, root)
        (root / "spec.yaml").write_text(yaml.safe_dump(tiny_spec(dsprites_path, self.name, n_trials=2,
                                                                 train_samples=3200)))
        created = in_process("study", "create", root / "spec.yaml", "--storage", self.storage, "--tracking-uri",
                             self.server.uri, cwd=root)
        assert created.returncode == 0, created.stderr[-2000:]
        self.log = open(root / "worker.log", "w")
        self.worker = subprocess.Popen([*betasweep_command(), "worker", "--study", self.name, "--storage", self.storage,
                                        "--no-progress", "--heartbeat-interval", "5", "--grace-period", "30"],
                                       stdout=self.log, stderr=subprocess.STDOUT, env=_env(), cwd=root)
        # the restart's environment, taken now: in-process commands of the other tests swap os.environ meanwhile
        self.env = dict(os.environ)
        self.victim: optuna.trial.FrozenTrial | None = None
        self.alive_after_outage: bool | None = None
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mlflow-outage", daemon=True)
        self.thread.start()

    def said(self) -> str:
        return (self.root / "worker.log").read_text()

    def _run(self) -> None:
        try:
            study = optuna.load_study(study_name=self.name, storage=self.storage)
            deadline = time.monotonic() + 300
            while not any(t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                          and time.time() - t.datetime_start.timestamp() > 3 for t in study.get_trials(deepcopy=False)):
                if self.worker.poll() is not None or time.monotonic() > deadline or self.stopped.is_set():
                    return  # no victim: the test says so
                time.sleep(0.2)
            self.victim = next(t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING)
            kill_server(self.server)
            if self.stopped.wait(OUTAGE_S):
                return
            self.alive_after_outage = self.worker.poll() is None
            self.server.start(env=self.env)
        except BaseException as error:  # noqa: BLE001 - raised again by the test
            self.error = error

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=150)
        if self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()
        self.log.close()
        self.server.stop()


@pytest.fixture(scope="module", autouse=True)
def outage_60s(request, postgres_server, dsprites_path, tmp_path_factory):
    """The :class:`Outage`, started before the module's first test when the 60-s outage test is selected (None
    otherwise; the exception if starting it failed, raised by that test alone)."""
    if not any(item.name == "test_mlflow_killed_for_60_s_while_a_trial_trains" for item in request.session.items):
        yield None
        return
    try:
        outage = Outage(postgres_server, dsprites_path, tmp_path_factory.mktemp("outage-60-s"))
    except Exception as error:  # noqa: BLE001 - the 60-s test reports it; the other tests run
        yield error
        return
    try:
        yield outage
    finally:
        outage.close()


def test_study_create_with_mlflow_down_then_up_gives_a_working_study(postgres_server, postgres_url, dsprites_path,
                                                                     tmp_path, monkeypatch):
    from betasweep.sweeps.spec import load_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker, TrackingUnavailable

    server = _mlflow(postgres_server, tmp_path, start=False)  # down from the start: never started on its port yet
    name = f"repair-{secrets.token_hex(3)}"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(dsprites_path, name, n_trials=1)))
    command = ("study", "create", spec_path, "--storage", postgres_url, "--tracking-uri", server.uri)
    try:
        # down from the start: one line, nothing written
        down = in_process(*command, cwd=tmp_path)
        lines = down.stderr.strip().splitlines()
        assert down.returncode == 2 and len(lines) == 1 and "not reachable" in lines[0], down.stderr[-2000:]
        assert optuna.get_all_study_summaries(postgres_url) == []

        # down between the study and its parent run (the tracker was made while it was up)
        server.start()
        tracker = Tracker(server.uri, name)
        kill_server(server)
        monkeypatch.setenv("BETASWEEP_MLFLOW_RETRY_S", "2")
        with pytest.raises(TrackingUnavailable):
            create_study(load_spec(spec_path), make_storage(postgres_url), tracker)
        half = optuna.load_study(study_name=name, storage=postgres_url)
        assert "spec" in half.user_attrs and "mlflow_parent_run_id" not in half.user_attrs

        # up again: the same command completes the study; --exist-ok then finds it whole
        server.start()
        repaired = in_process(*command, cwd=tmp_path)
        assert repaired.returncode == 0, repaired.stderr[-2000:]
        parent = json.loads(repaired.stdout)["mlflow_parent_run_id"]
        assert parent
        again = in_process(*command, "--exist-ok", cwd=tmp_path)
        assert again.returncode == 0 and json.loads(again.stdout)["mlflow_parent_run_id"] == parent, again.stderr
        worked = in_process("worker", "--study", name, "--storage", postgres_url, "--no-progress", cwd=tmp_path)
        assert worked.returncode == 0, worked.stderr[-3000:]
        _assert_trials_logged(optuna.load_study(study_name=name, storage=postgres_url), server.uri, 1)
    finally:
        server.stop()


@pytest.mark.slow
def test_mlflow_down_past_the_retry_budget_queues_the_trial_which_resumes(postgres_server, postgres_url,
                                                                           dsprites_path, tmp_path):
    """The server stays down longer than BETASWEEP_MLFLOW_RETRY_S (2 s here): the trial ends FAIL and is queued
    again, the worker exits with one line; with the server back, a worker runs the retry, which resumes from the
    failed attempt's checkpoint (a shared --checkpoint-dir) and ends the failed attempt's run left RUNNING."""
    from mlflow.tracking import MlflowClient

    server = _mlflow(postgres_server, tmp_path)
    name = f"budget-{secrets.token_hex(3)}"
    spec = tiny_spec(dsprites_path, name, n_trials=1, train_samples=3200)
    spec["fixed"] = {**spec["fixed"], "checkpoint_every": 20}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert in_process("study", "create", tmp_path / "spec.yaml", "--storage", postgres_url, "--tracking-uri",
                      server.uri, cwd=tmp_path).returncode == 0
    worker_args = [*betasweep_command(), "worker", "--study", name, "--storage", postgres_url, "--no-progress",
                   "--checkpoint-dir", str(tmp_path / "checkpoints")]
    first = subprocess.Popen(worker_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(BETASWEEP_MLFLOW_RETRY_S="2"), cwd=tmp_path)
    try:
        study = optuna.load_study(study_name=name, storage=postgres_url)
        deadline = time.monotonic() + 300
        while not any(t.state == TrialState.RUNNING and (t.user_attrs.get("checkpoint_steps") or {}).get("0")
                      for t in study.get_trials(deepcopy=False)):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.2)
        kill_server(server)
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    lines = err.strip().splitlines()
    assert first.returncode == 2 and lines[-1].startswith("betasweep: error: MLflow unreachable"), err[-3000:]
    assert "Traceback" not in err and "queued again" in err, err[-3000:]
    failed = study.trials[0]
    assert failed.state == TrialState.FAIL and study.trials[1].state == TrialState.WAITING

    server.start()
    try:
        second = in_process(*worker_args[len(betasweep_command()):], cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        study = optuna.load_study(study_name=name, storage=postgres_url)
        retry = study.trials[1]
        assert retry.state == TrialState.COMPLETE and retry.user_attrs["attempt_of"] == failed.number
        assert retry.user_attrs["resumed"]["0"]["step"] >= 20, retry.user_attrs["resumed"]
        assert f"resuming at step {retry.user_attrs['resumed']['0']['step']}" in second.stderr
        client = MlflowClient(server.uri)
        assert client.get_run(failed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
        _assert_trials_logged(study, server.uri, 1)
    finally:
        server.stop()


@pytest.mark.slow
def test_mlflow_killed_for_60_s_while_a_trial_trains(outage_60s):
    """Killed for 60 s while trial 0 trains, then back: the worker lives through it and logs both trials. The
    scenario ran beside the tests above (:class:`Outage`); here its outcome."""
    outage = outage_60s
    if isinstance(outage, Exception):
        raise outage
    outage.thread.join(timeout=300 + OUTAGE_S + 150)
    assert not outage.thread.is_alive(), "the outage's thread did not finish\n" + outage.said()[-3000:]
    if outage.error is not None:
        raise outage.error
    assert outage.victim is not None, "no trial started training\n" + outage.said()[-3000:]
    assert outage.alive_after_outage, outage.said()[-3000:]
    assert outage.worker.wait(timeout=600) == 0, outage.said()[-3000:]
    # the server stays up to read the runs back
    study = optuna.load_study(study_name=outage.name, storage=outage.storage)
    _assert_trials_logged(study, outage.server.uri, 2)
    said = outage.said()
    assert "Traceback" not in said, said[-3000:]
    # the interrupted trial completed, or was retried (then its retry resumed it)
    retried = [t for t in study.trials if t.user_attrs.get("attempt_of") == outage.victim.number]
    assert study.trials[outage.victim.number].state == TrialState.COMPLETE or retried, said[-3000:]
