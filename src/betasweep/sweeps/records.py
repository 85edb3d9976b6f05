"""What a trial and a study record: one definition that every reader and writer of ``user_attrs`` uses.

A betasweep trial is an Optuna trial whose user attributes hold what it trained and scored (the names
below); a *configuration* is the set of trials with the same searched params (:func:`config_key`),
however many trials trained it (a race's seeds, a queued retry, a repeated draw); a trial's *seeds*
are :func:`seeds_of`. The study's own user attributes hold the spec, its MLflow parent run and a
race's state.

This module imports nothing of betasweep: every other module of :mod:`betasweep.sweeps` may use it.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import optuna

__all__ = [
    "SEEDS", "SEED", "PER_SEED", "MLFLOW_RUN_ID", "FAIL_REASON", "RETRIED_FROM", "WORKER", "SLURM_TASK",
    "BETA_NORM", "ACTIVE_UNITS", "COLLAPSED_SEEDS", "BEST_SEED_CHECKPOINT", "DIMENSION_NAMES", "IMAGES_TRAINED",
    "CPU_S", "GPU_S", "ATTEMPT_OF", "SEEDS_DONE", "CHECKPOINT_STEPS", "RESUMED", "RACE_SEEDS", "RACE_IMAGES", "RACE_FROM", "RACE_TASK", "RACE_ROUND", "RACE_TASK_ATTRS",
    "STUDY_SPEC", "STUDY_PARENT_RUN", "STUDY_TRACKING_URI", "RACE_ATTR", "ALIVE_ATTR",
    "config_key", "seeds_of", "per_seed", "rung_of", "group_by_configuration", "race_alive",
]

# -- a trial's user attributes --------------------------------------------------------------------------

SEEDS = "seeds"
"""The training seeds of the trial, in order (``list[int]``; absent on trials from before ``seeds_per_trial``)."""
SEED = "seed"
"""The first (or only) training seed (``int``)."""
PER_SEED = "per_seed"
"""Each seed's metrics (``list[dict]``, the order of :data:`SEEDS`); the trial's value is their mean."""
MLFLOW_RUN_ID = "mlflow_run_id"
"""The trial's MLflow run (``str``)."""
FAIL_REASON = "fail_reason"
"""Why a FAIL trial failed, in one line (``str``)."""
RETRIED_FROM = "retried_from"
"""On a queued retry: the number of the trial it redoes (``int``)."""
WORKER = "worker"
"""``host:pid`` of the process that ran the trial."""
SLURM_TASK = "slurm_task"
"""``JOBID_TASK`` of the Slurm array task that ran the trial."""
BETA_NORM = "beta_norm"
"""β·m/n of the trial's configuration (Higgins et al. 2017)."""
ACTIVE_UNITS = "active_units"
"""Latent units with KL above the threshold (mean over seeds); 0 for a collapsed model."""
COLLAPSED_SEEDS = "collapsed_seeds"
"""Indices of the trial's seeds with no active unit (``list[int]``)."""
BEST_SEED_CHECKPOINT = "best_seed_checkpoint"
"""Artifact folder of the best seed's checkpoint (``"checkpoint"`` or ``"seed-i/checkpoint"``)."""
DIMENSION_NAMES = "dimension_names"
"""CelebA: each latent dimension's best-matching attribute (first seed)."""
IMAGES_TRAINED = "images_trained"
"""Training images the trial consumed (all its seeds, past a resume only the new ones)."""
CPU_S = "cpu_s"
"""CPU seconds (process time) the trial spent."""
GPU_S = "gpu_s"
"""Seconds on a GPU the trial spent."""

# A retried trial's resume (sweeps/resume.py).
ATTEMPT_OF = "attempt_of"
"""On a retry: the number of the failed attempt whose checkpoints and finished seeds it continues."""
SEEDS_DONE = "seeds_done"
"""``{seed index: record}`` of the seeds the trial finished (a retry reuses them)."""
CHECKPOINT_STEPS = "checkpoint_steps"
"""``{seed index: step}`` of each seed's latest checkpoint."""
RESUMED = "resumed"
"""``{seed index: step}`` each seed of a retry resumed from."""

