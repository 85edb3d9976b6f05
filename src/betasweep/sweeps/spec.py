"""The sweep spec: a YAML file saying what to search, on which data, at what budget, scored how.

Validated whole before anything runs: an unknown key, an empty range, β <= 0 or an unknown
dataset is refused with a :class:`~betasweep.errors.ConfigError` that names the key.

Example (``examples/shapes-quick.yaml``)::

    study: shapes-quick
    dataset: {name: shapes, subsample: [1, 1, 4, 2, 2]}
    search_space:
      beta: {low: 0.25, high: 8.0, log: true}
      latent_dim: [6, 10]
      width: [16, 32]
    fixed: {learning_rate: 0.001, batch_size: 16}
    train_samples: 24000
    seeds_per_trial: 2
    seed: {policy: fixed, value: 0}
    metric:
      seed: 0
      objective: beta_vae
      panel: [beta_vae, factor_vae, mig, sap]
      full: {num_train: 10000, num_eval: 5000, batch_size: 64}
      intermediate: {num_train: 200, num_eval: 100, batch_size: 16, at: [0.5]}
      curve: {budgets: [4500, 9000, 18000, 36000], num_train: 100, num_eval: 50, batch_size: 8}
    sampler: {name: tpe, seed: 0}
    pruner: {name: median}
    n_trials: 6
    race: {max_seeds: 8, alpha: 0.05}   # optional: after the search, seeds where the answer is undecided

``metric.curve`` scores each seed's model with the panel (cheap settings: its own ``num_train``,
``num_eval``, ``batch_size``, else ``metric.intermediate``'s) at each budget of images seen: the
learning curve of every panel value. ``race`` runs :func:`betasweep.sweeps.race.race_study` after
the search (``betasweep race`` does the same for an existing study).
"""

from __future__ import annotations

import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from betasweep.data import DATASETS
from betasweep.errors import ConfigError
from betasweep.metrics import DEFAULT_PANEL, PANEL_METRICS, MetricConfig
from betasweep.models import ModelConfig
from betasweep.models.methods import METHOD_PARAMS
from betasweep.models.vae import family_values
from betasweep.scoring import load_data
from betasweep.training import TrainConfig

__all__ = ["ParamSpec", "RaceConfig", "SweepSpec", "load_spec", "parse_spec", "DEFAULT_SPEC", "CONFIG_FIELDS", "OBJECTIVE_METRICS",
           "panel_metric_of", "expand_env", "build_configs", "load_spec_data", "SPEC_KEYS", "TOP_KEYS",
           "DATASET_KEYS", "RANGE_KEYS", "SEED_KEYS", "METRIC_KEYS", "METRIC_SETTINGS_KEYS", "RACE_KEYS"]

# Config fields a spec may search or fix, with their type. num_channels, image_size and label_dim follow
# the data; train_samples, seed and device have keys of their own.
CONFIG_FIELDS: dict[str, type] = {
    name: kind
    for config, own_keys in ((ModelConfig, ("num_channels", "image_size", "label_dim")),
                             (TrainConfig, ("train_samples", "seed", "device")))
    for name, kind in typing.get_type_hints(config).items()
    if name not in own_keys
}

SAMPLERS = ("tpe", "random", "nsgaii", "grid")
PRUNERS = ("median", "hyperband", "none")
SEED_POLICIES = ("fixed", "per_trial")
OBJECTIVES = ("recon_loss",)

OBJECTIVE_METRICS: dict[str, str | None] = {
    "beta_vae": "beta_vae",
    "weak_label": "beta_vae",
    "factor_vae": "factor_vae",
    "mig": "mig",
    "sap": "sap",
    "dci_disentanglement": "dci",
    "dci_completeness": "dci",
    "dci_informativeness": "dci",
    "udr": None,
    "model_centrality": None,
}
"""``metric.objective`` values and the panel metric that computes each (UDR compares a trial's
seeds with each other after they are all trained: no panel metric)."""


LABEL_FREE = ("udr", "model_centrality")
"""Objectives that compare a trial's seeds' models with each other, without labels (UDR, ModelCentrality)."""


def panel_metric_of(objective: str) -> str | None:
    """The panel metric (:data:`~betasweep.metrics.PANEL_METRICS`) whose keys hold ``objective``; None for ``udr``."""
    return OBJECTIVE_METRICS[objective]

