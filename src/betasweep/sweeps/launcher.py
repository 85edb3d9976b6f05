"""Workers as a Slurm job array (or local processes) through submitit.

``betasweep submit`` turns N workers of one study into one job array: each array task runs
``betasweep worker`` in-process (:class:`WorkerTask`, a :class:`submitit.helpers.Checkpointable`),
so the command line a task runs is an ordinary worker's. No batch script is written by hand:
submitit's :class:`~submitit.AutoExecutor` writes and submits it (``--array 0-(N-1)%max_parallel``,
``--signal USR2@lead``, one log folder per study).

Preemption and time limits (submitit's checkpoint/requeue mechanism, submitit/core/job_environment.py):
submitit installs a SIGUSR2 handler that checkpoints the callable and requeues the task
(``scontrol requeue``), and ignores SIGTERM. Called in the middle of a trial, that handler would
exit the process with the trial still RUNNING (it would be retried only after the heartbeat grace
period). :class:`WorkerTask` therefore stops the worker first: SIGUSR2 (Slurm's warning before the
time limit, ``--signal USR2@SECONDS``) and SIGTERM (preemption, ``scancel --signal=TERM``,
``scontrol requeue``) raise :class:`~betasweep.sweeps.study.WorkerStopped` in the worker, which marks
its running trial FAIL with the reason, ends the trial's MLflow run KILLED and queues its params
again (the same path as a worker stopped by hand). Then, if the study has not reached its target,
the task calls submitit's own handler, which checkpoints :class:`WorkerTask` and requeues the
array task; the task comes back and joins the study again. If Slurm requeues the task itself
(``scontrol requeue``, preemption with ``PreemptMode=REQUEUE``) submitit's ``scontrol requeue``
fails harmlessly and Slurm's own requeue brings the task back.

Several workers per GPU (``--workers-per-gpu K``): the tiny Burgess model uses a small part of one
GPU, so each array task asks for one GPU and ``K x --cpus-per-worker`` CPUs and runs K ``betasweep
worker`` processes on it (subprocesses sharing the task's ``CUDA_VISIBLE_DEVICES``); ``--workers N``
then means N tasks, N x K workers. K processes per task rather than K tasks per GPU, because sharing
one GPU among Slurm tasks needs the cluster's GPU sharing (MPS or ``gres/shard``), which most
clusters do not configure. The task forwards SIGUSR2/SIGTERM to its workers as SIGTERM (each closes
its trial, which is queued again and resumes from its checkpoints), waits for them, then requeues as
above.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import submitit
from optuna.trial import TrialState

from betasweep.errors import ConfigError
from betasweep.sweeps.proxy import redact_url
from betasweep.sweeps.storage import make_storage
from betasweep.sweeps.study import load_study
from betasweep.sweeps.worker import WorkerStopped

__all__ = [
    "CLUSTERS",
    "Resources",
    "WorkerTask",
    "parse_slurm_args",
    "resolve_cluster",
    "worker_argv",
    "write_storage_file",
    "sbatch_script",
    "submit_workers",
]

CLUSTERS = ("auto", "slurm", "local")
SIGNAL_LEAD_S = 120  # SIGUSR2 this long before the time limit: time for the worker to close its trial
MAX_REQUEUES = 50  # submitit's countdown of requeues after SIGUSR2 (its default, 3, is low for preemptible queues)

# sbatch's long options a user may pass with --slurm-arg (sbatch(1), Slurm 22.05); those betasweep
# sets itself from its own options are refused with the option to use instead.
SBATCH_OPTIONS = frozenset("""
account acctg-freq batch bb bbf begin chdir cluster-constraint clusters comment constraint container
contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu deadline delay-boot dependency distribution
exclude exclusive export export-file extra-node-info get-user-env gid gpu-bind gpu-freq gpus-per-socket
gpus-per-task gres-flags hint hold ignore-pbs kill-on-invalid-dep licenses mail-type mail-user mcs-label
mem-bind mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue nodefile nodelist nodes ntasks-per-core
ntasks-per-gpu ntasks-per-socket overcommit oversubscribe power prefer priority profile propagate qos reboot
requeue reservation s-java signal sockets-per-node spread-job switches thread-spec threads-per-core time-min
tmp uid use-min-nodes wait-all-nodes wckey
""".split())
OWN_OPTIONS = {
    "partition": "--partition", "p": "--partition", "time": "--time", "t": "--time",
    "cpus-per-task": "--cpus-per-worker", "c": "--cpus-per-worker", "gpus": "--gpus-per-worker",
    "gpus-per-node": "--gpus-per-worker", "gres": "--gpus-per-worker", "mem": "--mem", "array": "--workers",
    "ntasks": "--workers", "ntasks-per-node": "--workers", "output": "--log-dir", "error": "--log-dir",
    "job-name": "--job-name", "J": "--job-name", "open-mode": "(always append)",
}



@dataclasses.dataclass(frozen=True)
class Resources:
    """What each array task asks Slurm for, named as Slurm names it.

    Attributes:
        workers: array tasks (one worker each), >= 1.
        time_min: each task's time limit in minutes (``--time``); a requeued task starts a fresh limit.
        partition: Slurm partition (``--partition``), the cluster's default if None.
        cpus_per_worker: ``--cpus-per-task``; also the worker's OMP/MKL thread count.
        gpus_per_worker: GPUs per task (``--gpus-per-node``; one task per node's share).
        mem_gb: memory per task in GiB (``--mem``), the partition's default if None.
        max_parallel: array throttle (``--array 0-(N-1)%max_parallel``), all at once if None.
        slurm_args: further sbatch options (account, qos, constraint, ...), see :func:`parse_slurm_args`.
        signal_lead_s: seconds before the time limit at which Slurm sends SIGUSR2 (``--signal USR2@...``).
        workers_per_gpu: worker processes per task sharing its one GPU (0: one worker in-process,
            ``gpus_per_worker`` GPUs); with K >= 1 a task asks for one GPU and ``K * cpus_per_worker`` CPUs.
    """

    workers: int
    time_min: int = 60
    partition: str | None = None
    cpus_per_worker: int = 1
    gpus_per_worker: int = 0
    mem_gb: float | None = None
    max_parallel: int | None = None
    slurm_args: dict[str, str] = dataclasses.field(default_factory=dict)
    signal_lead_s: int = SIGNAL_LEAD_S
    workers_per_gpu: int = 0

    def __post_init__(self) -> None:
        for name in ("workers", "time_min", "cpus_per_worker"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-').replace('-min', '')} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.workers_per_gpu < 0:
            raise ConfigError(f"--workers-per-gpu must be >= 1, got {self.workers_per_gpu}")
        if self.workers_per_gpu and self.gpus_per_worker > 1:
            raise ConfigError("--workers-per-gpu shares one GPU per task: give --gpus-per-worker 0 or 1 with it")

    @property
    def gpus_per_task(self) -> int:
        return 1 if self.workers_per_gpu else self.gpus_per_worker

    @property
    def cpus_per_task(self) -> int:
        return self.cpus_per_worker * max(1, self.workers_per_gpu)

    def executor_parameters(self, cluster: str) -> dict:
        """The ``AutoExecutor.update_parameters`` keywords for ``cluster`` ("slurm" or "local")."""
        params: dict = {"timeout_min": self.time_min, "cpus_per_task": self.cpus_per_task, "tasks_per_node": 1,
                        "nodes": 1}
        if self.gpus_per_task:
            params["gpus_per_node"] = self.gpus_per_task
        if cluster == "slurm":
            params["slurm_signal_delay_s"] = self.signal_lead_s
            params["slurm_array_parallelism"] = self.max_parallel or self.workers
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.mem_gb is not None:
                params["mem_gb"] = self.mem_gb
            if self.slurm_args:
                params["slurm_additional_parameters"] = dict(self.slurm_args)
        return params


def parse_slurm_args(items: Sequence[str]) -> dict[str, str]:
    """``["account=lab", "qos=long"]`` -> ``{"account": "lab", "qos": "long"}``, checked against sbatch's options.

    Raises:
        ConfigError: an item that is not KEY=VALUE, a key that is not an sbatch option, or one that
            betasweep sets from its own option (named in the message).
    """
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"--slurm-arg {item!r}: expected KEY=VALUE (e.g. account=mylab)")
        if key in OWN_OPTIONS:
            raise ConfigError(f"--slurm-arg {item!r}: set {key} with betasweep's {OWN_OPTIONS[key]}")
        if key.replace("_", "-") not in SBATCH_OPTIONS:
            raise ConfigError(f"--slurm-arg {item!r}: {key!r} is not an sbatch option "
                              "(e.g. account, qos, constraint, reservation, exclude)")
        parsed[key.replace("_", "-")] = value
    return parsed


def resolve_cluster(cluster: str) -> str:
    """``"slurm"`` or ``"local"``: ``auto`` is Slurm when ``sbatch`` is on PATH.

    Raises:
        ConfigError: ``slurm`` asked for and no ``sbatch``/``srun`` on PATH, or an unknown name.
    """
    if cluster not in CLUSTERS:
        raise ConfigError(f"--cluster {cluster}: expected one of {', '.join(CLUSTERS)}")
    has_slurm = shutil.which("sbatch") is not None and shutil.which("srun") is not None
    if cluster == "auto":
        return "slurm" if has_slurm else "local"
    if cluster == "slurm" and not has_slurm:
        raise ConfigError("--cluster slurm: no sbatch/srun on PATH (run this on a Slurm login node, "
                          "or use --cluster local)")
    return cluster


def check_storage_for(cluster: str, storage_url: str) -> None:
    """Refuse a storage the cluster's workers cannot share.

    Raises:
        ConfigError: SQLite with Slurm (tasks run on other nodes; one SQLite file cannot be shared).
    """
    if storage_url.startswith("sqlite") and cluster == "slurm":
        raise ConfigError(f"--storage {storage_url}: SQLite cannot be shared by Slurm tasks on other nodes; use "
                          "PostgreSQL (postgresql+psycopg://USER:PW@HOST:5432/DB) or a storage proxy (grpc://HOST:PORT)")


def local_only_addresses(*urls: str | None) -> list[str]:
    """The URLs among ``urls`` whose host is this machine's loopback (unreachable from other nodes)."""
    from urllib.parse import urlsplit

    found = []
    for url in filter(None, urls):
        try:
            host = urlsplit(url).hostname
        except ValueError:
            continue
        if host in ("localhost", "127.0.0.1", "::1"):
            found.append(url.split("://", 1)[0] + f"://...{host}...")
    return found


def worker_argv(study: str, storage: str, *, tracking_uri: str | None, max_complete: int,
                heartbeat_interval: int, grace_period: int, checkpoint_dir: str | Path | None = None) -> list[str]:
    """The ``betasweep worker`` arguments each array task runs (after ``worker``)."""
    argv = ["--study", study, "--storage", storage, "--max-complete-trials", str(max_complete),
            "--heartbeat-interval", str(heartbeat_interval), "--grace-period", str(grace_period), "--no-progress"]
    if checkpoint_dir:
        argv += ["--checkpoint-dir", str(Path(checkpoint_dir).resolve())]
    if tracking_uri:
        argv += ["--tracking-uri", tracking_uri]
    return argv


STORAGE_ENV = "BETASWEEP_STORAGE"
STORAGE_FILE = "storage-url"


def write_storage_file(folder: str | Path, storage: str) -> Path:
    """Write the storage URL to ``folder/storage-url``, readable by its owner only (mode 0600).

    The URL may hold the database's password: the array tasks read it from this file into their
    environment (``BETASWEEP_STORAGE``), so it is neither in any process's argv (``ps``) nor in the
    task that submitit pickles into the same folder.
    """
    path = Path(folder) / STORAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STORAGE_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of another umask keeps no wider mode
        os.write(fd, (storage + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def without_storage(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--storage URL`` pair (the worker takes it from ``BETASWEEP_STORAGE``)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--storage" and i + 1 < len(argv):
            skip = True
            continue
        out.append(arg)
    return out


def shown_command(argv: Sequence[str]) -> str:
    """``betasweep worker ARGS`` as a shell line, the storage password hidden."""

    shown = list(argv)
    for i, arg in enumerate(shown[:-1]):
        if arg == "--storage" and not shown[i + 1].startswith("grpc:"):
            shown[i + 1] = redact_url(shown[i + 1])
    return "betasweep worker " + " ".join(shlex.quote(a) for a in shown)


class WorkerTask(submitit.helpers.Checkpointable):
    """One array task: ``betasweep worker ARGV`` in this process, requeued when Slurm stops it early.

    Args:
        entry: the command's entry point, ``entry(["worker", *argv]) -> exit code`` (``betasweep.cli.main``).
        argv: the worker's arguments (:func:`worker_argv`); ``--max-complete-trials`` is the study's target.
            Its ``--storage`` is dropped: the storage URL (it may hold a password) travels in ``storage_file``.
        study: the study the worker joins (to tell a finished study from a stopped worker).
        storage_file: the 0600 file holding the storage URL (:func:`write_storage_file`); the task reads it
            into ``BETASWEEP_STORAGE`` before the worker starts. Only its path is pickled with the task.
        target: the study-wide target of COMPLETE trials (0: none; the worker runs until stopped).
    """

    def __init__(self, entry: Callable[[list[str]], int], argv: list[str], study: str, storage_file: str | Path,
                 target: int, processes: int = 0) -> None:
        self.entry = entry
        self.argv = without_storage(argv)
        self.study = study
        self.storage_file = str(storage_file)
        self.target = target
        self.processes = processes  # >= 1: that many worker subprocesses sharing the task's GPU (--workers-per-gpu)

    def __call__(self) -> str:
        env = submitit.JobEnvironment() if _in_submitit() else None
        where = f"{'array' if env.cluster == 'slurm' else 'local'} task {env.job_id}" if env else "worker task"
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue handler (if any)
        on_term = signal.getsignal(signal.SIGTERM)  # submitit's (it logs and ignores SIGTERM)

        def stop(signum, frame):
            raise WorkerStopped(f"{signal.Signals(signum).name}: the scheduler stops this task "
                                "(time limit near, preempted or requeued); it is requeued")

        signal.signal(signal.SIGUSR2, stop)
        signal.signal(signal.SIGTERM, stop)  # the worker installs the same while it runs trials
        os.environ[STORAGE_ENV] = self._storage()  # the worker's --storage default; inherited by its subprocesses
        print(f"{where}: {shown_command(self.argv)} (--storage from {STORAGE_ENV}, read from {self.storage_file})",
              flush=True)
        stops = len(WorkerStopped.raised)
        try:
            code = self._run_processes(where) if self.processes else self.entry(["worker", *self.argv])
        except WorkerStopped:  # stopped while starting, before the worker's own handler was in place
            code = 0
        finally:
            signal.signal(signal.SIGUSR2, requeue)
            signal.signal(signal.SIGTERM, on_term)
        if code != 0:
            raise RuntimeError(f"{where}: betasweep worker exited with code {code} (see the lines above)")
        if len(WorkerStopped.raised) == stops:  # the worker ended by itself (study done, or Ctrl-C)
            return "done"
        if self._study_done():
            print(f"{where}: stopped, but the study has its {self.target} complete trial(s); done", flush=True)
            return "done"
        if not callable(requeue):
            return "stopped"
        print(f"{where}: stopped by the scheduler before the study's end; requeueing through submitit", flush=True)
        try:
            requeue(signal.SIGUSR2, None)  # checkpoint (self), `scontrol requeue`, exit
        except Exception as error:  # noqa: BLE001  e.g. Slurm requeues the task itself already
            print(f"{where}: submitit could not requeue ({error}); Slurm's own requeue brings the task back",
                  flush=True)
            sys.exit(1)
        return "stopped"

    def _storage(self) -> str:
        """The storage URL, from :attr:`storage_file`."""
        return _read_storage_file(self.storage_file)

    def _run_processes(self, where: str) -> int:
        """K ``betasweep worker`` subprocesses on this task's GPU; a stop is forwarded to each as SIGTERM.

        Returns the first nonzero exit code (0 when all end well); re-raises the stop after the workers
        closed their trials.
        """
        command = [sys.executable, "-m", "betasweep.cli", "worker", *self.argv]
        # SIGUSR2 ignored in the workers (an ignored signal stays ignored across exec): Slurm may signal every
        # process of the step, and the time-limit warning must reach them as SIGTERM, from here.
        children = [subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
                    for _ in range(self.processes)]
        print(f"{where}: {self.processes} workers on this task's GPU "
              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
              f"pids {' '.join(str(c.pid) for c in children)}", flush=True)
        stopped: WorkerStopped | None = None
        while any(child.poll() is None for child in children):
            try:
                for child in children:
                    child.wait()
            except WorkerStopped as stop:  # the scheduler's signal: each worker closes its trial
                stopped = stopped or stop
                for child in children:
                    if child.poll() is None:
                        child.send_signal(signal.SIGTERM)
        codes = [child.returncode for child in children]
        if stopped is not None:
            raise stopped
        return next((code for code in codes if code), 0)

    def _study_done(self) -> bool:
        if not self.target:
            return False
        study, _ = load_study(self.study, make_storage(self._storage()))
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= self.target


def _read_storage_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().strip()


def _in_submitit() -> bool:
    return any(name in os.environ for name in ("SUBMITIT_EXECUTOR", "SUBMITIT_LOCAL_JOB_ID", "SLURM_JOB_ID"))


def _setup_lines(resources: Resources, argv: Sequence[str]) -> list[str]:
    threads = str(resources.cpus_per_worker)
    how = (f"{resources.workers_per_gpu} worker processes sharing its GPU" if resources.workers_per_gpu
           else "in-process")
    return [f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} PYTHONUNBUFFERED=1",
            f"# each array task runs, {how} (requeued on SIGUSR2/SIGTERM): {shown_command(argv)}"]


def sbatch_script(folder: str | Path, job_name: str, resources: Resources, argv: Sequence[str],
                  python: str | None = None) -> str:
    """The batch script :func:`submit_workers` would submit to Slurm (for ``--dry-run``; needs no Slurm).

    Built by submitit's own script writer (``submitit.slurm.slurm._make_sbatch_string``, the function
    its ``SlurmExecutor`` uses), with the parameters ``AutoExecutor`` would pass it.
    """
    from submitit.slurm.slurm import _make_sbatch_string

    params = resources.executor_parameters("slurm")
    slurm = {
        "job_name": job_name, "time": resources.time_min, "cpus_per_task": resources.cpus_per_task,
        "ntasks_per_node": 1, "nodes": 1, "signal_delay_s": resources.signal_lead_s,
        "array_parallelism": params["slurm_array_parallelism"], "partition": resources.partition,
        "gpus_per_node": resources.gpus_per_task or None,
        "mem": f"{int(resources.mem_gb * 1024)}MB" if resources.mem_gb is not None else None,
        "additional_parameters": params.get("slurm_additional_parameters"),
        "setup": _setup_lines(resources, argv),
    }
    command = " ".join([shlex.quote(python or sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=str(folder), map_count=resources.workers,
                               **{k: v for k, v in slurm.items() if v is not None})


def submit_workers(cluster: str, folder: str | Path, job_name: str, resources: Resources, task: WorkerTask) -> list:
    """Submit ``resources.workers`` copies of ``task`` as one array (Slurm) or as local processes.

    Returns:
        submitit's jobs, one per worker (on Slurm they share the array's job id: ``JOBID_TASK``).
    """
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(name=job_name, **resources.executor_parameters(cluster))
    if cluster == "slurm":
        executor.update_parameters(slurm_setup=_setup_lines(resources, task.argv))
    with executor.batch():
        jobs = [executor.submit(task) for _ in range(resources.workers)]
    return jobs
