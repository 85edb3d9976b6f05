"""What a trial records (sweeps/records.py): one configuration key, one reading of seeds, and the best
trial always in the verdict's best configuration (a seed trained twice counts once in both)."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution

from betasweep.sweeps.records import SEEDS, config_key, group_by_configuration, seeds_of
from betasweep.sweeps.results import best_trial, configuration_frame, study_verdict
from betasweep.sweeps.spec import parse_spec

SPEC = parse_spec({"study": "r", "dataset": "shapes", "search_space": {"beta": {"low": 0.25, "high": 16, "log": True}},
                   "fixed": {"latent_dim": 6}, "metric": {"panel": ["beta_vae"]}})
BETA = {"beta": FloatDistribution(0.25, 16, log=True)}


def add(study: optuna.Study, beta: float, seeds: list[int], values: list[float]) -> None:
    """One COMPLETE trial of β ``beta`` that trained ``seeds`` to ``values`` (the objective's record)."""
    per_seed = [{"beta_vae": v, "active_units": 3} for v in values]
    study.add_trial(optuna.trial.create_trial(
        params={"beta": beta}, distributions=BETA, value=sum(values) / len(values),
        user_attrs={"per_seed": per_seed, SEEDS: seeds, "seed": seeds[0], "beta_vae": sum(values) / len(values)}))


def test_a_seed_trained_twice_counts_once_in_the_best_trial_as_in_the_verdict():
    # β=1: seed 0 scored 0.9 by two trials (a repeated draw), seed 1 scored 0.1: mean over its seeds 0.5.
    # β=4: seeds 0 and 1 at 0.6 each: mean 0.6, the better configuration. Counting seed 0 twice would make
    # β=1 0.633 and name its trial best while the verdict names β=4.
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("spec", SPEC.to_dict())
    add(study, 1.0, [0], [0.9])
    add(study, 1.0, [0], [0.9])
    add(study, 1.0, [1], [0.1])
    add(study, 4.0, [0, 1], [0.6, 0.6])
    the_verdict = study_verdict(study, SPEC)
    assert the_verdict.best.beta == 4.0 and the_verdict.best.n == 2
    assert configuration_frame(study, SPEC).loc[0, "seeds"] == 2
    assert best_trial(study).number == 3 and best_trial(study, SPEC).number == 3


def test_best_trial_is_the_best_trial_of_the_best_configuration():
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("spec", SPEC.to_dict())
    add(study, 2.0, [0], [0.7])
    add(study, 2.0, [1], [0.8])
    add(study, 8.0, [0], [0.72])
    assert study_verdict(study, SPEC).best.beta == 2.0
    assert best_trial(study).number == 1  # the configuration's trial with the highest value


def test_configuration_key_and_seeds_have_one_reading():
    study = optuna.create_study(direction="maximize")
    add(study, 1.0, [5, 6], [0.1, 0.2])
    study.add_trial(optuna.trial.create_trial(params={"beta": 1.0}, distributions=BETA, value=0.3, user_attrs={"seed": 9}))
    study.add_trial(optuna.trial.create_trial(params={"beta": 2.0}, distributions=BETA, value=0.3))
    first, old, bare = study.get_trials(deepcopy=False)
    assert config_key(first.params) == config_key(old.params) != config_key(bare.params)
    assert seeds_of(first) == [5, 6] and seeds_of(old) == [9] and seeds_of(bare, 42) == [42]
    groups = group_by_configuration(study.get_trials(deepcopy=False))
    assert [[t.number for t in trials] for _, trials in groups.values()] == [[0, 1], [2]]
