"""Studies: create once, load anywhere, run trials in this process.

The spec is stored in the study's user attributes (``spec``), so a worker needs only the study's
name and storage URL. Storage is Optuna's RDB storage (SQLite by default, PostgreSQL for many
workers) or, for several processes on one machine (``--jobs N``), Optuna's JournalStorage on a
file (``betasweep.journal``), both with heartbeats: a trial whose worker died is failed after
``grace_period`` seconds and re-queued by :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`,
and its MLflow run is ended KILLED.

Workers of one study can share a study-wide target (``max_complete``): a worker starts a trial only
while the study's COMPLETE plus RUNNING trials are fewer than the target, so the study ends with
exactly that many complete trials (on PostgreSQL the check and the trial's creation are serialised
across workers by an advisory lock). While the target is covered by trials running elsewhere a
worker waits, failing stale trials as it polls, so a killed worker's trial is still retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import threading
import time
import warnings
from typing import Callable, Iterator

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from betasweep.errors import BetasweepError, ConfigError, DivergenceError
from betasweep.sweeps.objective import Objective
from betasweep.sweeps.proxy import _first_line
from betasweep.sweeps.proxy import redact_url as redact
from betasweep.sweeps.records import (FAIL_REASON, MLFLOW_RUN_ID, RACE_TASK_ATTRS, RETRIED_FROM, SLURM_TASK,
                                      STUDY_PARENT_RUN, STUDY_SPEC, STUDY_TRACKING_URI, WORKER, race_alive)
from betasweep.sweeps.spec import SweepSpec, parse_spec
from betasweep.tracking import Tracker

__all__ = [
    "DEFAULT_STORAGE",
    "DEFAULT_JOURNAL",
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
]

DEFAULT_STORAGE = "sqlite:///betasweep.db"
DEFAULT_JOURNAL = "betasweep.journal"
"""The local study of several processes (``--jobs N`` with the default storage): Optuna's
JournalStorage on this file, beside ``betasweep.db``."""
JOURNAL_SUFFIXES = (".journal", ".log")
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 180
MAX_RETRY = 3
WAIT_POLL_S = 5.0  # longest sleep of a worker waiting for trials running elsewhere

_log = logging.getLogger(__name__)


class StorageError(BetasweepError):
    """The study's database went away (or failed) while a worker used it."""


def _storage_errors() -> tuple[type[BaseException], ...]:
    import sqlalchemy.exc

    errors: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)
    try:  # behind the storage proxy (grpc://): the proxy went away
        import grpc

        errors += (grpc.RpcError,)
    except ImportError:
        pass
    return errors


STORAGE_ERRORS = _storage_errors()
"""What Optuna's RDB storage raises when its database is unreachable or fails mid-operation."""


def storage_failure(error: BaseException) -> BaseException | None:
    """The storage error in ``error``'s chain (itself, its ``__cause__`` or ``__context__``), if any.

    A lost database does not always surface as itself: when ``tell`` fails inside
    ``study.optimize``, Optuna 5's ``_run_trial`` then raises ``UnboundLocalError``
    (``updated_state``) with the storage error only as its context.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, STORAGE_ERRORS):
            return error
        seen.add(id(error))
        # `raise ... from None` hides its context (e.g. "no such study" over the proxy's NOT_FOUND): not a lost database
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


class _Storage(RDBStorage):
    """:class:`RDBStorage` whose heartbeat thread survives a short database outage.

    Optuna's heartbeat thread dies on the first failed write, after which the trial looks dead to
    every other worker although it still trains. Here a failed heartbeat is logged and retried at
    the next interval, so an outage shorter than the grace period costs nothing.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except STORAGE_ERRORS as error:
            _log.warning("heartbeat of trial id %d not recorded (database unreachable?): %s",
                         trial_id, _first_line(error))


def is_journal(url: str) -> bool:
    """Whether ``url`` names a journal file: a path (no ``scheme://``) ending ``.journal`` or ``.log``, as
    Optuna's CLI and optuna-dashboard take a JournalFileBackend file for ``--storage``."""
    return "://" not in url and url.endswith(JOURNAL_SUFFIXES)