DEFAULT_SPEC: dict[str, Any] = {
    "study": "shapes-quick",
    "dataset": {"name": "shapes", "subsample": [1, 1, 4, 2, 2]},
    "search_space": {
        "beta": {"low": 0.25, "high": 8.0, "log": True},
        "latent_dim": [6, 10],
        "width": [16, 32],
    },
    "fixed": {"learning_rate": 5e-4, "batch_size": 16},
    "train_samples": 36_000,
    "seeds_per_trial": 2,
    "seed": {"policy": "fixed", "value": 0},
    "metric": {
        "seed": 0,
        "objective": "beta_vae",
        "panel": ["beta_vae", "factor_vae", "mig", "sap"],
        "full": {"num_train": 10_000, "num_eval": 5_000, "batch_size": 64},
        "intermediate": {"num_train": 200, "num_eval": 100, "batch_size": 16, "at": [0.5]},
        "curve": {"budgets": [4_500, 9_000, 18_000, 36_000], "num_train": 100, "num_eval": 50, "batch_size": 8},
    },
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "median"},
    "n_trials": 6,
    "race": {"max_seeds": 2, "margin": 0.05},
}
"""The embedded default: procedural shapes on dSprites' downsampled grid, 6 trials x 2 seeds, the panel
without DCI, batch 16 and learning rate 5e-4 for 2,250 steps per model (at 1e-3 and 1,500 steps 5 of
11 models stayed on the mean-image plateau, 0 active units; see examples/shapes-quick.yaml). Its race
trains nothing more (``max_seeds`` 2, as the trials): it gives each configuration against the best one of
the three words, with margin 0.05 Higgins accuracy (docs/guides/deciding.md, Racing: why that value)."""


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: a categorical ``choices`` list or a ``[low, high]`` range.

    Attributes:
        name: the config field searched (a key of :data:`CONFIG_FIELDS`).
        choices: the values to choose from (``search_space.<field>: [a, b, ...]``), or None for a range.
        low, high: the range's ends (floats; integer fields are drawn as integers), None for choices.
        log: draw the range on a log scale.
        step: the range's grid step from ``low``, or None (continuous; 1 for integer fields).
    """

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> Any:
        """Draw this parameter from an ``optuna.Trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if CONFIG_FIELDS[self.name] is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def values(self) -> list:
        """Every value this parameter may take (for validation): choices, or the range's ends."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass(frozen=True)
class RaceConfig:
    """Settings of a race (:mod:`betasweep.sweeps.race`): seeds added, or every seed trained longer, round by
    round where the answer is undecided.

    Attributes:
        max_seeds: seeds per configuration at most; >= 2.
        alpha: the race's overall level: its chance of separating two equal configurations over all its
            rounds (spent round by round, :func:`~betasweep.sweeps.verdict.spent_alpha`), in (0, 0.5].
        max_images: images seen per seed at most (the last rung); None: the trials' ``train_samples``
            (the race adds seeds only). Rungs double from ``train_samples`` up to it.
        margin: equivalence margin in the metric's units (e.g. 0.03 Higgins accuracy): a configuration whose
            difference from the best lies within ±margin (TOST) is *equivalent*; None: no equivalence test.
        max_total_images: images the race may train in all (its rounds; the study's earlier trials not
            counted); None: no bound.
    """

    max_seeds: int = 8
    alpha: float = 0.05
    max_images: int | None = None
    margin: float | None = None
    max_total_images: int | None = None

    def __post_init__(self):
        if isinstance(self.max_seeds, bool) or not isinstance(self.max_seeds, int) or self.max_seeds < 2:
            raise ConfigError(f"race.max_seeds: expected an integer >= 2 (a test needs 2 seeds a side), got {self.max_seeds!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha <= 0.5:
            raise ConfigError(f"race.alpha: expected a level in (0, 0.5], got {self.alpha!r}")
        for name in ("max_images", "max_total_images"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"race.{name}: expected a number of images >= 1, got {value!r}")
        if self.margin is not None and (isinstance(self.margin, bool) or not isinstance(self.margin, (int, float))
                                        or not math.isfinite(self.margin) or self.margin <= 0):
            raise ConfigError(f"race.margin: expected a margin > 0 in the metric's units (e.g. 0.03), got {self.margin!r}")


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec; see the module docstring for the YAML form.

    Attributes:
        study: the Optuna study name (also the MLflow experiment's).
        dataset: ``{"name": ..., "path": ..., other dataset options}``.
        search_space: the searched parameters.
        fixed: config fields held fixed (any :class:`ModelConfig` / :class:`TrainConfig` field).
        train_samples: budget per trial, in training images.
        seed_policy, seed: ``fixed`` (every trial trains with ``seed``) or ``per_trial``
            (``seed + trial.number``).
        metric: the full score's :class:`MetricConfig`.
        intermediate: the cheap score's :class:`MetricConfig`, or None.
        intermediate_at: fractions of the budget at which the cheap score is reported.
        sampler, pruner: ``{"name": ..., options}``.
        n_trials, timeout: defaults for ``betasweep sweep`` / ``worker`` (None: unlimited).
        second_objective: None or ``"recon_loss"`` (minimised, making the study multi-objective).
        objective: the trial's value (maximised): a key of :data:`OBJECTIVE_METRICS`. Its panel
            metric is always in ``metric.panel`` (added when the spec's ``metric.panel`` lacks it).
        seeds_per_trial: training seeds per trial (:meth:`seeds_for`); the trial's value is the
            mean of the objective over them.
        curve: the learning curve's cheap :class:`MetricConfig` (the spec's panel), or None.
        curve_budgets: images seen at which each seed's model is scored with ``curve``, increasing,
            the last at most ``train_samples``.
        race: the race to run after the search (``race:`` in the YAML), or None.
        methods: the ``model:`` part: method → its searched strength parameters
            (named by their config field); empty when the spec does not search methods.
        raw: the spec as given, after defaults and with the dataset's paths resolved (:meth:`to_dict`).
    """

    study: str
    dataset: dict[str, Any]
    search_space: tuple[ParamSpec, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    train_samples: int = 24_000
    seed_policy: str = "fixed"
    seed: int = 0
    metric: MetricConfig = MetricConfig()
    intermediate: MetricConfig | None = None
    intermediate_at: tuple[float, ...] = ()
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    n_trials: int | None = None
    timeout: float | None = None
    second_objective: str | None = None
    objective: str = "beta_vae"
    seeds_per_trial: int = 1
    curve: MetricConfig | None = None
    curve_budgets: tuple[int, ...] = ()
    race: RaceConfig | None = None
    methods: dict[str, tuple[ParamSpec, ...]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def directions(self) -> list[str]:
        return ["maximize"] + (["minimize"] if self.second_objective else [])

    def seed_for(self, trial_number: int) -> int:
        return self.seed + trial_number if self.seed_policy == "per_trial" else self.seed

    def seeds_for(self, trial_number: int) -> list[int]:
        """The training seeds of a trial: ``[seed_for(trial)]`` with one seed per trial (as before
        ``seeds_per_trial`` existed); with ``N >= 2``, ``N`` seeds drawn from
        ``numpy.random.SeedSequence(seed_for(trial)).spawn(N)`` (one 32-bit word of each child's state).
        With the ``fixed`` policy every trial trains the same seeds (common random numbers: two
        configurations differ by their params, not by their seeds)."""
        return [self.seed_at(trial_number, index) for index in range(self.seeds_per_trial)]

    def seed_at(self, trial_number: int, index: int) -> int:
        """Seed ``index`` of the configuration first trained by trial ``trial_number``: one 32-bit word of
        ``SeedSequence(seed_for(trial), spawn_key=(index,))``, the ``index``-th child that
        ``SeedSequence(seed_for(trial)).spawn(n)`` gives for any ``n > index`` (so a race's extra seeds
        continue the trial's own sequence). With one seed per trial, seed 0 is ``seed_for(trial)`` itself."""
        base = self.seed_for(trial_number)
        if index == 0 and self.seeds_per_trial == 1:
            return base
        return int(np.random.SeedSequence(base, spawn_key=(index,)).generate_state(1)[0])

    def to_dict(self) -> dict[str, Any]:
        """The spec as given (after defaults), JSON-serialisable: stored in the study's user attrs."""
        return self.raw


# -- the keys a spec may have, one documented table per mapping (read by parse_spec and by the docs' generator)

TOP_KEYS: dict[str, str] = {
    "study": "Required. The Optuna study's name, also the MLflow experiment's (a non-empty string).",
    "dataset": "Required. A dataset name, or a mapping with the keys of DATASET_KEYS.",
    "search_space": "Required unless model is given. Config fields to search (CONFIG_FIELDS): each a list of "
                    "choices or a range with the keys of RANGE_KEYS.",
    "fixed": "Config fields held fixed (CONFIG_FIELDS) and their values; a field is searched or fixed, not both.",
    "train_samples": "Budget per seed, in training images seen (an integer >= 1; default 24000).",
    "seed": "The seeds' base: an integer (policy fixed), or a mapping with the keys of SEED_KEYS (default 0, fixed).",
    "seeds_per_trial": "Training seeds per trial (an integer >= 1; default 1); the trial's value is the mean of "
                       "the objective over them.",
    "metric": "How models are scored: a mapping with the keys of METRIC_KEYS.",
    "sampler": "Optuna's sampler: a name of SAMPLERS, or {name, seed, other options} (default {name: tpe, seed: 0}).",
    "pruner": "Optuna's pruner: a name of PRUNERS, or {name, options} (default median; empty: none).",
    "n_trials": "Trials `betasweep sweep` / `worker` run by default (an integer >= 1; default unlimited).",
    "timeout": "Seconds `betasweep sweep` / `worker` run by default (> 0; default unlimited).",
    "second_objective": "A second value to minimise, of OBJECTIVES (the study becomes two-objective; pruner none).",
    "race": "Run a race after the search: a mapping with the keys of RACE_KEYS (see RaceConfig).",
    "model": "Search methods together with their own strength: {method: {parameter: choices or range}}, "
             "methods and parameter names of betasweep.models.methods.METHOD_PARAMS.",
}
"""The top-level keys of a spec and what each holds."""

DATASET_KEYS: dict[str, str] = {
    "name": "Required. One of betasweep.data.DATASETS.",
    "path": "The dataset's file or folder; ${VAR} and ~ expanded, a relative path taken from the spec's folder.",
    "subsample": "shapes only: keep every k-th value of each factor (a list, one k per factor).",
    "classifier": "celeba only: an attribute-classifier checkpoint, to name the latent dimensions by their effect "
                  "(and a cvae's control); expanded as path.",
}
"""The keys of ``dataset:``."""

RANGE_KEYS: dict[str, str] = {
    "low": "Required. The range's low end (a number; > 0 with log).",
    "high": "Required. The range's high end (a number >= low).",
    "log": "Draw on a log scale (default false).",
    "step": "Draw on a grid of this step from low (default: continuous; 1 for integer fields).",
}
"""The keys of one searched range (``search_space.<field>: {low, high, log, step}``)."""

SEED_KEYS: dict[str, str] = {
    "policy": "fixed (every trial trains the same seeds) or per_trial (seed + the trial's number); of SEED_POLICIES.",
    "value": "The base seed (an integer; default 0).",
}
"""The keys of ``seed:`` in its mapping form."""

METRIC_KEYS: dict[str, str] = {
    "seed": "The metric seed (an integer; default 0): every score of every trial draws its samples from it.",
    "objective": "The trial's value (maximised): a key of OBJECTIVE_METRICS (default beta_vae; weak_label on celeba).",
    "panel": "Metrics computed for every model, of betasweep.metrics.PANEL_METRICS (the objective's own is added).",
    "full": "The final score's settings: a mapping with the keys of METRIC_SETTINGS_KEYS.",
    "intermediate": "The cheap score reported to the pruner part-way: METRIC_SETTINGS_KEYS, with at (fractions of "
                    "the budget in (0, 1); default [0.5]).",
    "curve": "A learning curve: budgets (increasing images seen, the last at most train_samples) and the cheap "
             "settings of METRIC_SETTINGS_KEYS (default: intermediate's, else CURVE_DEFAULTS).",
}
"""The keys of ``metric:``."""

METRIC_SETTINGS_KEYS: dict[str, str] = {
    "num_train": "Training points of the metric's own classifier or regressor (see MetricConfig).",
    "num_eval": "Evaluation points of the metric (see MetricConfig).",
    "batch_size": "Images per encoder batch while scoring.",
    "num_stat_samples": "Held-out images for recon loss, KL and active units.",
    "at": "metric.intermediate only: fractions of the budget at which the cheap score is reported.",
    "attribute_subset": "celeba: the attributes the weak-label score uses (a non-empty list of names).",
}
"""The keys of ``metric.full``, ``metric.intermediate`` and ``metric.curve`` (with ``budgets``)."""

RACE_KEYS: dict[str, str] = {name: "See RaceConfig." for name in
                             ("max_seeds", "alpha", "max_images", "margin", "max_total_images")}
"""The keys of ``race:``: the fields of :class:`RaceConfig` (documented there)."""

SPEC_KEYS: dict[str, dict[str, str]] = {
    "": TOP_KEYS, "dataset": DATASET_KEYS, "search_space.<field>": RANGE_KEYS, "seed": SEED_KEYS,
    "metric": METRIC_KEYS, "metric.full": METRIC_SETTINGS_KEYS, "metric.intermediate": METRIC_SETTINGS_KEYS,
    "metric.curve": {**METRIC_SETTINGS_KEYS, "budgets": "Required. Images seen at which the curve is scored."},
    "race": RACE_KEYS,
}
"""Every mapping of a spec (``""``: the top level) and its allowed keys, each with what it holds; a key not
listed is refused by :func:`parse_spec`."""

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, where: str) -> str:
    """``value`` with every ``${NAME}`` replaced by the environment variable ``NAME``.

    Lets one spec point at data that lives in different places on different machines
    (``path: ${BETASWEEP_DSPRITES}``). Only the braced form is expanded; ``$`` alone stays as it is.

    Raises:
        ConfigError: naming ``where`` and the variable, when it is not set (or empty).
    """
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if not os.environ.get(name):
            raise ConfigError(f"{where}: environment variable {name} is not set (the spec says {value!r})")
        return os.environ[name]

    return _ENV_VAR.sub(replace, value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _unknown(keys, allowed, where: str) -> None:
    extra = sorted(set(keys) - set(allowed))
    _require(not extra, f"{where}: unknown key {extra[0]!r}; expected one of {', '.join(sorted(allowed))}" if extra else "")


def _metric_config(raw: Any, where: str, seed: int, panel: tuple[str, ...] = DEFAULT_PANEL) -> MetricConfig:
    _require(isinstance(raw, dict), f"{where}: expected a mapping")
    _unknown(raw, METRIC_SETTINGS_KEYS, where)
    subset = raw.get("attribute_subset")
    _require(subset is None or (isinstance(subset, list) and subset and all(isinstance(a, str) for a in subset)),
             f"{where}.attribute_subset: expected a non-empty list of attribute names")
    try:
        return MetricConfig(seed=seed, attribute_subset=tuple(subset) if subset else None, panel=panel,
                            **{k: int(v) for k, v in raw.items() if k not in ("at", "attribute_subset")})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def _param(name: str, raw: Any) -> ParamSpec:
    where = f"search_space.{name}"
    _require(name in CONFIG_FIELDS, f"{where}: unknown config field {name!r}; searchable fields: {', '.join(CONFIG_FIELDS)}")
    if isinstance(raw, list):
        _require(len(raw) > 0, f"{where}: empty list of choices")
        return ParamSpec(name, choices=tuple(raw))
    _require(isinstance(raw, dict), f"{where}: expected a list of choices or a mapping with low and high")
    _unknown(raw, RANGE_KEYS, where)
    _require("low" in raw and "high" in raw, f"{where}: a range needs both low and high")
    _require(CONFIG_FIELDS[name] in (int, float), f"{where}: {name} is not numeric; give a list of choices")
    low, high = raw["low"], raw["high"]
    _require(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)),
             f"{where}: low and high must be numbers")
    _require(low <= high, f"{where}: empty range (low {low} > high {high})")
    _require(not raw.get("log") or low > 0, f"{where}: a log range needs low > 0, got {low}")
    return ParamSpec(name, low=float(low), high=float(high), log=bool(raw.get("log", False)), step=raw.get("step"))


