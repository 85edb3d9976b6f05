"""A real one-node Slurm cluster for the tests: `munged`, `slurmctld` and `slurmd` on this machine.

Nothing is mocked: Debian's `slurm-wlm` and `munge` binaries run with a configuration of their own
in a temporary folder (`SLURM_CONF` points there; the node line comes from `slurmd -C`;
`ProctrackType=proctrack/linuxproc`, `TaskPlugin=task/none`, state and spool folders in the
folder, free ports, a munge key and socket of its own), so the machine's `/etc/slurm` and any
system munge are left alone. Slurm's daemons run as root here (`SlurmUser=root`), as tests in CI
containers do; `stop()` cancels the cluster's jobs and stops the daemons by their process ids.

`SlurmCluster` is plain Python (usable from a script); the `slurm_cluster` fixture at the bottom
wraps it and sets `SLURM_CONF` for the session (so `sbatch`, `squeue`, `scontrol` and submitit talk
to it). Register with ``pytest_plugins = ["slurm"]`` in `tests/conftest.py`. Without the binaries
the fixture skips, naming what is missing, except under CI (`.ci/run` installs them), where it fails.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import ServerUnavailable, _unavailable, free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel")


def find_slurm() -> dict[str, str]:
    """Paths of the Slurm and munge binaries (daemons live in /usr/sbin on Debian).

    Raises:
        ServerUnavailable: one is missing (the message names it and the Debian packages).
    """
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = {name: shutil.which(name, path=search) for name in (*DAEMONS, *CLIENTS, "mungekey")}
    missing = [name for name, path in found.items() if path is None and name != "mungekey"]
    if missing:
        raise ServerUnavailable(f"Slurm binaries not found: {', '.join(missing)}; install Debian's `slurm-wlm` "
                                "and `munge` packages (apt-get install -y slurm-wlm munge)")
    if os.geteuid() != 0:
        raise ServerUnavailable("the one-node Slurm test cluster runs its daemons as root (SlurmUser=root); "
                                "run the Slurm tests as root (as CI does)")
    return found


class SlurmCluster:
    """munged + slurmctld + slurmd in `base_dir`, one node (this machine), partition `debug`.

    Args:
        base_dir: an empty folder for the config, state, spool, logs and munge socket; a fresh one if None.
        kill_wait: seconds between a job's SIGTERM and its SIGKILL (Slurm's KillWait).
    """

    def __init__(self, base_dir: str | Path | None = None, *, kill_wait: int = 30) -> None:
        self.bin = find_slurm()
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="betasweep-slurm-"))
        self.conf = self.base_dir / "slurm.conf"
        self.munge_socket = self.base_dir / "munge" / "munge.socket"
        self.kill_wait = kill_wait
        self.processes: dict[str, subprocess.Popen] = {}
        atexit.register(self.stop)

    # --- configuration ---------------------------------------------------------------------------------
    def _node_line(self) -> tuple[str, str]:
        """(node name, ``NodeName=... CPUs=... RealMemory=...``) from ``slurmd -C``."""
        out = subprocess.run([self.bin["slurmd"], "-C"], capture_output=True, text=True, check=True).stdout
        line = next(line for line in out.splitlines() if line.startswith("NodeName="))
        name = line.split()[0].split("=", 1)[1]
        return name, f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"

    def write_config(self) -> None:
        for sub in ("state", "spool", "munge", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir / "munge", 0o700)
        self.node, node_line = self._node_line()
        d = self.base_dir
        self.conf.write_text("\n".join([
            "ClusterName=betasweep",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            f"KillWait={self.kill_wait}",
            "MinJobAge=600",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            node_line,
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def env(self) -> dict[str, str]:
        """The environment for Slurm clients of this cluster (``SLURM_CONF``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Write the config, start the three daemons, wait until the node is idle."""
        self.write_config()
        key = self.base_dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        log = self.base_dir / "log"
        self._spawn("munged", [self.bin["munged"], "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={self.base_dir / 'munge' / 'munged.pid'}",
                               f"--log-file={log / 'munged.log'}", f"--seed-file={self.base_dir / 'munge' / 'seed'}"])
        self._wait(lambda: self.munge_socket.exists(), 20, "munged's socket")
        self._spawn("slurmctld", [self.bin["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._client("scontrol", "ping").returncode == 0, timeout, "slurmctld to answer")
        self._spawn("slurmd", [self.bin["slurmd"], "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(lambda: "idle" in self._client("sinfo", "-h", "-o", "%t").stdout, timeout, "the node to be idle")

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop slurmd, slurmctld and munged by their process ids."""
        if not self.processes:
            return
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self._client("scancel", "--full", "--user", "root")
                self._wait(lambda: not self._client("squeue", "-h").stdout.strip(), 45, "the jobs to end")
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (``squeue``, ``scontrol``, ``scancel``, ...)."""
        result = self._client(*args)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}\n{self.log_tail()}")
        return result

    def _client(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.bin.get(args[0]) or args[0], *args[1:]], capture_output=True, text=True,
                              env=self.env(), timeout=60)

    def _spawn(self, name: str, command: list[str]) -> None:
        out = open(self.base_dir / "log" / f"{name}.stdout", "ab")
        self.processes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env=self.env(), start_new_session=True)

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"Slurm test cluster: gave up waiting for {what} (exited: {dead})\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, n: int = 15) -> str:
        parts = []
        for path in sorted((self.base_dir / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-n:]
            parts.append(f"--- {path.name}:\n" + "\n".join(lines))
        return "\n".join(parts)

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real one-node Slurm cluster for the session; ``SLURM_CONF`` points at it while it lives."""
    try:
        cluster = SlurmCluster()
    except ServerUnavailable as error:
        _unavailable(str(error))
    before = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.cleanup()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