def local_storage(url: str, jobs: int = 1) -> str:
    """The storage ``betasweep sweep`` / ``race`` use for ``url`` with ``jobs`` processes on this machine.

    SQLite locks the whole file on each write and is for one process: with ``jobs > 1`` the default
    ``sqlite:///betasweep.db`` becomes :data:`DEFAULT_JOURNAL` (Optuna's JournalStorage, whose
    file backend several processes of one machine append to under a file lock). A SQLite URL the
    user named is refused for ``jobs > 1``; any other URL (a journal file, PostgreSQL, the proxy)
    is kept. With ``jobs == 1`` the default is :data:`DEFAULT_JOURNAL` when that file exists and
    ``betasweep.db`` does not (the study of an earlier ``--jobs`` run), so ``betasweep report``
    finds it without ``--storage``.

    Raises:
        ConfigError: ``jobs > 1`` with a SQLite URL other than the default.
    """
    if url == DEFAULT_STORAGE:
        if jobs > 1 or (os.path.isfile(DEFAULT_JOURNAL) and not os.path.isfile("betasweep.db")):
            return DEFAULT_JOURNAL
        return url
    if jobs > 1 and url.startswith("sqlite"):
        raise ConfigError(f"--storage {url} with --jobs {jobs}: SQLite is for one process; give a journal file "
                          f"(--storage {DEFAULT_JOURNAL}) or PostgreSQL for several")
    return url


class _JournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's :class:`JournalStorage` on a file, with heartbeats (Optuna's journal has none).

    Each running trial's worker appends its time as the trial's system attribute ``heartbeat``
    every ``heartbeat_interval`` seconds; a RUNNING trial whose last heartbeat (or start) is older
    than ``grace_period`` is stale: :func:`optuna.storages.fail_stale_trials` fails it and the
    callback queues its retry, as with :class:`RDBStorage`. Processes share one clock (one machine).
    """

    def __init__(self, path: str, *, heartbeat_interval: int, grace_period: int, stale_trial_callback) -> None:
        from optuna.storages.journal import JournalFileBackend

        super().__init__(JournalFileBackend(path))
        self.path = path
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError, RuntimeError, OSError) as error:
            _log.debug("heartbeat of trial id %d not recorded: %s", trial_id, error)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            last = max(float(trial.system_attrs.get("heartbeat", 0.0)), started)  # a retry carries its attempt's
            if now - last > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self._stale_trial_callback


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


def _end_stale_run(tracking_uri: str | None) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Called when a dead worker's trial is failed: end its MLflow run KILLED, then re-queue the trial."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get(MLFLOW_RUN_ID)
        uri = tracking_uri or study.user_attrs.get(STUDY_TRACKING_URI)
        if run_id and uri:
            try:
                tracker = Tracker(uri, study.study_name)
                tracker.end_run_if_running(run_id, "KILLED")
                tracker.client.set_tag(run_id, "optuna.state", "FAIL")
                tracker.client.set_tag(run_id, "fail_reason", "worker stopped sending heartbeats")
            except Exception as error:  # TrackingError, MlflowException: the retry must still be queued
                _log.warning("could not end run %s of stale trial %d: %s", run_id, trial.number, error)
        retry(study, trial)

    return callback


def make_storage(
    url: str,
    *,
    tracking_uri: str | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
) -> optuna.storages.BaseStorage:
    """Optuna storage with heartbeats and retry of a dead worker's trial.

    Args:
        url: ``sqlite:///file.db``, ``postgresql+psycopg://user:pw@host:port/db``,
            ``grpc://host:port`` for ``betasweep storage-proxy`` (heartbeats through the proxy: see
            :mod:`betasweep.sweeps.proxy`), or a journal file ``PATH.journal`` / ``PATH.log``
            (:func:`is_journal`; created if missing): Optuna's JournalStorage, for several
            processes on one machine.
        tracking_uri: where the trials' MLflow runs are (to end a dead worker's run).

    Raises:
        ConfigError: the URL is not a database URL Optuna can open, or no proxy answers at it.
    """
    url = local_storage(url)  # the default's journal, after a --jobs run (see local_storage)
    if url.startswith("grpc:"):
        from betasweep.sweeps.proxy import open_grpc_storage

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # gRPC proxy, heartbeats
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return open_grpc_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                 stale_trial_callback=_end_stale_run(tracking_uri))
    if is_journal(url):
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # retry callback
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            return _JournalStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                   stale_trial_callback=_end_stale_run(tracking_uri))
        except Exception as error:  # OSError: a folder that does not exist or cannot be written
            raise ConfigError(f"--storage {url}: cannot open the journal file ({_first_line(error)})") from None
    engine_kwargs = {"pool_pre_ping": True} if url.startswith("postgresql") else {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retry callback
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _Storage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=_end_stale_run(tracking_uri),
        )
    except Exception as error:  # sqlalchemy.exc.ArgumentError, OperationalError, ModuleNotFoundError, ...
        raise ConfigError(f"--storage {redact(url)}: cannot open ({_first_line(error)})") from None


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


class WorkerStopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM (Ctrl-C raises KeyboardInterrupt): stop after closing the trial.

    Every stop raised in this process is recorded in ``WorkerStopped.raised`` (its reason), so a
    caller of the worker (the Slurm task, :class:`betasweep.sweeps.launcher.WorkerTask`) can tell a
    worker stopped by a signal from one that finished.
    """

    raised: list[str] = []

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        WorkerStopped.raised.append(reason)


