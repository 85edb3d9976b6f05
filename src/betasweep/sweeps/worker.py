"""The worker loop: run a study's trials in this process, one at a time, beside any other workers.

Workers of one study can share a study-wide target (``max_complete``): a worker starts a trial only
while the study's COMPLETE plus RUNNING trials are fewer than the target, so the study ends with
exactly that many complete trials (on PostgreSQL the check and the trial's creation are serialised
across workers by an advisory lock, on a journal file by a file lock: :func:`start_gate`). While the
target is covered by trials running elsewhere a worker waits, failing stale trials as it polls, so a
killed worker's trial is still retried; while a race (:mod:`betasweep.sweeps.race`) is alive it waits
for the race's next round.

:func:`run_trials` is the loop of ``betasweep sweep`` and ``betasweep worker``; :func:`run_one`,
:func:`start_gate` and :func:`requeue_interrupted` are its steps, which a race and ``--jobs`` workers
serving queued trials (:mod:`betasweep.sweeps.jobs`) drive themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import threading
import time
import warnings
from typing import Callable, Iterator

import optuna
import sqlalchemy
from optuna.trial import TrialState

from betasweep.errors import ConfigError, DivergenceError, in_chain
from betasweep.sweeps.objective import Objective
from betasweep.sweeps.proxy import first_line
from betasweep.sweeps.records import (FAIL_REASON, RACE_TASK_ATTRS, RETRIED_FROM, SLURM_TASK, STUDY_PARENT_RUN, WORKER,
                                      race_alive)
from betasweep.sweeps.spec import SweepSpec
from betasweep.sweeps.storage import engine_of, grace_period, heartbeat_interval, journal_path
from betasweep.tracking import Tracker, TrackingUnavailable

__all__ = ["WAIT_POLL_S", "WorkerStopped", "run_trials", "run_one", "start_gate", "Gate", "requeue_interrupted",
           "worker_id", "slurm_task_id", "worker_seed_offset"]

WAIT_POLL_S = 5.0
"""Longest sleep of a worker waiting for trials running elsewhere (seconds)."""


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

    deadline = None if timeout is None else time.monotonic() + timeout
    with _stop_on_sigterm():  # the handler stays in place while a stopped trial is queued again
        try:
            _loop(study, objective, tracker, parent, n_trials=n_trials, deadline=deadline, max_complete=max_complete,
                  echo=echo)
        except KeyboardInterrupt:
            requeue_interrupted(study, objective.current_trial, echo=echo)
            if end_parent:
                _end_parent(tracker, parent, "KILLED", echo)
            return False
        except Exception as error:
            lost = _tracking_failure(error)
            if lost is None:
                raise
            # MLflow stayed down past the retry budget: the trial is queued again (it resumes from its checkpoints
            # and finished seeds when a worker runs it) and this worker stops with one line.
            requeue_interrupted(study, objective.current_trial, echo=echo)
            raise lost from None
    if end_parent or _target_reached(study, max_complete):
        _end_parent(tracker, parent, "FINISHED", echo)
    return True


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises :class:`WorkerStopped` while the block runs (in the main thread; elsewhere nothing changes)."""
    def on_sigterm(signum, frame):
        raise WorkerStopped(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _loop(study: optuna.Study, objective: Objective, tracker: Tracker, parent: str, *, n_trials: int | None,
          deadline: float | None, max_complete: int | None, echo: Callable[[str], None]) -> None:
    """Run trials one at a time until ``n_trials`` ran here, the deadline passed or the study is done (:func:`run_trials`)."""
    ran, waiting = 0, False
    while n_trials is None or ran < n_trials:
        if deadline is not None and time.monotonic() >= deadline:
            break
        with start_gate(study, max_complete) as gate:
            move = _next_move(study, max_complete)
            if move == "done":
                echo(f"study {study.study_name!r} has {max_complete} complete trial(s): done")
                break
            if move == "run" and ran == 0 and tracker.reopen_run(parent):
                echo(f"study {study.study_name!r}: its MLflow run is RUNNING again while trials are added")
            if move == "wait":
                gate.release()
                if not waiting:
                    echo("waiting: the trials that would reach the study's target are running in other workers")
                waiting = True
                _wait(study, deadline)
                continue
            ran, waiting = ran + 1, False
            run_one(study, objective, gate.release, echo)


def _tracking_failure(error: BaseException | None):
    """The :class:`~betasweep.tracking.TrackingUnavailable` in ``error``'s chain, if any."""
    return in_chain(error, TrackingUnavailable)


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
        echo(f"warning: could not end the study's MLflow run {parent} ({first_line(error)})")


def _next_move(study: optuna.Study, max_complete: int | None) -> str:
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
        if heartbeat_interval(study) and TrialState.RUNNING in states:
            return "wait"
        # A race (betasweep race) queues its next round once its current one is trained: wait for it while the
        # racing process is alive.
        return "wait" if race_alive(study, grace_period(study)) else "done"
    return "wait" if len(states) >= max_complete else "run"


def _wait(study: optuna.Study, deadline: float | None) -> None:
    """Sleep until the next look at the study (the heartbeat interval, at most ``WAIT_POLL_S``)."""
    interval = heartbeat_interval(study) or WAIT_POLL_S
    pause = min(float(interval), WAIT_POLL_S)
    if deadline is not None:
        pause = max(0.0, min(pause, deadline - time.monotonic()))
    time.sleep(pause)


def run_one(study: optuna.Study, objective: Objective, release: Callable[[], None], echo: Callable[[str], None]) -> None:
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
def start_gate(study: optuna.Study, max_complete: int | None) -> Iterator["Gate"]:
    """Serialise "count the study's trials, then start one" across workers (PostgreSQL only).

    A transaction-scoped advisory lock keyed by the study's name, held on a connection of its own
    until ``gate.release()`` (or the block's end): a worker killed while holding it loses its
    connection and with it the lock. On a journal file, an exclusive ``flock`` of ``FILE.gate``
    (the kernel drops it with a killed process). Elsewhere (SQLite: one worker) the gate is a no-op.
    """
    journal = journal_path(study) if max_complete is not None else None
    if journal is not None:
        gate = Gate(FileLock(journal + ".gate"))
        try:
            yield gate
        finally:
            gate.release()
        return
    engine = engine_of(study) if max_complete is not None else None
    if engine is None or engine.dialect.name != "postgresql":
        yield Gate(None)
        return
    key = int.from_bytes(hashlib.sha256(f"betasweep:{study.study_name}".encode()).digest()[:8], "big", signed=True)
    connection = engine.connect()
    gate = Gate(connection)
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield gate
    finally:
        gate.release()


class Gate:
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


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created), held until :meth:`rollback`/:meth:`close` (the
    :class:`Gate` connection protocol)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self._file.close()  # closing the descriptor drops the lock

    def invalidate(self) -> None:
        self.close()


def requeue_interrupted(study: optuna.Study, number: int | None, *, echo: Callable[[str], None]) -> None:
    """Queue the interrupted trial's params again (Optuna marked it FAIL; the objective recorded why)."""
    if number is None:
        return
    trial = study.trials[number]
    if trial.state != optuna.trial.TrialState.FAIL:
        return
    race = {k: v for k, v in trial.user_attrs.items() if k in RACE_TASK_ATTRS}  # a race's task stays its task
    study.enqueue_trial(trial.params, user_attrs={**race, RETRIED_FROM: number})
    echo(f"trial {number}: {trial.user_attrs.get(FAIL_REASON, 'stopped')}; marked failed and queued again")


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
    """A per-process sampler seed offset, so concurrent workers do not propose the same first trials.

    The pid alone is not enough: containers have a pid namespace each, so two compose workers are often
    both pid 7; 31 random bits are mixed in (the offset was never reproducible: pids are not).
    """
    return os.getpid() ^ int.from_bytes(os.urandom(4), "little") >> 1
