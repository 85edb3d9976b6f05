"""Racing a study: each round's tasks (one seed of one configuration at one rung) trained as Optuna trials.

The race's rules (rungs, the tests, extend or add seeds, when it stops) are :mod:`betasweep.sweeps.race_rules`,
on any source of per-seed values; their names are importable from here as well. :func:`race_study` races a
study's configurations: its tasks are Optuna trials (a seed trained to rung 0: user attributes ``race_seeds``,
``race_images``; an extension: also ``race_from`` = the trial and seed index whose checkpoint it continues,
:mod:`betasweep.sweeps.records`), which this process and any ``betasweep worker`` of the study run
(PostgreSQL, the gRPC proxy, a Slurm array); a killed worker's task is retried from its own latest
checkpoint (heartbeats; sweeps/resume.py). The race's state lives in the study's user attribute ``race``; a
task already done or queued (user attribute ``race_task``) is never queued again, so a race killed and
started again trains no image twice (up to the last checkpoint of a task killed mid-way).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from betasweep.errors import ConfigError
from betasweep.scoring import objective_value
from betasweep.sweeps.objective import Objective
from betasweep.sweeps.race_rules import (MIN_TEST_SEEDS, WORDS, ConfigRungs, Decision, RaceResult, RaceRound, check_race,
                                         decide, next_step, run_race, rungs_of)
from betasweep.sweeps.records import (ALIVE_ATTR, CPU_S, GPU_S, IMAGES_TRAINED, MLFLOW_RUN_ID, RACE_ATTR, RACE_FROM,
                                      RACE_IMAGES, RACE_ROUND, RACE_SEEDS, RACE_TASK, RESUMED, STUDY_PARENT_RUN,
                                      group_by_configuration, per_seed, race_alive, rung_of, seeds_of)
from betasweep.sweeps.results import config_label, panel_value_keys
from betasweep.sweeps.spec import RaceConfig, SweepSpec
from betasweep.sweeps.storage import heartbeat_interval
from betasweep.sweeps.worker import requeue_interrupted, run_one, start_gate
from betasweep.training import TrainConfig

__all__ = ["ConfigRungs", "Decision", "RaceRound", "RaceResult", "run_race", "race_study", "check_race", "rungs_of",
           "decide", "next_step", "RACE_ATTR", "ALIVE_ATTR", "race_alive", "MIN_TEST_SEEDS", "WORDS"]


def race_study(
    study: optuna.Study,
    spec: SweepSpec,
    tracker,
    race: RaceConfig,
    *,
    rank_by: str | None = None,
    timeout: float | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    checkpoint_dir: str | None = None,
) -> RaceResult:
    """Race the study's configurations (:func:`run_race`), each round's tasks trained as trials.

    Rung 0 is the spec's ``train_samples``; the rungs double up to ``race.max_images`` (:func:`rungs_of`).
    A task is one seed of one configuration at one rung, a trial with the configuration's params and user
    attributes ``race_seeds`` (the seed: the configuration's own :meth:`SweepSpec.seed_at` sequence, so with
    ``seed.policy: fixed`` every configuration races on the same seeds), ``race_images`` (the rung),
    ``race_task`` (its key) and ``race_round``; an extension also ``race_from`` (the trial, seed index,
    artifact prefix and run holding the seed at the rung below, whose checkpoint it continues). A new seed
    at rung ``k`` is trained to rung 0 and extended rung by rung, so it is scored at every rung. This
    process and any ``betasweep worker`` of the study run the queued tasks; the round waits until none of
    them waits or runs (a dead worker's task is failed as stale and retried from its own checkpoint). A
    task done or queued is never queued again, so a race started again after a kill resumes where it was.
    Each round is printed, written to the study (user attribute ``race``) and to the study's MLflow run
    (``race/rounds.txt``; metrics ``race_configurations_left``, ``race_images``, ``race_cpu_s``,
    ``race_gpu_s`` by round; ``race/<metric>/<configuration>`` mean per rung, step = images seen); each
    task's run logs the rung's panel at step = images seen.

    Args:
        rank_by: the metric raced on (default the study's objective; any value the study records).
        timeout: seconds after which no trial starts here and no round begins.
        checkpoint_dir: where the trials run here checkpoint their seeds (a filesystem every worker
            shares; default the runs' artifacts), as for ``betasweep worker``.

    Raises:
        ConfigError: the objective is ``udr``, ``rank_by`` is unknown, the study has no complete
            trial, ``race.max_seeds`` is below the seeds a configuration has, ``race.max_images`` is below
            the images a seed already has, or a seed to extend kept no checkpoint (naming its trial).
    """
    echo = echo or (lambda message: None)
    metric = rank_by or spec.objective
    rungs = _check_study(study, spec, race, metric)
    if len(rungs) > 1:
        _check_checkpoints(study, spec, tracker, checkpoint_dir, spec.train_samples)
    state, resumed = _race_state(study, race, metric, rungs, echo)
    parent = study.user_attrs.get(STUDY_PARENT_RUN) or tracker.find_parent_run()
    objective = Objective(spec, tracker, parent, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir) if parent else None
    deadline = None if timeout is None else time.monotonic() + timeout
    driver = _StudyRace(study, spec, tracker, race, metric, rungs, state, parent, objective, deadline, echo)
    stop = threading.Event()
    alive = threading.Thread(target=_keep_alive, args=(study, stop), daemon=True)
    alive.start()
    try:
        result = run_race(driver.table, driver.train, race, metric, rungs=rungs, pair=spec.seed_policy == "fixed",
                          state=state if resumed else None, deadline=deadline, on_round=driver.on_round)
    finally:
        stop.set()
        alive.join(timeout=5)
        if state["status"] == "running":  # interrupted: a later race resumes from the last round
            state["status"] = "stopped"
            with contextlib.suppress(Exception):
                study.set_user_attr(RACE_ATTR, state)
    state["verdict"] = result.lines
    with contextlib.suppress(Exception):
        study.set_user_attr(RACE_ATTR, state)
        if parent:
            tracker.client.log_text(parent, "\n".join(result.lines) + "\n", "race/verdict.txt")
    for line in result.lines:
        echo(line)
    return result


def _check_study(study: optuna.Study, spec: SweepSpec, race: RaceConfig, metric: str) -> tuple[int, ...]:
    """The race's rungs (:func:`rungs_of` from the spec's ``train_samples``), once the study can be raced on ``metric``.

    Raises:
        ConfigError: as :func:`race_study` says (all but the missing checkpoints).
    """
    if spec.objective in ("udr", "model_centrality"):
        raise ConfigError(f"race: the objective {spec.objective} compares a trial's models with each other; a seed added by the race "
                          "has no UDR of its own")
    keys = panel_value_keys(spec)
    if metric not in keys:
        raise ConfigError(f"--rank-by {metric!r}: this study records {', '.join(keys)}")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"study {study.study_name!r} has no complete trial to race")
    first = spec.train_samples
    if race.max_images is not None and race.max_images < first:
        raise ConfigError(f"--max-images {race.max_images}: below the {first:,} images each seed of the study already "
                          f"trained; give at least {first}")
    rungs = rungs_of(first, race.max_images)
    highest = max(rung_of(t, first) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if highest > rungs[-1]:
        raise ConfigError(f"--max-images {rungs[-1]}: below the {highest:,} images seeds of study {study.study_name!r} "
                          f"already trained; give at least {highest}")
    return rungs


def _race_state(study: optuna.Study, race: RaceConfig, metric: str, rungs: tuple[int, ...],
                echo: Callable[[str], None]) -> tuple[dict[str, Any], bool]:
    """``(the race's state, resumed)``: the study's stored race when it has these settings and was running or
    stopped (resumed), else a new one."""
    state = study.user_attrs.get(RACE_ATTR) or {}
    settings = {"metric": metric, "alpha": race.alpha, "max_seeds": race.max_seeds, "max_images": rungs[-1],
                "margin": race.margin, "rungs": list(rungs)}
    resumed = bool(all(state.get(k) == v for k, v in settings.items()) and state.get("contenders")
                   and state.get("status") in ("running", "stopped"))
    if resumed:
        echo(f"race: resuming after round {state['round']} ({len(state['contenders'])} configurations left, "
             f"at {rungs[state['rung']]:,} images); round {state['round'] + 1} next")
        state = {**state, "status": "running"}
    else:
        state = {**settings, "status": "running", "rounds": []}
    state.update(settings)
    return state, resumed


class _StudyRace:
    """The study's side of :func:`run_race`: its table of per-seed values (:meth:`table`), its training
    (:meth:`train`: tasks queued as trials and run here and by the study's workers) and its record of each
    round (:meth:`on_round`)."""

    def __init__(self, study: optuna.Study, spec: SweepSpec, tracker, race: RaceConfig, metric: str,
                 rungs: tuple[int, ...], state: dict[str, Any], parent: str | None, objective: Objective | None,
                 deadline: float | None, echo: Callable[[str], None]) -> None:
        self.study, self.spec, self.tracker, self.race, self.metric = study, spec, tracker, race, metric
        self.rungs, self.state, self.parent, self.objective = rungs, state, parent, objective
        self.deadline, self.echo = deadline, echo
        self.first = spec.train_samples

    def by_config(self) -> dict[str, tuple[dict[str, Any], list]]:
        return group_by_configuration(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def where(self, trials: list) -> dict[tuple[int, int], tuple[Any, int]]:
        """(seed, rung) -> (the trial holding it, the seed's index there)."""
        found: dict[tuple[int, int], tuple[Any, int]] = {}
        for t in trials:
            for index, seed in enumerate(seeds_of(t, self.spec.seed)):
                found.setdefault((int(seed), rung_of(t, self.first)), (t, index))
        return found

    def table(self) -> dict[str, ConfigRungs]:
        """Each configuration's per-seed values of the raced metric at each rung, and its costs."""
        spec, table = self.spec, {}
        for key, (params, trials) in self.by_config().items():
            beta = {**spec.fixed, **params}.get("beta")
            config = ConfigRungs(config_label(params, [min(t.number for t in trials)]), beta=None if beta is None else float(beta))
            for t in trials:
                seeds, rung, metrics_of = seeds_of(t, spec.seed), rung_of(t, self.first), per_seed(t, spec.objective)
                config.images += _images_trained(t, spec, self.rungs, rung, len(seeds))
                config.cpu_s += float(t.user_attrs.get(CPU_S, sum(float(m.get("wall_time_s", 0)) for m in metrics_of)))
                config.gpu_s += float(t.user_attrs.get(GPU_S, 0.0))
                for seed, metrics in zip(seeds, metrics_of):
                    with contextlib.suppress(KeyError, TypeError, ValueError):
                        value = objective_value(metrics, self.metric)
                        if math.isfinite(value) and rung in self.rungs:
                            config.values.setdefault(int(seed), {}).setdefault(rung, value)
            table[key] = config
        return table

    def on_round(self, round_: RaceRound, labels: dict[str, str], race_state: dict[str, Any]) -> None:
        """Print the round, store it in the study (user attribute ``race``) and log it to the study's MLflow run."""
        state, tracker, parent = self.state, self.tracker, self.parent
        line = round_.line(labels, self.race.margin)
        self.echo(f"race {line}")
        # run_race's state of a resumed race is a copy of the stored one, its "rounds" those stored at the start:
        # this process's rounds are kept here, not overwritten by that copy.
        state.update({key: value for key, value in race_state.items() if key not in ("rounds", "verdict")})
        state["rounds"] = [*state.get("rounds", []), line]
        self.study.set_user_attr(RACE_ATTR, state)
        if parent:
            with contextlib.suppress(Exception):  # the study holds the rounds; the run's copy is a convenience
                tracker.client.log_text(parent, "\n".join(state["rounds"]) + "\n", "race/rounds.txt")
                for name, value in (("race_configurations_left", len(round_.kept)), ("race_images", round_.cost["images"]),
                                    ("race_cpu_s", round_.cost["cpu_s"]), ("race_gpu_s", round_.cost["gpu_s"])):
                    tracker.client.log_metric(parent, name, value, step=round_.number)
                for config in round_.configs:
                    tracker.client.log_metric(parent, f"race/{self.metric}/{_metric_key(config.label)}", config.mean,
                                              step=round_.images)

    def train(self, number: int, plan: dict[str, tuple[int, int]]) -> bool | None:
        """Bring each configuration of ``plan`` to its seeds, each at every rung up to its images, rung by rung;
        None when stopped at the deadline."""
        for k, images in enumerate(self.rungs):
            tasks = self.tasks(number, plan, k, images)
            if tasks and not self.drive(number, tasks):
                return None
        return True

    def tasks(self, number: int, plan: dict[str, tuple[int, int]], k: int,
              images: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(params, user attributes)`` of each task of round ``number`` at rung ``k`` not yet trained there: a
        new seed (rung 0), or an extension of the seed's trial at the rung below."""
        tasks = []
        groups = self.by_config()
        for key, (seeds_wanted, top) in plan.items():
            if images > top or key not in groups:
                continue
            params, trials = groups[key]
            found = self.where(trials)
            first_trial = min(t.number for t in trials)
            for index in range(seeds_wanted):
                seed = self.spec.seed_at(first_trial, index)
                if (seed, images) in found:
                    continue
                task = {RACE_SEEDS: [seed], RACE_IMAGES: images, RACE_TASK: f"{key}|{seed}|{images}", RACE_ROUND: number}
                if k > 0:
                    if (seed, self.rungs[k - 1]) not in found:
                        continue  # its lower rung failed: not extended
                    source, at = found[(seed, self.rungs[k - 1])]
                    several = len(seeds_of(source)) > 1
                    task[RACE_FROM] = {"trial": source.number, "index": at, "prefix": f"seed-{at}/" if several else "",
                                       "run_id": source.user_attrs.get(MLFLOW_RUN_ID)}
                tasks.append((params, task))
        return tasks

    def drive(self, number: int, tasks: list[tuple[dict[str, Any], dict[str, Any]]]) -> bool:
        """Queue the tasks not done or queued yet, run queued trials here until none of them waits or runs;
        False at the deadline."""
        study = self.study
        if self.objective is None:
            raise ConfigError(f"study {study.study_name!r} has no MLflow parent run; create it with `betasweep study create`")
        names = self.queue(number, tasks)
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's task is retried
            trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
            if not any(t.user_attrs.get(RACE_TASK) in names for t in trials):
                return True
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            ran = False
            with start_gate(study, 0) as gate:  # on PostgreSQL: no other worker pops the trial between look and start
                if any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
                    try:
                        run_one(study, self.objective, gate.release, self.echo)
                    except KeyboardInterrupt:
                        requeue_interrupted(study, self.objective.current_trial, echo=self.echo)
                        raise
                    ran = True
            if not ran:
                time.sleep(_poll_s(study))

    def queue(self, number: int, tasks: list[tuple[dict[str, Any], dict[str, Any]]]) -> set[str]:
        """Queue each task not done, waiting or running (nor failed 3 times); returns the names of all ``tasks``."""
        existing: dict[str, list] = {}
        for t in self.study.get_trials(deepcopy=False):
            if RACE_TASK in t.user_attrs:
                existing.setdefault(t.user_attrs[RACE_TASK], []).append(t.state)
        names = set()
        for params, task in tasks:
            name = task[RACE_TASK]
            names.add(name)
            states = existing.get(name, [])
            if any(s in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) for s in states):
                continue
            if states.count(TrialState.FAIL) >= 3:  # its task keeps failing: the round goes on without it
                continue
            self.study.enqueue_trial(params, user_attrs=task)
            what = f"extend seed {task[RACE_SEEDS][0]} to" if RACE_FROM in task else f"seed {task[RACE_SEEDS][0]} at"
            self.echo(f"race round {number}: queued {what} {task[RACE_IMAGES]:,} images ({_short_params(params)})")
        return names


def _check_checkpoints(study: optuna.Study, spec: SweepSpec, tracker, checkpoint_dir: str | None, first: int) -> None:
    """Refuse extension when a complete trial at rung 0 kept no checkpoint of its seeds (its run's artifacts
    ``[seed-i/]checkpoint/checkpoint.pt``, or ``--checkpoint-dir``), naming the trials."""
    missing = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if rung_of(t, first) != first:
            continue
        seeds = seeds_of(t, 0)
        for index in range(len(seeds)):
            prefix = f"seed-{index}/" if len(seeds) > 1 else ""
            if checkpoint_dir and (Path(checkpoint_dir) / spec.study / f"trial-{t.number}" / f"seed-{index}" / "checkpoint.pt").is_file():
                continue
            run_id = t.user_attrs.get(MLFLOW_RUN_ID)
            try:
                listed = tracker.list_artifacts(run_id, f"{prefix}checkpoint") if run_id else set()
            except Exception:  # noqa: BLE001 (the run is gone): counted as missing
                listed = set()
            if f"{prefix}checkpoint/checkpoint.pt" not in listed:
                missing.append(f"#{t.number}" + (f" seed {index}" if len(seeds) > 1 else ""))
    if missing:
        raise ConfigError(f"--max-images: extending needs each seed's checkpoint, and trial{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} kept none (no run artifact "
                          "[seed-i/]checkpoint/checkpoint.pt, none under --checkpoint-dir); race without --max-images")


def _images_trained(t: optuna.trial.FrozenTrial, spec: SweepSpec, rungs: tuple[int, ...], rung: int, seeds: int) -> int:
    """Images trial ``t`` and the attempts it took over trained for its seeds: its own ``images_trained``, plus what
    each earlier attempt (killed, then retried from its checkpoint) trained up to the step the seed resumed from
    (``resumed``: its whole seed where it finished it), from the seed's start (a race extension's lower rung, else
    0). So a race killed and started again counts the images an uninterrupted one does; the steps a killed attempt
    trained after its last checkpoint (trained again by the retry) are lost and not counted, nor its CPU seconds.
    Units: images seen (optimiser steps × ``batch_size``)."""
    own = t.user_attrs.get(IMAGES_TRAINED)
    if own is None:  # a trial from before the cost was recorded: every seed trained to its rung here
        return seeds * rung
    start = rungs[rungs.index(rung) - 1] if RACE_FROM in t.user_attrs and rung in rungs[1:] else 0
    batch = int({**spec.fixed, **t.params}.get("batch_size", TrainConfig.batch_size))
    earlier = 0
    for how in (t.user_attrs.get(RESUMED) or {}).values():
        if isinstance(how, dict) and how.get("attempt") is not None:
            reached = rung if how.get("finished") else min(rung, int(how.get("step") or 0) * batch)
            earlier += max(0, reached - start)
    return int(own) + earlier


def _metric_key(label: str) -> str:
    """An MLflow metric key from a configuration's label (letters, digits, ``_ - . /`` and spaces only)."""
    return "".join(ch if ch.isalnum() or ch in "_-. " else "_" for ch in label).strip()


def _short_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _poll_s(study: optuna.Study) -> float:
    interval = heartbeat_interval(study) or 5.0
    return min(float(interval), 5.0)


def _keep_alive(study: optuna.Study, stop: threading.Event) -> None:
    """Refresh :data:`ALIVE_ATTR` while the race runs, so waiting workers know a next round may come."""
    interval = _poll_s(study)
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a database hiccup: the next refresh is in a few seconds
            study.set_user_attr(ALIVE_ATTR, time.time())
        stop.wait(interval)