def _check_value(name: str, value: Any, where: str) -> None:
    """Refuse values the configs would refuse later: β <= 0, latent size < 1, etc."""
    if name == "beta":
        _require(isinstance(value, (int, float)) and value > 0 and math.isfinite(value), f"{where}: beta must be > 0, got {value}")
    if name in ("latent_dim", "width", "hidden_dim", "batch_size"):
        _require(isinstance(value, int) and value >= 1, f"{where}: {name} must be an integer >= 1, got {value}")
    if name == "learning_rate":
        _require(isinstance(value, (int, float)) and value > 0, f"{where}: learning_rate must be > 0, got {value}")
    if name == "kl_warmup":
        _require(value is None or (isinstance(value, (int, float)) and 0 <= value <= 1),
                 f"{where}: kl_warmup must be a fraction of the budget in [0, 1], got {value!r}")


def _check_conditioned_attributes(dataset: dict[str, Any], names: Any) -> None:
    """A cvae's ``conditioned_attributes`` must be CelebA attributes (read from the attribute file's header)."""
    if names is None:
        return
    _require(dataset["name"] == "celeba", "fixed.conditioned_attributes: attributes apply to celeba; "
                                          "on ground-truth data give conditioned_factor")
    header = Path(dataset.get("path") or "") / "list_attr_celeba.txt"
    if dataset.get("path") and header.is_file():
        with header.open() as f:
            f.readline()
            known = f.readline().split()
        unknown = [a for a in ([names] if isinstance(names, str) else names) if a not in known]
        _require(not unknown, f"fixed.conditioned_attributes: unknown CelebA attribute {unknown[0]!r} "
                              f"(not in {header})" if unknown else "")


