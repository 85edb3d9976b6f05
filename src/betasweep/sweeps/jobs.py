"""Local jobs: ``--jobs N`` worker processes of one torch thread each on one study.

The small models of a sweep scale poorly with torch's intra-op threads: on 2 cores two processes
of one thread each train two models in less wall time than one process with two threads trains
them one after the other (``benchmarks/jobs.py``). ``betasweep sweep`` and ``betasweep race`` with
``--jobs N`` therefore run trials in this process (at one thread) and in ``N - 1`` worker
processes (``python -m betasweep.sweeps.jobs``, ``OMP_NUM_THREADS=1``) on the same study, the
way ``betasweep worker`` processes share one (:func:`~betasweep.sweeps.study.run_trials`, its
study-wide target of complete trials, heartbeats and retries). The storage must be one that several
processes may write: the default SQLite file becomes Optuna's JournalStorage on ``betasweep.journal``
(:func:`~betasweep.sweeps.study.local_storage`); PostgreSQL and the gRPC proxy are used as they are.

Worker ``i`` seeds its sampler with the spec's seed + ``i`` (this process: + 0), so a sweep's
first trials are the same from run to run; which process takes which trial depends on timing, so
a searching sampler (TPE after its startup trials) may propose other configurations than one
process would. Every trial's value depends only on its params and seeds (same weights at one
thread: ``tests/sweeps/test_jobs.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator

import optuna
from optuna.trial import TrialState

from betasweep.errors import BetasweepError, ConfigError
from betasweep.sweeps.objective import Objective
from betasweep.sweeps.records import STUDY_PARENT_RUN
from betasweep.sweeps.storage import GRACE_PERIOD_S, make_storage
from betasweep.sweeps.study import load_study
from betasweep.sweeps.worker import WAIT_POLL_S, WorkerStopped, requeue_interrupted, run_one, run_trials, start_gate
from betasweep.tracking import Tracker

__all__ = ["DEFAULT_JOBS", "usable_cores", "resolve_jobs", "one_thread", "local_workers", "serve_queued"]

DEFAULT_JOBS = "auto"
"""``--jobs`` by default: one process per usable core (measured best: ``benchmarks/README.md``, ``jobs``)."""

THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
READY_TIMEOUT_S = 300.0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int | str | None) -> int:
    """``--jobs`` as a number of processes: ``"auto"``/None → :func:`usable_cores`, else an int >= 1.

    Raises:
        ConfigError: ``"--jobs 0: expected a number of processes >= 1 or auto"`` (0, negative, not a number).
    """
    if jobs is None or jobs == "auto":
        return usable_cores()
    try:
        value = int(jobs)
    except (TypeError, ValueError):
        value = 0
    if isinstance(jobs, bool) or value < 1 or str(value) != str(jobs).strip():
        raise ConfigError(f"--jobs {jobs}: expected a number of processes >= 1 or auto")
    return value


@contextlib.contextmanager
def one_thread(active: bool = True) -> Iterator[None]:
    """torch at one intra-op thread in this process while the block runs (when ``active``)."""
    if not active:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def local_workers(
    count: int,
    *,
    storage: str,
    study_name: str,
    tracking_uri: str,
    mode: str,
    max_complete: int | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    heartbeat_interval: int = 60,
    grace_period: int = 180,
    checkpoint_dir: str | os.PathLike | None = None,
    echo: Callable[[str], None] | None = None,
) -> Iterator["LocalWorkers"]:
    """Run ``count`` worker processes on the study while the block runs.

    ``mode="trials"``: each runs :func:`~betasweep.sweeps.study.run_trials` to the study-wide
    ``max_complete`` (at most ``n_trials`` each, none started after ``timeout`` seconds) and exits; the block's end waits for them.
    ``mode="serve"``: each runs queued (WAITING) trials, a race's seeds, until the block ends, then
    is stopped with SIGTERM between trials or, mid-trial, as ``betasweep worker`` is (the trial
    is failed and queued again). If the block raises (Ctrl-C, SIGTERM), or calls the handle's
    :meth:`LocalWorkers.stop` (this process's loop was stopped by a signal), every worker gets SIGTERM.
    Worker ``i`` (1..count) writes ``[job i]`` lines to stderr.
    """
    echo = echo or (lambda message: None)
    if count <= 0:
        yield LocalWorkers([])
        return
    env = {**os.environ, **THREAD_ENV}
    workers, ready = [], []
    for index in range(1, count + 1):
        read_end, write_end = os.pipe()
        ready.append(read_end)
        args = [sys.executable, "-m", "betasweep.sweeps.jobs", "--index", str(index), "--mode", mode,
                "--ready-fd", str(write_end),
                "--study", study_name, "--tracking-uri", tracking_uri, "--parent", str(os.getpid()),
                "--heartbeat-interval", str(heartbeat_interval), "--grace-period", str(grace_period)]
        if max_complete is not None:
            args += ["--max-complete", str(max_complete)]
        if n_trials is not None:
            args += ["--n-trials", str(n_trials)]
        if timeout is not None:
            args += ["--timeout", str(timeout)]
        if checkpoint_dir is not None:
            args += ["--checkpoint-dir", str(checkpoint_dir)]
        # the storage URL may hold a password: passed in the environment, never in argv
        workers.append(subprocess.Popen(args, env={**env, "BETASWEEP_STORAGE": storage}, pass_fds=(write_end,)))
        os.close(write_end)
    echo(f"--jobs {count + 1}: {count} worker process(es) of one thread beside this one "
         f"(pids {', '.join(str(w.pid) for w in workers)}); waiting until they have loaded the study")
    _wait_ready(ready, READY_TIMEOUT_S)
    try:
        yield LocalWorkers(workers)
    except BaseException:
        _stop(workers)
        raise
    if mode == "serve":
        _stop(workers)
    else:
        for worker in workers:
            worker.wait()
    failed = [w for w in workers if w.returncode not in (0, -signal.SIGTERM)]
    for worker in failed:
        echo(f"warning: worker process {worker.pid} exited {worker.returncode}; its trial, if any, is retried "
             "after the grace period")


def _wait_ready(fds: list[int], timeout: float) -> None:
    """Wait until every worker wrote its byte (it loaded the study) or closed its end (it exited), at most ``timeout`` s,
    so that the first trials are shared from the start and not all taken while the workers import torch."""
    import select

    deadline = time.monotonic() + timeout
    pending = list(fds)
    while pending and time.monotonic() < deadline:
        readable, _, _ = select.select(pending, [], [], max(0.0, deadline - time.monotonic()))
        for fd in readable:
            os.read(fd, 1)
            pending.remove(fd)
    for fd in fds:
        os.close(fd)


class LocalWorkers:
    """The worker processes of :func:`local_workers` (``procs``); :meth:`stop` sends each SIGTERM and waits."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.procs = procs

    def stop(self) -> None:
        _stop(self.procs)


def _stop(workers: list[subprocess.Popen], wait_s: float = 60.0) -> None:
    """SIGTERM every worker still running, then wait (SIGKILL after ``wait_s``)."""
    for worker in workers:
        if worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def serve_queued(study, spec, tracker, *, parent_pid: int | None = None, progress: bool = False,
                 echo: Callable[[str], None] | None = None, checkpoint_dir=None) -> None:
    """Run the study's queued (WAITING) trials one at a time until SIGTERM (or the parent process is gone).

    The look and the start are serialised across processes by the study's start gate (journal:
    a file lock), so a trial another worker popped first is never replaced by a newly sampled one.
    Stopped mid-trial, the trial is failed and queued again (as ``betasweep worker``).
    """
    echo = echo or (lambda message: None)
    parent = study.user_attrs.get(STUDY_PARENT_RUN) or tracker.find_parent_run()
    objective = Objective(spec, tracker, parent, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def on_sigterm(signum, frame):
        raise WorkerStopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while parent_pid is None or os.getppid() == parent_pid:
            optuna.storages.fail_stale_trials(study)  # a dead process's trial is retried
            ran = False
            with start_gate(study, 0) as gate:
                if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    run_one(study, objective, gate.release, echo)
                    ran = True
            if not ran:
                time.sleep(min(WAIT_POLL_S, GRACE_PERIOD_S))
    except KeyboardInterrupt:
        requeue_interrupted(study, objective.current_trial, echo=echo)


def main(argv: list[str] | None = None) -> int:
    """A worker process of :func:`local_workers` (``python -m betasweep.sweeps.jobs``); the storage URL
    comes from ``BETASWEEP_STORAGE``."""
    import argparse
    import warnings

    parser = argparse.ArgumentParser(prog="python -m betasweep.sweeps.jobs")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--mode", choices=("trials", "serve"), required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--max-complete", type=int, default=None)
    parser.add_argument("--n-trials", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--heartbeat-interval", type=int, default=60)
    parser.add_argument("--grace-period", type=int, default=180)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")

    def echo(message: str) -> None:
        print(f"[job {args.index}] {message}", file=sys.stderr, flush=True)

    try:
        storage = make_storage(os.environ["BETASWEEP_STORAGE"], tracking_uri=args.tracking_uri,
                               heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period)
        study, spec = load_study(args.study, storage, seed_offset=args.index)
        tracker = Tracker(args.tracking_uri, spec.study)
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)
        if args.mode == "trials":
            run_trials(study, spec, tracker, n_trials=args.n_trials, max_complete=args.max_complete, timeout=args.timeout,
                       progress=False,
                       echo=echo, checkpoint_dir=args.checkpoint_dir)
        else:
            serve_queued(study, spec, tracker, parent_pid=args.parent, echo=echo, checkpoint_dir=args.checkpoint_dir)
    except KeyboardInterrupt:
        return 0
    except BetasweepError as error:
        echo(f"error: {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