def run_trials(
    study: optuna.Study,
    spec: SweepSpec,
    tracker: Tracker,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    max_complete: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    end_parent: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
) -> bool:
    """Run trials of ``study`` in this process, one at a time, until a limit is reached.

    Limits: ``n_trials`` trials run here, ``timeout`` seconds (no trial starts after it), and the
    study-wide ``max_complete``: no trial starts once the study's COMPLETE plus RUNNING trials (of
    all workers) reach it; while only trials running elsewhere cover it, this worker waits (failing
    stale trials as it polls, so a dead worker's trial is retried) and stops when the study has
    ``max_complete`` COMPLETE trials and (with heartbeats) none RUNNING elsewhere. A queued
    (WAITING) trial, the retry of a stopped or dead worker's trial, always runs: where no lock
    orders the workers (behind the storage proxy) a trial started in the moment before the retry
    was queued can carry the study one past its target.

    Diverging trials end FAIL and the loop goes on, as does a trial that another worker failed as
    stale (it missed heartbeats; its retry runs elsewhere). Any other exception stops the loop;
    storage errors propagate as Optuna or SQLAlchemy raise them (see :data:`STORAGE_ERRORS`).
    SIGTERM and Ctrl-C stop it gracefully: the current trial ends FAIL (``fail_reason`` says why),
    its MLflow run ends KILLED, and its params are queued again so another worker (or the next run)
    redoes it. A retried trial continues from its failed attempt's checkpoints (in the runs'
    artifacts, or under ``checkpoint_dir`` on a filesystem every worker shares: see
    :mod:`betasweep.sweeps.resume`).

    The study's MLflow parent run is RUNNING while trials run here (an ended one is reopened when a
    trial starts) and ends FINISHED when the study reaches its target: the ``max_complete`` COMPLETE
    trials, ended by whichever worker sees it; with ``end_parent`` (this process alone runs the
    study, as ``betasweep sweep``) also when the loop ends, or KILLED when a signal stops it.

    Returns:
        True if the loop ended by itself, False if it was stopped by a signal.
    """
    echo = echo or (lambda message: None)
    parent = study.user_attrs.get(STUDY_PARENT_RUN) or tracker.find_parent_run()
    if parent is None:
        raise ConfigError(f"study {study.study_name!r} has no MLflow parent run; create it with `betasweep study create`")
    objective = Objective(spec, tracker, parent, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir)
    # Optuna logs each failed trial with its traceback; the objective and the worker report failures in one line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def on_sigterm(signum, frame):
        raise WorkerStopped(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        ran, waiting = 0, False
        while n_trials is None or ran < n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                break
            with _start_gate(study, max_complete) as gate:
                verdict = _verdict(study, max_complete)
                if verdict == "done":
                    echo(f"study {study.study_name!r} has {max_complete} complete trial(s): done")
                    break
                if verdict == "run" and ran == 0 and tracker.reopen_run(parent):
                    echo(f"study {study.study_name!r}: its MLflow run is RUNNING again while trials are added")
                if verdict == "wait":
                    gate.release()
                    if not waiting:
                        echo("waiting: the trials that would reach the study's target are running in other workers")
                    waiting = True
                    _wait(study, deadline)
                    continue
                ran, waiting = ran + 1, False
                _run_one(study, objective, gate.release, echo)
    except KeyboardInterrupt:
        _requeue_interrupted(study, objective.current_trial, echo=echo)
        if end_parent:
            _end_parent(tracker, parent, "KILLED", echo)
        return False
    except Exception as error:
        lost = _tracking_failure(error)
        if lost is None:
            raise
        # MLflow stayed down past the retry budget: the trial is queued again (it resumes from its checkpoints
        # and finished seeds when a worker runs it) and this worker stops with one line.
        _requeue_interrupted(study, objective.current_trial, echo=echo)
        raise lost from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if end_parent or _target_reached(study, max_complete):
        _end_parent(tracker, parent, "FINISHED", echo)
    return True


def _tracking_failure(error: BaseException | None):
    """The :class:`~betasweep.tracking.TrackingUnavailable` in ``error``'s chain, if any."""
    from betasweep.tracking import TrackingUnavailable

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, TrackingUnavailable):
            return error
        seen.add(id(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


def _target_reached(study: optuna.Study, max_complete: int | None) -> bool:
    """Whether the study has its study-wide target of COMPLETE trials (never, without a target)."""
    if max_complete is None:
        return False
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= max_complete


def _end_parent(tracker: Tracker, parent: str, status: str, echo: Callable[[str], None]) -> None:
    """End the study's parent run (once: a worker that finds it ended changes nothing); a failure is one line."""
    try:
        tracker.end_parent_run(parent, status)
    except Exception as error:  # MlflowException, TrackingError: the trials are stored, only the status is late
        echo(f"warning: could not end the study's MLflow run {parent} ({_first_line(error)})")


def _verdict(study: optuna.Study, max_complete: int | None) -> str:
    """``"run"`` a trial now, ``"wait"`` for the trials running elsewhere, or ``"done"``."""
    if max_complete is None:
        return "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial no longer counts as running
    states = [t.state for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))]
    if TrialState.WAITING in states:
        # A queued trial (the retry of a stopped or dead worker's trial) is owed: it runs even when the
        # target was reached meanwhile by a trial another worker started before the retry was queued.
        return "run"
    complete = states.count(TrialState.COMPLETE)
    if complete >= max_complete:
        # A trial still RUNNING elsewhere may be a dead worker's (behind the proxy, where no lock keeps
        # the count exact, the target can be reached while it is): wait until it ends or turns stale and
        # is retried. Without heartbeats a dead trial never turns stale, so there is nothing to wait for.
        heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
        if heartbeat and TrialState.RUNNING in states:
            return "wait"
        # A race (betasweep race) queues its next round once its current one is trained: wait for it while the
        # racing process is alive.
        storage = getattr(study._storage, "_backend", study._storage)
        return "wait" if race_alive(study, getattr(storage, "grace_period", None) or GRACE_PERIOD_S) else "done"
    return "wait" if len(states) >= max_complete else "run"