# A race's task (sweeps/race.py): one seed of one configuration at one rung.
RACE_SEEDS = "race_seeds"
"""The task's seed (``[seed]``), which the objective trains instead of the spec's."""
RACE_IMAGES = "race_images"
"""The task's rung: images seen by its seed (the objective's ``train_samples``)."""
RACE_FROM = "race_from"
"""An extension's source: ``{"trial", "index", "prefix", "run_id"}`` of the seed at the rung below."""
RACE_TASK = "race_task"
"""The task's key ``"<config key>|<seed>|<images>"``: a task done or queued is never queued again."""
RACE_ROUND = "race_round"
"""The race round that queued the task."""
RACE_TASK_ATTRS = (RACE_SEEDS, RACE_ROUND, RACE_IMAGES, RACE_FROM, RACE_TASK)
"""The attributes that make a trial a race's task: a retry of it carries them (it stays that task)."""

# -- a study's user attributes --------------------------------------------------------------------------

STUDY_SPEC = "spec"
"""The study's spec (``SweepSpec.to_dict()``)."""
STUDY_PARENT_RUN = "mlflow_parent_run_id"
"""The study's MLflow parent run."""
STUDY_TRACKING_URI = "mlflow_tracking_uri"
"""Where the study's MLflow runs are."""
RACE_ATTR = "race"
"""The race's state: settings, contenders, decisions, rounds, status (sweeps/race.py)."""
ALIVE_ATTR = "race_alive"
"""Unix time a racing process last refreshed while it races: workers wait for its next round."""


def config_key(params: dict[str, Any]) -> str:
    """A configuration's key: its searched params, sorted by name, values by ``repr``, as text.

    Trials with equal params are one configuration however they came to be (a search's draw, a
    race's seed, a queued retry). The text is stored in a race's state (its contenders), so it must
    not change.
    """
    return repr(sorted((k, repr(v)) for k, v in params.items()))


def seeds_of(trial: optuna.trial.FrozenTrial, default: int | None = None) -> list:
    """The trial's training seeds (:data:`SEEDS`; a trial from before ``seeds_per_trial``: ``[seed]``,
    else ``[default]``)."""
    return list(trial.user_attrs.get(SEEDS) or [trial.user_attrs.get(SEED, default)])


def per_seed(trial: optuna.trial.FrozenTrial, objective: str) -> list[dict[str, Any]]:
    """The trial's per-seed metrics (:data:`PER_SEED`); a trial from before ``seeds_per_trial`` is one seed:
    its numeric user attributes, with its value as ``objective``."""
    if trial.user_attrs.get(PER_SEED):
        return trial.user_attrs[PER_SEED]
    one = {k: v for k, v in trial.user_attrs.items() if isinstance(v, (int, float))}
    one.setdefault(objective, trial.values[0])
    return [one]


def rung_of(trial: optuna.trial.FrozenTrial, first: int) -> int:
    """Images seen by each of the trial's seeds: a race task's :data:`RACE_IMAGES`, else ``first`` (the
    spec's ``train_samples``)."""
    return int(trial.user_attrs.get(RACE_IMAGES) or first)


def group_by_configuration(
    trials: Iterable[optuna.trial.FrozenTrial],
) -> dict[str, tuple[dict[str, Any], list[optuna.trial.FrozenTrial]]]:
    """``{config_key: (params, trials)}`` in the order the configurations first appear in ``trials``."""
    groups: dict[str, tuple[dict[str, Any], list[optuna.trial.FrozenTrial]]] = {}
    for t in trials:
        groups.setdefault(config_key(t.params), (dict(t.params), []))[1].append(t)
    return groups


def race_alive(study: optuna.Study, grace_period: float) -> bool:
    """Whether a race of ``study`` is running and its process refreshed :data:`ALIVE_ATTR` within ``grace_period``
    seconds: a worker with nothing to run then waits for the race's next round instead of stopping."""
    attrs = study.user_attrs
    state = attrs.get(RACE_ATTR) or {}
    return state.get("status") == "running" and time.time() - float(attrs.get(ALIVE_ATTR, 0)) < grace_period

