"""Workers behind `betasweep storage-proxy` (Optuna's gRPC proxy) in front of a real PostgreSQL.

Optuna's gRPC client has no heartbeats; betasweep keeps them as a trial system attribute written
through the proxy (betasweep/sweeps/proxy.py). Here: the stale-trial rule on an in-process proxy,
then three real workers on a real proxy and PostgreSQL, one of them killed with SIGKILL mid-trial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from helpers import betasweep_command
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from test_distributed import WORKER_TIMEOUT_S, _env, child_runs, make_study, wait_for  # noqa: F401  (a fixture)

HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "8")


@pytest.fixture
def proxy(postgres_url):
    """`betasweep storage-proxy` on a free port in front of this test's PostgreSQL database; its grpc:// URL."""
    process = subprocess.Popen([*betasweep_command(), "storage-proxy", "--storage", postgres_url, "--port", "0",
                                "--threads", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env())
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("grpc://127.0.0.1:"), process.stderr.read() if process.poll() is not None else url
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "storage proxy stopped" in process.stderr.read()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_without_heartbeat_for_the_grace_period_is_failed_and_retried_through_the_proxy(tmp_path):
    from betasweep.sweeps.proxy import HEARTBEAT_ATTR, make_proxy_server
    from betasweep.sweeps.study import make_storage

    server, port = make_proxy_server(f"sqlite:///{tmp_path / 'study.db'}", host="127.0.0.1", port=0, threads=2)
    server.start()
    try:
        storage = make_storage(f"grpc://127.0.0.1:{port}", heartbeat_interval=1, grace_period=3)
        study = optuna.create_study(study_name="proxied", storage=storage)
        alive, dead = study.ask(), study.ask()
        for trial in (alive, dead):
            trial.suggest_float("beta", 0.5, 8.0, log=True)
            storage.record_heartbeat(trial._trial_id)
        assert storage._get_stale_trial_ids(study._study_id) == []  # both beat just now
        storage.set_trial_system_attr(dead._trial_id, HEARTBEAT_ATTR, time.time() - 4)  # its worker died 4 s ago
        optuna.storages.fail_stale_trials(study)

        trials = study.get_trials(deepcopy=False)
        assert [t.state for t in trials[:2]] == [TrialState.RUNNING, TrialState.FAIL]
        (retry,) = trials[2:]  # queued again with the dead trial's params
        assert retry.state == TrialState.WAITING and retry.params == trials[1].params
        assert retry.system_attrs["retry_history"] == [dead.number]
        # The next trial any worker asks for is the retry.
        assert study.ask().number == retry.number
    finally:
        server.stop(grace=None)


def test_a_closed_proxy_port_is_one_error_line(tmp_path):
    from betasweep.errors import ConfigError
    from betasweep.sweeps.study import make_storage

    with pytest.raises(ConfigError, match=r"grpc://127.0.0.1:9: no storage proxy answers there"):
        make_storage("grpc://127.0.0.1:9")
    with pytest.raises(ConfigError, match="expected grpc://HOST:PORT"):
        make_storage("grpc://nohost")


def test_three_workers_behind_the_proxy_finish_the_study_and_retry_a_killed_workers_trial(make_study, proxy, tmp_path):
    study = make_study(n_trials=4)  # created on the database itself; the workers reach it only through the proxy
    workers = []
    for i in range(3):
        log = tmp_path / f"worker-{i}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([*betasweep_command(), "worker", "--study", study.name, "--storage", proxy,
                                        "--tracking-uri", study.tracking_uri, "--no-progress", *HEARTBEAT],
                                       stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env())
        workers.append((process, log))
    logs = lambda: "\n".join(f"--- {p.pid} ({p.poll()}):\n{log.read_text()[-2000:]}" for p, log in workers)  # noqa: E731

    def running_trial():
        for trial in study.trials():
            if (trial.state == TrialState.RUNNING and "mlflow_run_id" in trial.user_attrs
                    and time.time() - trial.datetime_start.timestamp() > 1):
                return trial
        return None

    try:
        victim_trial = wait_for(running_trial, 180, "a RUNNING trial with its MLflow run")
        pid = int(victim_trial.user_attrs["worker"].rsplit(":", 1)[1])
        victim = next(p for p, _ in workers if p.pid == pid)
        os.kill(pid, signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        for process, _ in workers:
            if process is not victim:
                assert process.wait(timeout=WORKER_TIMEOUT_S) == 0, logs()
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait()

    trials = study.trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # Behind the proxy the study-wide target has no lock (PostgreSQL's advisory lock needs a connection):
    # it is reached, and rarely passed by a trial two workers started at the same moment.
    assert 4 <= len(complete) <= 5, [(t.number, t.state) for t in trials]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params), f"duplicated params: {params}"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], logs()

    killed = trials[victim_trial.number]
    assert killed.state == TrialState.FAIL
    # Its retry ran to the end; on a loaded machine a retry can miss its own heartbeats and be retried
    # in turn (Optuna's retry_history then lists the whole chain): the chain ends in one COMPLETE trial.
    chain = [t for t in trials if victim_trial.number in t.system_attrs.get("retry_history", [])]
    (retry,) = [t for t in chain if t.state == TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL for t in chain if t is not retry), [(t.number, t.state) for t in chain]
    assert retry.params == killed.params
    assert retry.user_attrs["worker"] != killed.user_attrs["worker"]
    run = MlflowClient(study.tracking_uri).get_run(killed.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and "heartbeat" in run.data.tags["fail_reason"]
    runs = child_runs(study)
    assert all(runs[t.number][0].info.status == "FINISHED" for t in complete)