def _wait(study: optuna.Study, deadline: float | None) -> None:
    """Sleep until the next look at the study (the heartbeat interval, at most ``WAIT_POLL_S``)."""
    storage = study._storage
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)() or WAIT_POLL_S
    pause = min(float(interval), WAIT_POLL_S)
    if deadline is not None:
        pause = max(0.0, min(pause, deadline - time.monotonic()))
    time.sleep(pause)


def _run_one(study: optuna.Study, objective: Objective, release: Callable[[], None], echo: Callable[[str], None]) -> None:
    """One trial through ``study.optimize`` (heartbeat, stale-trial check, tell), releasing the start gate once it exists."""
    taken_over: list[int] = []

    def run(trial: optuna.Trial):
        release()  # the trial exists (RUNNING): other workers may count it and start theirs
        trial.set_user_attr(WORKER, worker_id())
        if slurm_task_id():
            trial.set_user_attr(SLURM_TASK, slurm_task_id())
        try:
            return objective(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            taken_over.append(trial.number)
            raise

    try:
        study.optimize(run, n_trials=1, catch=(DivergenceError,))
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        # Another worker failed our trial as stale (we missed heartbeats) and queued its retry:
        # optuna's tell then refuses the finished trial with a ValueError.
        if not taken_over:
            raise
        echo(f"trial {taken_over[0]}: failed by another worker (no heartbeat within the grace period) "
             "and queued again there; going on")
    finally:
        release()
    objective.current_trial = None  # finished: a stop from now on interrupts no trial


@contextlib.contextmanager
def _start_gate(study: optuna.Study, max_complete: int | None) -> Iterator["_Gate"]:
    """Serialise "count the study's trials, then start one" across workers (PostgreSQL only).

    A transaction-scoped advisory lock keyed by the study's name, held on a connection of its own
    until ``gate.release()`` (or the block's end): a worker killed while holding it loses its
    connection and with it the lock. On a journal file, an exclusive ``flock`` of ``FILE.gate``
    (the kernel drops it with a killed process). Elsewhere (SQLite: one worker) the gate is a no-op.
    """
    if max_complete is not None and isinstance(study._storage, _JournalStorage):
        gate = _Gate(_FileLock(study._storage.path + ".gate"))
        try:
            yield gate
        finally:
            gate.release()
        return
    engine = _engine_of(study) if max_complete is not None else None
    if engine is None or engine.dialect.name != "postgresql":
        yield _Gate(None)
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"betasweep:{study.study_name}".encode()).digest()[:8], "big", signed=True)
    connection = engine.connect()
    gate = _Gate(connection)
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield gate
    finally:
        gate.release()