def parse_spec(raw: Any, *, base_dir: str | os.PathLike | None = None) -> SweepSpec:
    """Validate a spec mapping (as loaded from YAML) into a :class:`SweepSpec`.

    The parts are checked in the order of the YAML form (module docstring), so the first bad key is
    the one named.

    Args:
        raw: the mapping.
        base_dir: relative dataset paths are resolved against it (the spec file's folder).

    Raises:
        ConfigError: naming the offending key.
    """
    _check_top(raw)
    dataset = _dataset(raw["dataset"], base_dir)
    params, fixed, methods = _space(raw)
    train_samples = raw.get("train_samples", 24_000)
    _require(isinstance(train_samples, int) and train_samples >= 1, f"train_samples: expected an integer >= 1, got {train_samples!r}")
    seed = _seed_policy(raw.get("seed", {"policy": "fixed", "value": 0}))
    seeds_per_trial = raw.get("seeds_per_trial", 1)
    _require(isinstance(seeds_per_trial, int) and not isinstance(seeds_per_trial, bool) and seeds_per_trial >= 1,
             f"seeds_per_trial: expected an integer >= 1, got {seeds_per_trial!r}")
    scoring = _metric(dict(raw.get("metric") or {}), dataset["name"], seeds_per_trial, train_samples)
    race = _race(raw.get("race"), scoring["objective"], seeds_per_trial)
    if race is not None:
        check_max_images(race, train_samples)
    sampler = _sampler(raw.get("sampler", {"name": "tpe", "seed": 0}), params, methods)
    pruner, second = _pruner_and_second(raw)
    n_trials, timeout = raw.get("n_trials"), raw.get("timeout")
    _require(n_trials is None or (isinstance(n_trials, int) and n_trials >= 1), f"n_trials: expected an integer >= 1, got {n_trials!r}")
    _require(timeout is None or (isinstance(timeout, (int, float)) and timeout > 0), f"timeout: expected seconds > 0, got {timeout!r}")
    _probe_configs(params, fixed, train_samples)
    _check_conditioned_attributes(dataset, fixed.get("conditioned_attributes"))
    return SweepSpec(
        study=raw["study"].strip(), dataset=dataset, search_space=params, fixed=fixed, train_samples=train_samples,
        seed_policy=seed.get("policy", "fixed"), seed=int(seed.get("value", 0)), sampler=sampler, pruner=pruner,
        n_trials=n_trials, timeout=timeout, second_objective=second, seeds_per_trial=seeds_per_trial, race=race,
        methods=methods, raw={**raw, "dataset": dataset}, **scoring,
    )


