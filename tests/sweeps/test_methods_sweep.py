"""The study as a sweep: the method and its own strength searched together (spec's ``model:`` part),
end to end on real dSprites at a tiny budget, and bad input in one line."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import optuna
import pytest
import yaml

from betasweep.errors import ConfigError
from betasweep.models.methods import METHOD_PARAMS
from betasweep.sweeps.objective import Objective
from betasweep.sweeps.spec import build_configs, load_spec, parse_spec
from helpers import invoke_betasweep, tiny_spec

GRID = {"beta_vae": {"beta": [1, 4]}, "annealed_vae": {"c_max": [5, 25], "iteration_threshold": [20]},
        "factor_vae": {"gamma": [10, 30]}, "dip_vae_i": {"lambda_od": [1, 5]}, "dip_vae_ii": {"lambda_od": [1, 5]},
        "beta_tcvae": {"beta": [1, 6]}}


def spec_with(model, **extra):
    return {"study": "methods", "dataset": "shapes", "model": model, **extra}


def test_each_trial_draws_a_method_then_only_its_own_strength():
    spec = parse_spec(spec_with(GRID, search_space={"latent_dim": [4, 6]}, sampler={"name": "random", "seed": 0}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(40):
        trial = study.ask()
        params = Objective.suggest(SimpleNamespace(spec=spec), trial)
        fields = {field for field in METHOD_PARAMS[params["model"]].values()} | {"model", "latent_dim"}
        assert set(params) <= fields and "latent_dim" in params
        seen[params["model"]] = params
        model_config, train_config = build_configs(spec, params, 0, 1)
        assert model_config.model == params["model"]
        study.tell(trial, 0.0)
    assert set(seen) == set(GRID)
    m, t = build_configs(spec, {"model": "factor_vae", "tc_gamma": 30, "latent_dim": 4}, 0, 1)
    assert m.tc_gamma == 30 and m.latent_dim == 4
    m, t = build_configs(spec, {"model": "annealed_vae", "capacity_max": 25, "capacity_steps": 20}, 0, 1)
    assert m.model == "annealed_vae" and t.capacity_max == 25 and t.capacity_steps == 20 and t.gamma == 1000


def test_the_example_is_the_locatello_grid(monkeypatch):
    monkeypatch.setenv("BETASWEEP_DSPRITES", "/any/dsprites.npz")
    spec = load_spec(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "dsprites-methods.yaml"))
    grid = {m: {p.name: list(p.choices) for p in params} for m, params in spec.methods.items()}
    assert grid["factor_vae"]["tc_gamma"] == [10, 20, 30, 40, 50, 100]
    assert grid["dip_vae_i"]["lambda_od"] == grid["dip_vae_ii"]["lambda_od"] == [1, 2, 5, 10, 20, 50]
    assert grid["beta_tcvae"]["tc_beta"] == [1, 2, 4, 6, 8, 10]
    assert grid["annealed_vae"]["capacity_max"] == [5, 10, 25, 50, 75, 100] and grid["annealed_vae"]["gamma"] == [1000]


@pytest.mark.parametrize(("model", "needle"), [
    ({"factor_vae": {"gamma": [10, -5]}}, "model.factor_vae.gamma: tc_gamma must be a number >= 0 for model factor_vae, got -5"),
    ({"beta_tcvae": {"beta": [0.5]}}, "model.beta_tcvae.beta: tc_beta must be a number >= 1"),
    ({"dip_vae_i": {"lambda_od": [-1]}}, "model.dip_vae_i.lambda_od: lambda_od must be a number >= 0"),
    ({"annealed_vae": {"c_max": [-1]}}, "model.annealed_vae.c_max: expected a number >= 0"),
    ({"beta_vae": {"beta": [0]}}, "model.beta_vae.beta: beta must be > 0"),
    ({"factor_vae": {"lambda_od": [2]}}, "model.factor_vae.lambda_od: not a parameter of factor_vae (it is one of dip_vae_i, dip_vae_ii)"),
    ({"dip_vae_ii": {"beta": [2]}}, "model.dip_vae_ii.beta: not a parameter of dip_vae_ii"),
    ({"vq_vae": {"beta": [2]}}, "model.vq_vae: unknown method 'vq_vae'; expected one of beta_vae"),
    ({"dip_vae_i": {"lambda_od": [1]}, "dip_vae_ii": {"lambda_od": [2]}}, "model.dip_vae_ii.lambda_od: dip_vae_i searches"),
])
def test_bad_method_input_is_one_line_and_exit_2(model, needle, tmp_path, dsprites_path):
    with pytest.raises(ConfigError, match="^model\\."):
        parse_spec(spec_with(model))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**tiny_spec(dsprites_path), "search_space": {}, "model": model}))
    proc = invoke_betasweep("sweep", str(path), "--n-trials", "1", cwd=tmp_path)  # in-process: refused before any work
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "betasweep.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_model_searched_twice_and_grid_sampler_are_refused():
    with pytest.raises(ConfigError, match="^model: the methods are given under model:"):
        parse_spec(spec_with(GRID, search_space={"model": ["beta_vae"]}))
    with pytest.raises(ConfigError, match="^model.beta_vae.beta: beta is also in search_space"):
        parse_spec(spec_with({"beta_vae": {"beta": [1, 2]}}, search_space={"beta": [1, 2]}))
    with pytest.raises(ConfigError, match="^sampler.name: the grid sampler"):
        parse_spec(spec_with(GRID, sampler={"name": "grid"}))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_six_trials_run_one_configuration_of_each_method_and_the_report_groups_them(dsprites_path, tmp_path):
    spec = tiny_spec(dsprites_path, study="methods", n_trials=6)
    spec["fixed"]["latent_dim"] = 4
    spec.update(search_space={}, model=GRID, seeds_per_trial=2, train_samples=160)
    spec["metric"] = {"seed": 0, "objective": "mig", "panel": ["mig"],
                      "full": {"num_train": 200, "num_eval": 100, "batch_size": 16, "num_stat_samples": 128}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    invoke_betasweep("sweep", "spec.yaml", "--n-trials", "6", "--no-progress", cwd=tmp_path, check=True)
    study = optuna.load_study(study_name="methods", storage=f"sqlite:///{tmp_path / 'betasweep.db'}")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["model"] for t in trials) == sorted(GRID)
    middle = {t.params["model"]: t.params for t in trials}
    assert middle["factor_vae"]["tc_gamma"] == 10 and middle["beta_tcvae"]["tc_beta"] == 1  # first of two: the middle
    proc = invoke_betasweep("report", "--study", "methods", "--gallery", "0", "--no-register", "--out", "report.html",
                            cwd=tmp_path, check=True)
    page = (tmp_path / "report.html").read_text()
    assert "Methods: each one" in page and all(method in page for method in GRID)
    verdict = page[page.index("Verdict"):page.index("</div>")]
    assert "model=" in verdict or "undecided" in verdict or "equivalent" in verdict, verdict
    print(proc.stdout)


@pytest.mark.timeout(1200)
def test_model_centrality_is_a_label_free_objective_across_a_trials_seeds(dsprites_path, tmp_path):
    spec = tiny_spec(dsprites_path, study="centrality", n_trials=1)
    spec.update(search_space={}, model={"beta_vae": {"beta": [1.0]}}, seeds_per_trial=2, train_samples=480)
    spec["metric"] = {"seed": 0, "objective": "model_centrality", "panel": ["mig"],
                      "full": {"num_train": 100, "num_eval": 50, "batch_size": 16, "num_stat_samples": 128}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    invoke_betasweep("sweep", "spec.yaml", "--no-progress", cwd=tmp_path, check=True)
    study = optuna.load_study(study_name="centrality", storage=f"sqlite:///{tmp_path / 'betasweep.db'}")
    trial = study.trials[0]
    per_model = [seed["model_centrality"] for seed in trial.user_attrs["per_seed"]]
    assert len(per_model) == 2 and all(0.0 <= v <= 1.0 for v in per_model)
    assert trial.value == pytest.approx(sum(per_model) / 2)


@pytest.mark.parametrize("method", ["factor_vae", "dip_vae_ii"])
def test_evaluate_and_traverse_take_a_method_checkpoint(method, dsprites, dsprites_path, tmp_path):
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    path = tmp_path / f"{method}.pt"
    train(dsprites, ModelConfig(model=method, latent_dim=4, width=8, hidden_dim=32),
          TrainConfig(batch_size=16, train_samples=64, device="cpu"), checkpoint_path=path,
          extra={"dataset": "dsprites", "data_path": str(dsprites_path)})
    # the commands in this process (betasweep.cli.main; tests/test_cli.py runs the console script of each)
    scores = json.loads(invoke_betasweep("evaluate", str(path), "--data-from-checkpoint", "--num-train", "100",
                                         "--num-eval", "50", "--panel", "mig,modularity,irs,unsupervised",
                                         check=True).stdout)
    assert {"mig", "modularity", "explicitness", "irs", "mutual_info_score"} <= set(scores)
    figures = json.loads(invoke_betasweep("traverse", str(path), "--data-from-checkpoint", "--out", str(tmp_path / "fig"),
                                          check=True).stdout)
    assert os.path.isfile(figures["traversal"]) and len(figures["kl_per_dim"]) == 4
