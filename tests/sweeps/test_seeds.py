"""Seeds inside every trial, end to end on the real dSprites grid through the `betasweep` command (in this process:
``betasweep.cli.main``, what the console script calls; tests/test_cli.py runs the script for every command)."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

import helpers

PANEL_VALUES = ("beta_vae", "factor_vae", "mig", "sap")


def seeded_spec(dsprites_path, **overrides):
    """Two trials (β 1 and 4, a grid) of two seeds each, tiny budgets, a cheap intermediate score."""
    spec = helpers.tiny_spec(dsprites_path, study="seeded", n_trials=2, search_space={"beta": [1.0, 4.0]},
                             sampler={"name": "grid", "seed": 0}, seeds_per_trial=2)
    spec["fixed"] = {**spec["fixed"], "latent_dim": 4}
    spec["metric"] = {**spec["metric"], "intermediate": {"num_train": 60, "num_eval": 30, "batch_size": 8, "at": [0.5]}}
    spec.update(overrides)
    return spec


@pytest.fixture(scope="module")
def seeded(dsprites_path, tmp_path_factory):
    directory = tmp_path_factory.mktemp("seeded")
    (directory / "spec.yaml").write_text(yaml.safe_dump(seeded_spec(dsprites_path)))
    helpers.invoke_betasweep("sweep", "spec.yaml", "--no-progress", cwd=directory, check=True)
    study = optuna.load_study(study_name="seeded", storage=f"sqlite:///{directory / 'betasweep.db'}")
    return directory, study, f"sqlite:///{directory / 'mlflow.db'}"


def test_a_trial_returns_the_mean_of_its_seeds_and_records_each(seeded):
    _, study, tracking_uri = seeded
    client = MlflowClient(tracking_uri)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(t.params["beta"] for t in trials) == [1.0, 4.0]
    for trial in trials:
        seeds, per_seed = trial.user_attrs["seeds"], trial.user_attrs["per_seed"]
        assert len(seeds) == 2 and seeds[0] != seeds[1] and [m["seed"] for m in per_seed] == seeds
        objective = [m["beta_vae"] for m in per_seed]
        assert trial.value == pytest.approx(np.mean(objective))
        assert trial.user_attrs["beta_vae_se"] == pytest.approx(np.std(objective, ddof=1) / math.sqrt(2))
        for key in PANEL_VALUES:
            assert trial.user_attrs[key] == pytest.approx(np.mean([m[key] for m in per_seed]))
        # The pruner's axis counts samples over seeds: seed 0 at half its budget, then seed 1 at half its own.
        assert sorted(trial.intermediate_values) == [400, 1200]
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        cheap = [client.get_metric_history(run.info.run_id, f"seed-{i}/intermediate_score")[0].value for i in (0, 1)]
        assert trial.intermediate_values[400] == pytest.approx(cheap[0])
        assert trial.intermediate_values[1200] == pytest.approx(np.mean(cheap))
        # One run holds both seeds: their checkpoints and figures, their curves and values, and the means.
        artifacts = {f.path for i in (0, 1) for folder in ("checkpoint", "figures")
                     for f in client.list_artifacts(run.info.run_id, f"seed-{i}/{folder}")}
        assert {"seed-0/checkpoint/checkpoint.pt", "seed-1/checkpoint/checkpoint.pt",
                "seed-0/figures/traversal.png", "seed-1/figures/kl_per_dim.png"} <= artifacts
        assert len(client.get_metric_history(run.info.run_id, "seed-1/loss")) == 5
        for key in PANEL_VALUES:
            assert run.data.metrics[key] == pytest.approx(trial.user_attrs[key])
            assert run.data.metrics[f"seed-1/{key}"] == pytest.approx(per_seed[1][key])
        assert run.data.metrics["score"] == pytest.approx(trial.value) and run.data.params["seeds_per_trial"] == "2"


def test_evaluate_reproduces_a_logged_seeds_panel_values(seeded):
    directory, study, tracking_uri = seeded
    trial = study.best_trial
    proc = helpers.invoke_betasweep("evaluate", f"runs:/{trial.user_attrs['mlflow_run_id']}/seed-1/checkpoint", "--data-from-checkpoint",
                         "--tracking-uri", tracking_uri, "--num-train", "300", "--num-eval", "150",
                         "--metric-batch-size", "16", cwd=directory, check=True)
    scored = json.loads(proc.stdout)
    logged = trial.user_attrs["per_seed"][1]
    for key in PANEL_VALUES:
        assert scored[key] == pytest.approx(logged[key], abs=1e-9), key
    assert scored["active_units"] == logged["active_units"]


def test_report_prints_the_verdict_and_mean_and_se_per_configuration(seeded):
    directory, study, tracking_uri = seeded
    proc = helpers.invoke_betasweep("report", "--study", "seeded", "--storage", f"sqlite:///{directory / 'betasweep.db'}",
                         "--tracking-uri", tracking_uri, "--out", str(directory / "r.html"), "--rank-by", "mig",
                         cwd=directory, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "verdict:" and lines[1].startswith("  Best configuration by mig: ")
    assert "β > 1 vs β <= 1" in proc.stdout and "Welch" in proc.stdout
    assert "configurations, mean ± SE over seeds (ranked by mig):" in proc.stdout
    best_mig = max(study.trials, key=lambda t: t.user_attrs["mig"])
    assert f"trial #{best_mig.number} (beta={best_mig.params['beta']:.3g})" in lines[1]
    # The configurations table prints β to 3 significant digits, as the verdict does.
    table = lines[lines.index("configurations, mean ± SE over seeds (ranked by mig):") + 1:]
    betas = {f"{t.params['beta']:.3g}" for t in study.trials}
    assert all(any(b in row.split() for b in betas) for row in table[1:1 + len(study.trials)]), table
    assert not any(repr(t.params["beta"]) in proc.stdout.split("configurations")[1].split("best trial")[0]
                   for t in study.trials if len(repr(t.params["beta"])) > 5)
    client = MlflowClient(tracking_uri)  # the registered model is the best trial's best seed's checkpoint
    version = client.get_model_version_by_alias("betasweep-seeded", "best")
    assert version.source.endswith(study.best_trial.user_attrs["best_seed_checkpoint"])
    assert "Verdict" in (directory / "r.html").read_text()


@pytest.mark.parametrize(
    ("metric", "seeds", "message"),
    [
        ({"objective": "elbo"}, 1, "metric.objective: unknown objective 'elbo'; expected one of beta_vae, "),
        ({"panel": ["beta_vae", "mce"]}, 1, "metric.panel: unknown metric 'mce'; expected some of "),
        ({"objective": "udr"}, 1, "metric.objective: udr compares the models of a trial's seeds; "
                                  "it needs seeds_per_trial >= 2, got 1"),
    ],
)
def test_a_bad_objective_or_panel_is_refused_before_any_study_exists(dsprites_path, tmp_path, metric, seeds, message):
    spec = helpers.tiny_spec(dsprites_path, seeds_per_trial=seeds)
    spec["metric"] = {**spec["metric"], **metric}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    proc = helpers.invoke_betasweep("sweep", "bad.yaml", cwd=tmp_path)  # in-process: refused before any work
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"betasweep: error: {message}")
    assert not (tmp_path / "betasweep.db").exists() and not (tmp_path / "mlflow.db").exists()