def _check_top(raw: Any) -> None:
    """The top level: a mapping of known keys with ``study``, ``dataset`` and ``search_space`` (or ``model``)."""
    _require(isinstance(raw, dict), "spec: expected a mapping at the top level")
    _unknown(raw, TOP_KEYS, "spec")
    for key in ("study", "dataset", *(() if "model" in raw else ("search_space",))):
        _require(key in raw, f"spec: missing required key {key!r}")
    _require(isinstance(raw["study"], str) and raw["study"].strip(), "study: expected a non-empty name")


def _dataset(raw: Any, base_dir: str | os.PathLike | None) -> dict[str, Any]:
    """``dataset``: a known name and its options; ``path`` and ``classifier`` with ``${VAR}`` and ``~`` expanded,
    relative ones resolved against ``base_dir``."""
    dataset = {"name": raw} if isinstance(raw, str) else dict(raw or {})
    _require(dataset.get("name") in DATASETS, f"dataset.name: unknown dataset {dataset.get('name')!r}; expected one of {', '.join(DATASETS)}")
    _unknown(dataset, DATASET_KEYS, "dataset")
    _require(dataset.get("classifier") is None or dataset["name"] == "celeba",
             "dataset.classifier: an attribute classifier applies to celeba only")
    for key in ("path", "classifier"):
        if dataset.get(key) is not None:
            path = Path(os.path.expanduser(expand_env(str(dataset[key]), f"dataset.{key}")))
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            dataset[key] = str(path)
    return dataset


