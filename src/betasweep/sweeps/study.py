"""Studies: create once, load anywhere.

The spec is stored in the study's user attributes (``spec``), so a worker needs only the study's
name and storage URL (storages with heartbeats: :mod:`betasweep.sweeps.storage`); the loop that
runs its trials, alone or beside other workers, is :mod:`betasweep.sweeps.worker`. Both modules'
entry points are named here as well (``make_storage``, ``run_trials``, ...).
"""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage

from betasweep.errors import ConfigError
from betasweep.sweeps.records import STUDY_PARENT_RUN, STUDY_SPEC, STUDY_TRACKING_URI
from betasweep.sweeps.spec import SweepSpec, parse_spec
# The storages and the worker loop, named here as well: callers open a study, then run it.
from betasweep.sweeps.storage import (DEFAULT_JOURNAL, DEFAULT_STORAGE, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S,
                                      STORAGE_ERRORS, StorageError, is_journal, local_storage, make_storage, redact,
                                      storage_failure, warn_if_shared_sqlite)
from betasweep.sweeps.worker import WAIT_POLL_S, WorkerStopped, run_trials, worker_id, worker_seed_offset
from betasweep.tracking import Tracker

__all__ = [
    "DEFAULT_STORAGE",
    "DEFAULT_JOURNAL",
    "GRACE_PERIOD_S",
    "HEARTBEAT_INTERVAL_S",
    "WAIT_POLL_S",
    "is_journal",
    "local_storage",
    "make_sampler",
    "make_pruner",
    "make_storage",
    "create_study",
    "load_study",
    "run_trials",
    "warn_if_shared_sqlite",
    "WorkerStopped",
    "StorageError",
    "STORAGE_ERRORS",
    "storage_failure",
    "redact",
    "worker_id",
    "worker_seed_offset",
]


def make_sampler(spec: SweepSpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded (``seed + seed_offset``: workers of one study pass distinct offsets)."""
    options = {k: v for k, v in spec.sampler.items() if k != "name"}
    seed = options.pop("seed", None)
    seed = None if seed is None else int(seed) + seed_offset
    name = spec.sampler["name"]
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":  # every combination once, in a seeded order: the same order in every worker (no offset),
        # since trial n < grid size takes grid point n of the sampler's shuffled order
        base = spec.sampler.get("seed")
        return optuna.samplers.GridSampler({p.name: list(p.choices) for p in spec.search_space},
                                           seed=None if base is None else int(base))
    return optuna.samplers.NSGAIISampler(seed=seed, **options)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """Median, Hyperband (resources counted in training samples over all of a trial's seeds) or none."""
    options = {k: v for k, v in spec.pruner.items() if k != "name"}
    name = spec.pruner["name"]
    if name == "none" or spec.intermediate is None:
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(**options)
    first = int(min(spec.intermediate_at) * spec.train_samples)
    return optuna.pruners.HyperbandPruner(min_resource=max(1, first), max_resource=spec.train_samples * spec.seeds_per_trial,
                                          **options)


def create_study(spec: SweepSpec, storage: RDBStorage, tracker: Tracker, *, load_if_exists: bool = False) -> optuna.Study:
    """Create the study and its MLflow parent run, storing the spec and the parent run's id in the study.

    With ``load_if_exists``, an existing study of the same name is loaded instead (its stored spec
    must equal ``spec``). A study left unfinished by an earlier call (the tracking server or the
    database failed after the study was created: no spec or no parent run stored) is completed,
    with or without ``load_if_exists``: running the same command again repairs it. An existing
    parent run of the study (tag ``betasweep.role = study``) is reused, so none is made twice.

    Raises:
        ConfigError: the study exists complete (and ``load_if_exists`` is false), or exists with another spec.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=spec.study, directions=spec.directions,
            sampler=make_sampler(spec), pruner=make_pruner(spec),
        )
    except optuna.exceptions.DuplicatedStudyError:
        existing = optuna.load_study(study_name=spec.study, storage=storage)
        raw = existing.user_attrs.get(STUDY_SPEC)
        complete = raw is not None and STUDY_PARENT_RUN in existing.user_attrs
        if complete and not load_if_exists:
            raise ConfigError(f"study {spec.study!r} already exists in this storage") from None
        if raw is not None and parse_spec(raw).to_dict() != spec.to_dict():
            raise ConfigError(f"study {spec.study!r} exists with a different spec; use another study name") from None
        if complete:
            return load_study(spec.study, storage)[0]
        study = optuna.load_study(study_name=spec.study, storage=storage, sampler=make_sampler(spec),
                                  pruner=make_pruner(spec))
        if raw is not None:  # only the parent run is missing
            _attach_parent_run(study, spec, tracker)
            return study
    study.set_user_attr(STUDY_SPEC, spec.to_dict())
    for method, params in spec.methods.items():  # one trial of each method first, at the middle of its choices
        study.enqueue_trial({"model": method, **{p.name: p.values()[(len(p.values()) - 1) // 2] if p.choices
                                                 else p.values()[0] for p in params}})
    _attach_parent_run(study, spec, tracker)
    return study


def _attach_parent_run(study: optuna.Study, spec: SweepSpec, tracker: Tracker) -> None:
    """The study's MLflow parent run (an existing one of the study, else a new one), its id and URI stored in the study."""
    parent = tracker.find_parent_run() or tracker.create_parent_run(
        {"study": spec.study, "dataset": spec.dataset["name"], "train_samples": spec.train_samples,
         "search_space": ", ".join(p.name for p in spec.search_space), "sampler": spec.sampler["name"],
         "pruner": spec.pruner["name"], "directions": ",".join(spec.directions)}
    )
    study.set_user_attr(STUDY_PARENT_RUN, parent)
    study.set_user_attr(STUDY_TRACKING_URI, tracker.tracking_uri)


def load_study(name: str, storage: RDBStorage, *, seed_offset: int = 0) -> tuple[optuna.Study, SweepSpec]:
    """Load an existing study and its spec (from the study's user attributes).

    Raises:
        ConfigError: no such study, or it was not created by betasweep.
    """
    try:
        summary = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ConfigError(f"--study {name!r}: no such study in this storage (found: {', '.join(known) or 'none'})") from None
    raw = summary.user_attrs.get(STUDY_SPEC)
    if raw is None:
        raise ConfigError(f"--study {name!r}: not a betasweep study (no spec stored)")
    spec = parse_spec(raw)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(spec, seed_offset), pruner=make_pruner(spec))
    return study, spec
