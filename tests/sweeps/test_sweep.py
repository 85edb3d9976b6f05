"""Sweeps end to end on the real dSprites grid: the real `betasweep` command, SQLite study, local MLflow store."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from betasweep.sweeps.spec import parse_spec
from betasweep.sweeps.study import create_study, make_storage, run_trials
from betasweep.tracking import Tracker

import helpers
from helpers import run_betasweep


INTERMEDIATE = {"num_train": 60, "num_eval": 30, "batch_size": 8, "at": [0.5]}


def tiny_spec(dsprites_path, **overrides):
    """helpers.tiny_spec with a cheap intermediate score (so pruning reports are exercised)."""
    spec = helpers.tiny_spec(dsprites_path, **overrides)
    spec["metric"] = {**spec["metric"], "intermediate": INTERMEDIATE}
    return spec


def betasweep(*args, cwd, check=True):
    """``betasweep ARGS`` in this process (``betasweep.cli.main``): a subprocess would add seconds of imports to
    each call; tests/test_cli.py runs the console script for every command, test_methods_sweep.py a real sweep."""
    return helpers.invoke_betasweep(*args, cwd=cwd, check=check)


def run_sweep(directory, spec):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = betasweep("sweep", "spec.yaml", "--no-progress", cwd=directory)
    storage = f"sqlite:///{directory / 'betasweep.db'}"
    study = optuna.load_study(study_name=spec["study"], storage=storage)
    return study, proc, f"sqlite:///{directory / 'mlflow.db'}", storage


@pytest.fixture(scope="module")
def swept(dsprites_path, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    study, proc, tracking_uri, storage = run_sweep(directory, tiny_spec(dsprites_path))
    return directory, study, proc, tracking_uri, storage


def test_three_trials_three_child_runs_with_artifacts(swept):
    _, study, proc, tracking_uri, _ = swept
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 3
    by_trial = {int(run.data.tags["betasweep.trial"]): run for run in children}
    for trial in trials:
        run = by_trial[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id  # linked both ways
        assert run.info.status == "FINISHED" and run.data.tags["betasweep.study"] == "tiny"
        assert float(run.data.params["beta"]) == pytest.approx(trial.params["beta"])
        for key in ("beta_norm", "seed", "dataset", "latent_dim", "width", "batch_size"):
            assert key in run.data.params
        assert run.data.metrics["score"] == pytest.approx(trial.value)
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 5  # 50 steps, a record per 10
        assert "intermediate_score" in run.data.metrics and "kl_dim_0" in run.data.metrics
        artifacts = {f.path for folder in ("checkpoint", "figures") for f in client.list_artifacts(run.info.run_id, folder)}
        assert {"checkpoint/checkpoint.pt", "figures/traversal.png", "figures/reconstruction.png",
                "figures/kl_per_dim.png"} <= artifacts
        for key in ("recon_loss", "kl", "kl_per_dim", "active_units", "beta_norm", "wall_time_s", "train_accuracy"):
            assert key in trial.user_attrs
    summary = json.loads(proc.stdout)
    assert summary["best_trial"] == study.best_trial.number


def test_the_same_sweep_again_gives_the_same_params_and_scores(swept, dsprites_path, tmp_path):
    _, study, _, _, _ = swept
    again, _, _, _ = run_sweep(tmp_path / "again", tiny_spec(dsprites_path))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert [t.value for t in again.trials] == [t.value for t in study.trials]


def test_report_names_optunas_best_trial_and_registers_it(swept):
    directory, study, _, tracking_uri, storage = swept
    proc = betasweep("report", "--study", "tiny", "--storage", storage, "--tracking-uri", tracking_uri,
                     "--out", str(directory / "report.html"), cwd=directory)
    assert f"best trial #{study.best_trial.number}:" in proc.stdout
    page = (directory / "report.html").read_text()
    assert "Score vs β" in page and "Parameter importances" in page and "<script src=" not in page
    client = MlflowClient(tracking_uri)
    version = client.get_model_version_by_alias("betasweep-tiny", "best")
    assert version.run_id == study.best_trial.user_attrs["mlflow_run_id"]
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert [f.path for f in client.list_artifacts(parent, "report")] == ["report/report.html"]


def test_evaluate_on_the_logged_best_checkpoint_reproduces_its_score(swept):
    directory, study, _, tracking_uri, _ = swept
    run_id = study.best_trial.user_attrs["mlflow_run_id"]
    proc = betasweep("evaluate", f"runs:/{run_id}/checkpoint", "--data-from-checkpoint", "--tracking-uri", tracking_uri,
                     "--num-train", "300", "--num-eval", "150", "--metric-batch-size", "16", cwd=directory)
    assert json.loads(proc.stdout)["eval_accuracy"] == study.best_trial.value


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(dsprites_path, tmp_path):
    raw = tiny_spec(dsprites_path, study="diverge", search_space={"learning_rate": [0.001, 1000.0]})
    del raw["fixed"]["learning_rate"]
    spec = parse_spec(raw)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(tracking_uri, spec.study)
    study = create_study(spec, make_storage(f"sqlite:///{tmp_path / 'study.db'}", tracking_uri=tracking_uri), tracker)
    study.enqueue_trial({"learning_rate": 1000.0})
    study.enqueue_trial({"learning_rate": 0.001})
    run_trials(study, spec, tracker, n_trials=2, progress=False)
    failed, complete = study.trials
    assert failed.state == optuna.trial.TrialState.FAIL and complete.state == optuna.trial.TrialState.COMPLETE
    assert "diverged" in failed.user_attrs["fail_reason"] and "step" in failed.user_attrs["fail_reason"]
    run = MlflowClient(tracking_uri).get_run(failed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["fail_reason"]


def test_an_invalid_spec_exits_2_and_creates_no_study(dsprites_path, tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(tiny_spec(dsprites_path, search_space={"beta": [-1.0, 2.0]})))
    proc = helpers.invoke_betasweep("sweep", "bad.yaml", cwd=tmp_path)  # in-process: refused before any work
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["betasweep: error: search_space.beta: beta must be > 0, got -1.0"]
    assert not (tmp_path / "betasweep.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_unreachable_tracking_server_fails_fast(dsprites_path, tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(tiny_spec(dsprites_path)))
    proc = run_betasweep("sweep", "s.yaml", "--tracking-uri", "http://127.0.0.1:9", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not reachable" in proc.stderr and "Traceback" not in proc.stderr


def test_reseed_ranks_the_top_configuration_by_mean_over_seeds(swept):
    directory, study, _, tracking_uri, storage = swept
    proc = betasweep("report", "--study", "tiny", "--storage", storage, "--tracking-uri", tracking_uri, "--no-register",
                     "--reseed", "1", "--reseed-top", "1", "--out", str(directory / "reseed.html"), cwd=directory)
    assert "retrained with more seeds" in proc.stdout
    best = study.best_trial
    line = next(row for row in proc.stdout.splitlines() if row.strip().startswith(str(best.number)) and "0 1" in row)
    assert "mean_score" in proc.stdout and line
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tiny")
    reseeded = client.search_runs([experiment.experiment_id], filter_string="tags.`betasweep.reseed` = '1'")
    assert len(reseeded) == 1 and reseeded[0].data.tags["betasweep.trial"] == str(best.number)
    assert reseeded[0].data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]


def test_two_objective_study_reports_a_pareto_front(dsprites_path, tmp_path):
    from betasweep.sweeps.report import best_trial, write_report

    raw = tiny_spec(dsprites_path, study="pareto", n_trials=2, second_objective="recon_loss",
                    sampler={"name": "nsgaii", "seed": 0}, pruner={"name": "none"})
    spec = parse_spec(raw)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(tracking_uri, spec.study)
    study = create_study(spec, make_storage(f"sqlite:///{tmp_path / 'study.db'}", tracking_uri=tracking_uri), tracker)
    run_trials(study, spec, tracker, n_trials=2, progress=False)
    assert [len(t.values) for t in study.trials] == [2, 2]
    assert all(t.values[1] == pytest.approx(t.user_attrs["recon_loss"]) for t in study.trials)
    assert best_trial(study) in study.best_trials
    page = write_report(study, spec, tmp_path / "pareto.html").read_text()
    assert "Pareto front" in page and "not available" not in page.split("Pareto front")[1][:300]
