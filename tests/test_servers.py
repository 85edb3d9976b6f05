"""The server fixtures run the real thing: an Optuna study on PostgreSQL, MLflow runs and artifacts through
`mlflow server`, and a PostgreSQL restart under a live storage."""

from __future__ import annotations

import optuna
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

pytest_plugins = ["servers"]


def _storage(url: str) -> RDBStorage:
    # pool_pre_ping: Optuna sets it only for MySQL; without it the first query after a PostgreSQL restart
    # fails on a dead pooled connection.
    return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=1, grace_period=3,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))


def _objective(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -1.0, 1.0) - 0.25) ** 2


def test_optuna_study_on_postgres_survives_a_restart(postgres_server, postgres_url):
    assert postgres_url.startswith(f"postgresql+psycopg://betasweep:{postgres_server.password}@127.0.0.1:")
    study = optuna.create_study(study_name="s", storage=_storage(postgres_url),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=3)

    reloaded = optuna.load_study(study_name="s", storage=_storage(postgres_url))
    assert [t.number for t in reloaded.trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in reloaded.trials)
    assert [t.params for t in reloaded.trials] == [t.params for t in study.trials]

    port = postgres_server.port
    postgres_server.restart()
    assert postgres_server.port == port and postgres_server.is_running()
    study.optimize(_objective, n_trials=2)  # the same storage object, its pooled connections now dead
    assert [t.state for t in optuna.load_study(study_name="s", storage=_storage(postgres_url)).trials] == (
        [TrialState.COMPLETE] * 5)


def test_mlflow_server_holds_runs_and_proxies_artifacts(mlflow_server, tmp_path):
    assert mlflow_server.startswith("http://127.0.0.1:")
    client = MlflowClient(tracking_uri=mlflow_server)  # no global tracking URI to leak into other tests
    experiment_id = client.create_experiment("test-servers")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "beta", "4.0")
    client.log_metric(run.info.run_id, "higgins_eval_accuracy", 0.75, step=1)
    (tmp_path / "note.txt").write_text("traversal goes here\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"), artifact_path="figures")
    client.set_terminated(run.info.run_id, "FINISHED")

    stored = client.get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"beta": "4.0"}
    assert stored.data.metrics == {"higgins_eval_accuracy": 0.75}
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: clients need no storage
    local = download_artifacts(run_id=run.info.run_id, artifact_path="figures/note.txt",
                               dst_path=str(tmp_path / "back"), tracking_uri=mlflow_server)
    assert open(local).read() == "traversal goes here\n"