def _space(raw: dict[str, Any]) -> tuple[tuple[ParamSpec, ...], dict[str, Any], dict[str, tuple[ParamSpec, ...]]]:
    """``search_space``, ``fixed`` and ``model``: the searched parameters, the fixed fields, the methods;
    every value given checked as the configs would check it."""
    space = raw.get("search_space") or {}
    _require(isinstance(space, dict) and (space or "model" in raw), "search_space: expected a non-empty mapping of parameters")
    params = tuple(_param(name, value) for name, value in space.items())
    fixed = dict(raw.get("fixed") or {})
    methods = _methods(raw["model"], params, fixed, raw.get("train_samples", 24_000)) if "model" in raw else {}
    for name in fixed:
        _require(name in CONFIG_FIELDS, f"fixed.{name}: unknown config field {name!r}; fields: {', '.join(CONFIG_FIELDS)}")
        _require(name not in space, f"fixed.{name}: also in search_space; give it in one place")
    for p in params:
        for value in p.values():
            _check_value(p.name, int(value) if CONFIG_FIELDS[p.name] is int and p.choices is None else value, f"search_space.{p.name}")
    for name, value in fixed.items():
        _check_value(name, value, f"fixed.{name}")
    return params, fixed, methods


def _seed_policy(seed: Any) -> dict[str, Any]:
    """``seed``: an integer (the fixed policy) or ``{policy, value}``."""
    seed = {"policy": "fixed", "value": seed} if isinstance(seed, int) else seed
    _require(isinstance(seed, dict), "seed: expected an integer or {policy, value}")
    _unknown(seed, SEED_KEYS, "seed")
    _require(seed.get("policy", "fixed") in SEED_POLICIES, f"seed.policy: expected one of {', '.join(SEED_POLICIES)}")
    return seed


def _metric(metric: dict[str, Any], dataset: str, seeds_per_trial: int, train_samples: int) -> dict[str, Any]:
    """``metric``: the objective and the :class:`SweepSpec` fields of the scores (``metric``, ``intermediate``,
    ``intermediate_at``, ``objective``, ``curve``, ``curve_budgets``)."""
    _unknown(metric, METRIC_KEYS, "metric")
    metric_seed = int(metric.get("seed", 0))
    objective, panel = _objective_and_panel(metric, dataset, seeds_per_trial)
    full = _metric_config(metric.get("full", {}), "metric.full", metric_seed, panel)
    intermediate, at = None, ()
    if metric.get("intermediate"):
        _require(objective not in LABEL_FREE, f"metric.intermediate: {objective} compares a trial's trained seeds with "
                                              "each other and has no score part-way through one seed; remove metric.intermediate")
        intermediate = _metric_config(metric["intermediate"], "metric.intermediate", metric_seed, (panel_metric_of(objective),))
        at = tuple(float(a) for a in metric["intermediate"].get("at", [0.5]))
        _require(all(0 < a < 1 for a in at), "metric.intermediate.at: fractions of the budget must be in (0, 1)")
    curve, budgets = _curve(metric, metric_seed, panel, train_samples)
    return {"metric": full, "intermediate": intermediate, "intermediate_at": at, "objective": objective,
            "curve": curve, "curve_budgets": budgets}


def _sampler(raw: Any, params: tuple[ParamSpec, ...], methods: dict[str, tuple[ParamSpec, ...]]) -> dict[str, Any]:
    """``sampler``: a name or ``{name, options}``; the grid sampler only over lists of choices and no methods."""
    sampler = {"name": raw} if isinstance(raw, str) else dict(raw)
    _require(sampler.get("name") in SAMPLERS, f"sampler.name: expected one of {', '.join(SAMPLERS)}, got {sampler.get('name')!r}")
    if sampler["name"] == "grid":
        ranged = [p.name for p in params if p.choices is None]
        _require(not ranged, f"search_space.{ranged[0] if ranged else ''}: the grid sampler needs a list of choices, not a range")
    _require(not (methods and sampler["name"] == "grid"), "sampler.name: the grid sampler needs one fixed set of "
                                                           "parameters; a model: part searches each method's own (use tpe or random)")
    return sampler


