import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from betasweep.errors import ConfigError
from betasweep.sweeps.spec import DEFAULT_SPEC, load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _spec(**overrides):
    raw = {
        "study": "s",
        "dataset": "shapes",
        "search_space": {"beta": {"low": 0.5, "high": 8, "log": True}, "latent_dim": [4, 6]},
    }
    raw.update(overrides)
    return raw


def test_default_spec_is_the_shapes_quick_example():
    assert yaml.safe_load((EXAMPLES / "shapes-quick.yaml").read_text()) == DEFAULT_SPEC
    spec = load_spec(None)
    assert spec.study == "shapes-quick" and spec.dataset["name"] == "shapes"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_are_valid(name, monkeypatch):
    # The examples name their data by environment variable, as a user's shell would set it.
    monkeypatch.setenv("BETASWEEP_DSPRITES", "/data/dsprites_downsampled.npz")
    monkeypatch.setenv("BETASWEEP_CELEBA", "/data/celeba")
    for variable in ("BETASWEEP_3DSHAPES", "BETASWEEP_MPI3D", "BETASWEEP_SMALLNORB", "BETASWEEP_CARS3D"):
        monkeypatch.setenv(variable, f"/data/{variable.lower()}")
    spec = load_spec(EXAMPLES / name)
    assert (spec.search_space or spec.methods) and spec.train_samples > 0
    assert "$" not in str(spec.dataset.get("path", ""))


def test_relative_data_path_is_read_from_the_spec_folder(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_spec(dataset={"name": "dsprites", "path": "d/x.npz"})))
    assert load_spec(tmp_path / "s.yaml").dataset["path"] == str(tmp_path / "d" / "x.npz")


def test_params_are_suggested_from_the_space():
    spec = parse_spec(_spec(fixed={"width": 8}))
    trial = optuna.trial.FixedTrial({"beta": 2.0, "latent_dim": 6})
    assert {p.name: p.suggest(trial) for p in spec.search_space} == {"beta": 2.0, "latent_dim": 6}
    assert spec.fixed == {"width": 8} and spec.directions == ["maximize"]


def test_seed_policies():
    assert parse_spec(_spec(seed=5)).seed_for(3) == 5
    assert parse_spec(_spec(seed={"policy": "per_trial", "value": 5})).seed_for(3) == 8


