"""Studies: create once, load anywhere, run trials in this process.

The spec is stored in the study's user attributes (``spec``), so a worker needs only the study's
name and storage URL. Storage is Optuna's RDB storage (SQLite by default, PostgreSQL for many
workers) with heartbeats: a trial whose worker died is failed after ``grace_period`` seconds and
re-queued by :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, and its MLflow run is ended KILLED.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from typing import Callable

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from betasweep.errors import ConfigError, DivergenceError
from betasweep.sweeps.objective import Objective
from betasweep.sweeps.spec import SweepSpec, parse_spec
from betasweep.tracking import Tracker, TrackingError

__all__ = [
    "DEFAULT_STORAGE",
    "make_sampler",
    "make_pruner",
    "make_storage",
    "create_study",
    "load_study",
    "run_trials",
    "warn_if_shared_sqlite",
    "WorkerStopped",
]

DEFAULT_STORAGE = "sqlite:///betasweep.db"
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 180
MAX_RETRY = 3


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
    return optuna.samplers.NSGAIISampler(seed=seed, **options)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """Median, Hyperband (resources counted in training samples) or none."""
    options = {k: v for k, v in spec.pruner.items() if k != "name"}
    name = spec.pruner["name"]
    if name == "none" or spec.intermediate is None:
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(**options)
    first = int(min(spec.intermediate_at) * spec.train_samples)
    return optuna.pruners.HyperbandPruner(min_resource=max(1, first), max_resource=spec.train_samples, **options)


def _end_stale_run(tracking_uri: str | None) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Called when a dead worker's trial is failed: end its MLflow run KILLED, then re-queue the trial."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        uri = tracking_uri or study.user_attrs.get("mlflow_tracking_uri")
        if run_id and uri:
            try:
                tracker = Tracker(uri, study.study_name)
                tracker.end_run_if_running(run_id, "KILLED")
                tracker.client.set_tag(run_id, "optuna.state", "FAIL")
                tracker.client.set_tag(run_id, "fail_reason", "worker stopped sending heartbeats")
            except TrackingError as error:
                logging.getLogger(__name__).warning("could not end run %s of stale trial %d: %s", run_id, trial.number, error)
        retry(study, trial)

    return callback


def make_storage(
    url: str,
    *,
    tracking_uri: str | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
) -> RDBStorage:
    """Optuna RDB storage with heartbeats and retry of a dead worker's trial.

    Args:
        url: ``sqlite:///file.db`` or ``postgresql+psycopg://user:pw@host:port/db``.
        tracking_uri: where the trials' MLflow runs are (to end a dead worker's run).

    Raises:
        ConfigError: the URL is not a database URL Optuna can open.
    """
    engine_kwargs = {"pool_pre_ping": True} if url.startswith("postgresql") else {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retry callback
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_end_stale_run(tracking_uri),
        )
    except Exception as error:  # sqlalchemy.exc.ArgumentError, OperationalError, ModuleNotFoundError, ...
        raise ConfigError(f"--storage {url!r}: cannot open ({type(error).__name__}: {str(error).splitlines()[0]})") from None


def create_study(spec: SweepSpec, storage: RDBStorage, tracker: Tracker, *, load_if_exists: bool = False) -> optuna.Study:
    """Create the study and its MLflow parent run, storing the spec and the parent run's id in the study.

    With ``load_if_exists``, an existing study of the same name is loaded instead (its stored spec
    must equal ``spec``).

    Raises:
        ConfigError: the study exists (and ``load_if_exists`` is false), or exists with another spec.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=spec.study, directions=spec.directions,
            sampler=make_sampler(spec), pruner=make_pruner(spec),
        )
    except optuna.exceptions.DuplicatedStudyError:
        if not load_if_exists:
            raise ConfigError(f"study {spec.study!r} already exists in this storage") from None
        study, stored = load_study(spec.study, storage)
        if stored.to_dict() != spec.to_dict():
            raise ConfigError(f"study {spec.study!r} exists with a different spec; use another study name") from None
        return study
    study.set_user_attr("spec", spec.to_dict())
    parent = tracker.create_parent_run(
        {"study": spec.study, "dataset": spec.dataset["name"], "train_samples": spec.train_samples,
         "search_space": ", ".join(p.name for p in spec.search_space), "sampler": spec.sampler["name"],
         "pruner": spec.pruner["name"], "directions": ",".join(spec.directions)}
    )
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.set_user_attr("mlflow_tracking_uri", tracker.tracking_uri)
    return study


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
    raw = summary.user_attrs.get("spec")
    if raw is None:
        raise ConfigError(f"--study {name!r}: not a betasweep study (no spec stored)")
    spec = parse_spec(raw)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(spec, seed_offset), pruner=make_pruner(spec))
    return study, spec


class WorkerStopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM (Ctrl-C raises KeyboardInterrupt): stop after closing the trial."""


def run_trials(
    study: optuna.Study,
    spec: SweepSpec,
    tracker: Tracker,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> bool:
    """Run trials of ``study`` in this process until ``n_trials`` more have run or ``timeout`` seconds pass.

    Diverging trials end FAIL and the loop goes on; any other exception stops it. SIGTERM and
    Ctrl-C stop it gracefully: the current trial ends FAIL (``fail_reason`` says why), its MLflow
    run ends KILLED, and its params are queued again so another worker (or the next run) redoes it.

    Returns:
        True if the loop ended by itself, False if it was stopped by a signal.
    """
    echo = echo or (lambda message: None)
    parent = study.user_attrs.get("mlflow_parent_run_id") or tracker.find_parent_run()
    if parent is None:
        raise ConfigError(f"study {study.study_name!r} has no MLflow parent run; create it with `betasweep study create`")
    objective = Objective(spec, tracker, parent, progress=progress, echo=echo)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def on_sigterm(signum, frame):
        raise WorkerStopped(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(DivergenceError,))
    except KeyboardInterrupt as stop:
        _requeue_interrupted(study, objective.current_trial, echo=echo)
        return False
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return True


def _requeue_interrupted(study: optuna.Study, number: int | None, *, echo: Callable[[str], None]) -> None:
    """Queue the interrupted trial's params again (Optuna marked it FAIL; the objective recorded why)."""
    if number is None:
        return
    trial = study.trials[number]
    if trial.state != optuna.trial.TrialState.FAIL:
        return
    study.enqueue_trial(trial.params, user_attrs={"retried_from": number})
    echo(f"trial {number}: {trial.user_attrs.get('fail_reason', 'stopped')}; marked failed and queued again")


def warn_if_shared_sqlite(storage_url: str, study: optuna.Study | None, *, worker: bool, echo: Callable[[str], None]) -> bool:
    """Warn when a SQLite study is (or is about to be) shared by several processes.

    SQLite locks the whole file on each write; several workers on it see "database is locked"
    errors and lost heartbeats. Returns whether it warned.
    """
    if not storage_url.startswith("sqlite"):
        return False
    running = study is not None and any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))
    if worker or running:
        echo("warning: SQLite storage is for one process; for several workers use PostgreSQL "
             "(--storage postgresql+psycopg://USER:PASSWORD@HOST:5432/DB)")
        return True
    return False


def worker_seed_offset() -> int:
    """A per-process sampler seed offset, so concurrent workers do not propose the same first trials."""
    return os.getpid()