def _pruner_and_second(raw: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``pruner`` (a name or ``{name, options}``; nothing: ``none``) and ``second_objective`` (which prunes nothing)."""
    pruner = raw.get("pruner", {"name": "median"})
    pruner = {"name": pruner} if isinstance(pruner, str) else dict(pruner or {"name": "none"})
    _require(pruner.get("name") in PRUNERS, f"pruner.name: expected one of {', '.join(PRUNERS)}, got {pruner.get('name')!r}")
    second = raw.get("second_objective")
    _require(second in (None, *OBJECTIVES), f"second_objective: expected one of {', '.join(OBJECTIVES)} or nothing, got {second!r}")
    _require(not (second and pruner["name"] != "none"), "pruner.name: Optuna prunes single-objective studies only; use none with second_objective")
    return pruner, second


def _probe_configs(params: tuple[ParamSpec, ...], fixed: dict[str, Any], train_samples: int) -> None:
    """Build the configs once with the range ends (once per family when model is searched, each
    with its own fields), so that anything they refuse is refused now."""
    probe = {p.name: p.values()[0] for p in params} | fixed
    families = next((p.values() for p in params if p.name == "model"), None)
    try:
        for family in families or [probe.get("model", "beta_vae")]:
            values = family_values(probe | {"model": family}) if families else probe
            ModelConfig(**{k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__})
        TrainConfig(train_samples=train_samples, **{k: v for k, v in probe.items() if k in TrainConfig.__dataclass_fields__})
    except (TypeError, ConfigError) as error:
        raise ConfigError(f"spec: {error}") from None


def _methods(raw: Any, params: tuple[ParamSpec, ...], fixed: dict[str, Any], train_samples: Any) -> dict[str, tuple[ParamSpec, ...]]:
    """The spec's ``model:`` part: the methods searched together with their own strength (a conditional space).

    ``model: {beta_vae: {beta: [1, 4]}, factor_vae: {gamma: [10, 30]}, dip_vae_i: {lambda_od: {low: 1,
    high: 50, log: true}}}``: each trial draws a method, then that method's parameters only
    (Optuna's define-by-run). Parameter names are disentanglement_lib's (:data:`METHOD_PARAMS`);
    each is searched as the config field that holds it. Every value is checked now by building the
    method's configs with it.

    Raises:
        ConfigError: an unknown method, a parameter of another method, a strength outside its
            method's range, ``model`` or a method's field also in ``search_space`` / ``fixed``, or a
            field two methods share (DIP-VAE-I/II's ``lambda_od``) given different values.
    """
    _require(isinstance(raw, dict) and raw, "model: expected a mapping of methods, e.g. {beta_vae: {beta: [1, 4]}, "
                                            "factor_vae: {gamma: [10, 30]}}")
    searched = {p.name for p in params}
    _require("model" not in searched and "model" not in fixed,
             "model: the methods are given under model:; remove model from search_space and fixed")
    methods: dict[str, tuple[ParamSpec, ...]] = {}
    shared: dict[str, tuple[str, ParamSpec]] = {}
    for method, options in raw.items():
        where = f"model.{method}"
        _require(method in METHOD_PARAMS, f"{where}: unknown method {method!r}; expected one of {', '.join(METHOD_PARAMS)}")
        options = options or {}
        _require(isinstance(options, dict), f"{where}: expected a mapping of its parameters "
                                            f"({', '.join(METHOD_PARAMS[method])}) to lists of values or ranges")
        own = METHOD_PARAMS[method]
        specs = []
        for name, values in options.items():
            if name not in own:
                others = [m for m, names in METHOD_PARAMS.items() if name in names]
                _require(False, f"{where}.{name}: not a parameter of {method}"
                                + (f" (it is one of {', '.join(others)})" if others else "")
                                + f"; expected one of {', '.join(own)}")
            config_field = own[name]
            _require(config_field not in searched and config_field not in fixed,
                     f"{where}.{name}: {config_field} is also in search_space or fixed; give it in one place")
            try:
                spec = _param(config_field, values)
            except ConfigError as error:
                raise ConfigError(f"{where}.{name}: {str(error).split(': ', 1)[1]}") from None
            for value in spec.values():
                _check_strength(method, config_field, value, f"{where}.{name}", fixed, train_samples)
            if config_field in shared and shared[config_field][1] != spec:
                _require(False, f"{where}.{name}: {shared[config_field][0]} searches {config_field} over other values; "
                                "methods that share a field search it over the same values")
            shared.setdefault(config_field, (method, spec))
            specs.append(spec)
        if not specs:
            _check_strength(method, None, None, where, fixed, train_samples)
        methods[method] = tuple(specs)
    return methods


def _check_strength(method: str, name: str | None, value: Any, where: str, fixed: dict[str, Any], train_samples: Any) -> None:
    """Build ``method``'s configs with ``name = value`` (and the spec's fixed fields): refused values fail here."""
    _require(not isinstance(value, bool), f"{where}: expected a number, got {value!r}")
    if name in ("capacity_max", "gamma"):
        _require(isinstance(value, (int, float)) and value >= 0 and math.isfinite(value),
                 f"{where}: expected a number >= 0, got {value!r}")
    if name == "capacity_steps":
        _require(isinstance(value, int) and value >= 0, f"{where}: expected an integer >= 0 (steps), got {value!r}")
    values = family_values({**fixed, "model": method, **({name: value} if name else {})})
    try:
        ModelConfig(**{k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__})
        if name == "beta":
            TrainConfig(beta=value)
    except (TypeError, ConfigError) as error:
        raise ConfigError(f"{where}: {error}") from None


CURVE_DEFAULTS = {"num_train": 500, "num_eval": 250, "batch_size": 32}
"""The learning curve's metric settings when neither ``metric.curve`` nor ``metric.intermediate`` gives them."""


def _curve(metric: dict[str, Any], seed: int, panel: tuple[str, ...], train_samples: int) -> tuple[MetricConfig | None, tuple[int, ...]]:
    """``metric.curve``: its cheap :class:`MetricConfig` over the spec's panel and its budgets (images seen)."""
    raw = metric.get("curve")
    if raw is None:
        return None, ()
    _require(isinstance(raw, dict) and "budgets" in raw, "metric.curve: expected a mapping with budgets (images seen)")
    budgets = raw["budgets"]
    _require(isinstance(budgets, list) and budgets and all(isinstance(b, int) and not isinstance(b, bool) for b in budgets),
             f"metric.curve.budgets: expected a non-empty list of integers (images seen), got {budgets!r}")
    _require(all(a < b for a, b in zip([0, *budgets], budgets)),
             f"metric.curve.budgets: expected increasing budgets > 0, got {budgets}")
    _require(budgets[-1] <= train_samples,
             f"metric.curve.budgets: {budgets[-1]} is past train_samples ({train_samples}): a model sees no more images")
    settings = {k: v for k, v in (metric.get("intermediate") or {}).items() if k in CURVE_DEFAULTS} or dict(CURVE_DEFAULTS)
    settings |= {k: v for k, v in raw.items() if k != "budgets"}
    _require("at" not in settings, "metric.curve.at: a curve is scored at its budgets (images seen); remove at")
    return _metric_config(settings, "metric.curve", seed, panel), tuple(budgets)


def _race(raw: Any, objective: str, seeds_per_trial: int) -> RaceConfig | None:
    """``race``: validated; refused for UDR (a seed added alone has no UDR of its own)."""
    if raw is None:
        return None
    _require(isinstance(raw, dict), "race: expected a mapping {max_seeds, max_images, margin, alpha}")
    _unknown(raw, RACE_KEYS, "race")
    _require(objective not in LABEL_FREE, f"race: the objective {objective} compares a trial's models with each other; "
                                          f"a seed added by the race has no {objective} of its own")
    race = RaceConfig(**raw)
    _require(race.max_seeds >= seeds_per_trial, f"race.max_seeds: {race.max_seeds} is fewer than the "
                                                f"{seeds_per_trial} seeds each trial already trains")
    return race


def check_max_images(race: RaceConfig, train_samples: int) -> None:
    """Refuse ``race.max_images`` below the images each trial already trains (``train_samples``)."""
    _require(race.max_images is None or race.max_images >= train_samples,
             f"race.max_images: {race.max_images} is below the {train_samples} images each trial already trains; "
             f"give at least {train_samples}")


def _objective_and_panel(metric: dict[str, Any], dataset: str, seeds_per_trial: int) -> tuple[str, tuple[str, ...]]:
    """``metric.objective`` and ``metric.panel``, validated; the objective's panel metric is added to the panel.

    Default objective: ``beta_vae`` (the Higgins score), ``weak_label`` on CelebA (its variant there).
    """
    default = "weak_label" if dataset == "celeba" else "beta_vae"
    objective = metric.get("objective", default)
    _require(objective in OBJECTIVE_METRICS,
             f"metric.objective: unknown objective {objective!r}; expected one of {', '.join(OBJECTIVE_METRICS)}")
    if dataset == "celeba":
        _require(objective not in ("beta_vae", "factor_vae"),
                 f"metric.objective: {objective} needs a ground-truth simulator (a factor held fixed); "
                 "on celeba use weak_label, mig, sap, a dci_* score or udr")
    else:
        _require(objective != "weak_label", f"metric.objective: weak_label is the CelebA variant of the Higgins score; "
                                            f"on {dataset} use beta_vae")
    _require(objective not in LABEL_FREE or seeds_per_trial >= 2,
             f"metric.objective: {objective} compares the models of a trial's seeds; it needs seeds_per_trial >= 2, "
             f"got {seeds_per_trial}")
    raw_panel = metric.get("panel", list(DEFAULT_PANEL))
    raw_panel = [raw_panel] if isinstance(raw_panel, str) else raw_panel
    _require(isinstance(raw_panel, list) and raw_panel and all(isinstance(m, str) for m in raw_panel),
             f"metric.panel: expected a non-empty list of metrics, some of {', '.join(PANEL_METRICS)}")
    for name in raw_panel:
        _require(name in PANEL_METRICS, f"metric.panel: unknown metric {name!r}; expected some of {', '.join(PANEL_METRICS)}")
    needed = panel_metric_of(objective)
    panel = tuple(dict.fromkeys([*raw_panel, *([needed] if needed else [])]))
    return objective, panel


def build_configs(spec: SweepSpec, params: dict[str, Any], seed: int, num_channels: int) -> tuple[ModelConfig, TrainConfig]:
    """Split a trial's params plus the spec's fixed fields into the model's and the training's config.

    When the spec searches ``model``, fields of the families the trial did not draw are left out
    (a conditional search space); with ``model`` fixed they are refused (:class:`ModelConfig`).

    Raises:
        ConfigError: a value the configs refuse.
    """
    values = {**spec.fixed, **params}
    if spec.methods or any(p.name == "model" for p in spec.search_space):
        values = family_values(values)
    model_config = ModelConfig(
        num_channels=num_channels, **{k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__}
    )
    train_config = TrainConfig(
        train_samples=spec.train_samples, seed=seed,
        **{k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__},
    )
    return model_config, train_config


def load_spec_data(spec: SweepSpec):
    """The spec's dataset, loaded (:func:`betasweep.scoring.load_data`).

    Raises:
        DataError: the file or folder is missing or malformed.
    """
    return load_data(spec.dataset)


def load_spec(path: str | os.PathLike | None) -> SweepSpec:
    """Read and validate a YAML spec; ``None`` gives :data:`DEFAULT_SPEC`.

    Raises:
        ConfigError: the file is missing, a folder, unreadable, not UTF-8, not YAML, or fails validation.
    """
    if path is None:
        return parse_spec(DEFAULT_SPEC)
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a sweep spec (a YAML file)")
    if not path.is_file():
        raise ConfigError(f"sweep spec not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the sweep spec ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text at byte {error.start} (expected a YAML sweep spec)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return parse_spec(raw, base_dir=path.parent)
