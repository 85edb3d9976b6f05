from pathlib import Path

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


@pytest.mark.parametrize("name", ["shapes-quick.yaml", "dsprites.yaml", "dsprites-pareto.yaml"])
def test_examples_are_valid(name):
    spec = load_spec(EXAMPLES / name)
    assert spec.search_space and spec.train_samples > 0


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