def test_second_objective_makes_the_study_multi_objective():
    spec = parse_spec(_spec(second_objective="recon_loss", pruner="none"))
    assert spec.directions == ["maximize", "minimize"]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"colour": 1}, "spec: unknown key 'colour'"),
        ({"dataset": "mnist"}, "dataset.name: unknown dataset 'mnist'"),
        ({"search_space": {"beta": {"low": 4, "high": 1}}}, "search_space.beta: empty range"),
        ({"search_space": {"beta": []}}, "search_space.beta: empty list"),
        ({"search_space": {"beta": [0.0, 1.0]}}, "search_space.beta: beta must be > 0"),
        ({"search_space": {"beta": {"low": -1, "high": 4}}}, "search_space.beta: beta must be > 0"),
        ({"search_space": {"dropout": [0.1]}}, "search_space.dropout: unknown config field"),
        ({"search_space": {"latent_dim": [0, 4]}}, "search_space.latent_dim: latent_dim must be an integer >= 1"),
        ({"search_space": {"latent_dim": [4]}, "fixed": {"beta": -2.0}}, "fixed.beta: beta must be > 0"),
        ({"fixed": {"latent_dim": 3}}, "fixed.latent_dim: also in search_space"),
        ({"sampler": "cmaes"}, "sampler.name"),
        ({"pruner": "asha"}, "pruner.name"),
        ({"metric": {"full": {"num_train": 0}}}, "metric.full"),
        ({"metric": {"full": {"n_train": 10}}}, "metric.full: unknown key 'n_train'"),
        ({"train_samples": 0}, "train_samples"),
        ({"second_objective": "kl"}, "second_objective"),
    ],
)
def test_invalid_specs_are_refused_naming_the_key(overrides, needle):
    with pytest.raises(ConfigError) as info:
        parse_spec(_spec(**overrides))
    assert needle in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("study: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


def test_objective_and_panel_defaults_and_the_objective_joins_the_panel():
    spec = parse_spec(_spec())
    assert spec.objective == "beta_vae" and spec.metric.panel == ("beta_vae", "factor_vae", "mig", "sap")
    assert spec.seeds_per_trial == 1 and spec.seeds_for(4) == [spec.seed_for(4)]  # one seed: as before
    dci = parse_spec(_spec(metric={"objective": "dci_disentanglement", "panel": ["mig"]}))
    assert dci.metric.panel == ("mig", "dci")
    celeba = parse_spec(_spec(dataset={"name": "celeba", "path": "/nowhere"}))
    assert celeba.objective == "weak_label"


def test_seeds_per_trial_draws_distinct_recorded_seeds_from_the_spec_seed():
    spec = parse_spec(_spec(seeds_per_trial=3, seed={"policy": "per_trial", "value": 5}))
    seeds = spec.seeds_for(2)
    assert len(set(seeds)) == 3 and seeds == spec.seeds_for(2)
    assert seeds == [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(7).spawn(3)]
    assert spec.seeds_for(3) != seeds


def test_udr_with_two_seeds_is_accepted():
    spec = parse_spec(_spec(seeds_per_trial=2, metric={"objective": "udr"}))
    assert spec.objective == "udr" and spec.metric.panel == ("beta_vae", "factor_vae", "mig", "sap")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"metric": {"objective": "accuracy"}}, "metric.objective: unknown objective 'accuracy'"),
        ({"metric": {"panel": ["mig", "mce"]}}, "metric.panel: unknown metric 'mce'"),
        ({"metric": {"objective": "udr"}}, "it needs seeds_per_trial >= 2, got 1"),
        ({"dataset": {"name": "celeba", "path": "/x"}, "metric": {"objective": "factor_vae"}}, "metric.objective: factor_vae needs"),
        ({"metric": {"objective": "weak_label"}}, "weak_label is the CelebA variant"),
        ({"seeds_per_trial": 0}, "seeds_per_trial: expected an integer >= 1"),
        ({"seeds_per_trial": 2, "metric": {"objective": "udr", "intermediate": {"at": [0.5]}}}, "metric.intermediate: udr compares"),
        ({"sampler": "grid"}, "search_space.beta: the grid sampler needs a list of choices"),
    ],
)
def test_invalid_objectives_and_panels_are_refused_naming_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_spec(_spec(**overrides))


def test_data_paths_expand_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("BETASWEEP_TEST_DATA", str(tmp_path))
    spec = parse_spec(_spec(dataset={"name": "dsprites", "path": "${BETASWEEP_TEST_DATA}/d.npz"}))
    assert spec.dataset["path"] == str(tmp_path / "d.npz")
    monkeypatch.delenv("BETASWEEP_TEST_DATA")
    with pytest.raises(ConfigError, match=r"dataset.path: environment variable BETASWEEP_TEST_DATA is not set"):
        parse_spec(_spec(dataset={"name": "dsprites", "path": "${BETASWEEP_TEST_DATA}/d.npz"}))


def test_the_beta_curve_example_is_a_grid_with_seeds_and_dci(monkeypatch):
    monkeypatch.setenv("BETASWEEP_DSPRITES", "/data/dsprites.npz")
    spec = load_spec(EXAMPLES / "dsprites-beta-curve.yaml")
    assert spec.sampler["name"] == "grid" and [p.choices for p in spec.search_space] == [(1, 2, 4, 8, 16)]
    assert spec.seeds_per_trial == 3 and spec.fixed["latent_dim"] == 10 and "dci" in spec.metric.panel
    assert spec.dataset["path"] == "/data/dsprites.npz"


def test_the_default_sweep_trains_two_seeds_per_trial():
    spec = load_spec(None)
    assert spec.seeds_per_trial >= 2 and spec.objective == "beta_vae"