class _Gate:
    """The held start gate: ``release()`` ends its transaction (freeing the lock) and returns the connection."""

    def __init__(self, connection) -> None:
        self._connection = connection

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.rollback()
            connection.close()
        except Exception:  # the database went away: drop the connection, the lock went with it
            with contextlib.suppress(Exception):
                connection.invalidate()


class _FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created), held until :meth:`rollback`/:meth:`close` (the
    :class:`_Gate` connection protocol)."""

    def __init__(self, path: str) -> None:
        import fcntl

        self._file = open(path, "a")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self._file.close()  # closing the descriptor drops the lock

    def invalidate(self) -> None:
        self.close()


def _engine_of(study: optuna.Study):
    """The SQLAlchemy engine under the study's storage (Optuna wraps RDB storage in a cache), or None."""
    storage = study._storage
    storage = getattr(storage, "_backend", storage)
    return getattr(storage, "engine", None)


def _requeue_interrupted(study: optuna.Study, number: int | None, *, echo: Callable[[str], None]) -> None:
    """Queue the interrupted trial's params again (Optuna marked it FAIL; the objective recorded why)."""
    if number is None:
        return
    trial = study.trials[number]
    if trial.state != optuna.trial.TrialState.FAIL:
        return
    race = {k: v for k, v in trial.user_attrs.items() if k in RACE_TASK_ATTRS}  # a race's task stays its task
    study.enqueue_trial(trial.params, user_attrs={**race, RETRIED_FROM: number})
    echo(f"trial {number}: {trial.user_attrs.get(FAIL_REASON, 'stopped')}; marked failed and queued again")


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


def worker_id() -> str:
    """``host:pid`` of this process, stored in each trial it runs (user attribute ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def slurm_task_id() -> str | None:
    """``JOBID_TASK`` of the Slurm array task this process runs in (``JOBID`` outside an array), or None."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def worker_seed_offset() -> int:
    """A per-process sampler seed offset, so concurrent workers do not propose the same first trials."""
    return os.getpid()
