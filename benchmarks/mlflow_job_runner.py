"""What MLflow 3's job runner costs an `mlflow server` start (betasweep submits no GenAI jobs, so the tests' and
the compose stack's servers run without it: ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``).

Run by itself (about 2 min; not part of run.py; needs psutil):

    python benchmarks/mlflow_job_runner.py true false true false

For each argument (the variable's value) starts ``mlflow server --workers 2`` on a SQLite store in a temporary
folder on a free loopback port, and prints the seconds until ``GET /health`` answers, the processes of its
group, and their CPU seconds and resident memory 20 s later; then stops the group.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(flag: str) -> None:
    folder, port = tempfile.mkdtemp(), free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": flag}
    start = time.time()
    server = subprocess.Popen(["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri",
                               f"sqlite:///{folder}/m.db", "--workers", "2"], cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    healthy = time.time() - start
    time.sleep(20)
    processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    cpu = sum(sum(p.cpu_times()[:2]) for p in processes if p.is_running())
    rss = sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20
    print(f"job execution {flag}: healthy after {healthy:.1f} s; {len(processes)} processes; "
          f"CPU {cpu:.1f} s and RSS {rss:.0f} MiB 20 s later", flush=True)
    os.killpg(server.pid, signal.SIGTERM)
    server.wait()


for value in sys.argv[1:] or ["true", "false"]:
    one(value)
