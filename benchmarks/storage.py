"""Distributed-sweep figures: Optuna's per-trial storage latency (PostgreSQL vs SQLite, 1 and 4 concurrent
worker processes) and trials per hour of real `betasweep worker` processes (1, 2, 4 workers) at a tiny budget.

Storage latency:

One trial here is what a betasweep worker asks of the storage around its objective: `study.ask()`, the
suggestions of a few parameters (each one a storage write), `study.tell(trial, value)`. The objective
itself is a trivial expression, so the time measured is storage time. Each of `n_workers` processes
(spawned, as separate workers would be) loads the study and runs its share of the trials at the same
moment; the first `WARMUP` trials of each process (connection set-up) are not timed.

    python benchmarks/storage.py                      # PostgreSQL (started here) and SQLite, 1 and 4 workers
    python benchmarks/storage.py --trials 400 --json  # one JSON object per line

PostgreSQL runs with its default (durable) settings in a temporary directory on a free loopback port,
started by the same `PostgresServer` the test fixtures use (tests/servers.py).

Trials per hour (`trials_per_hour`): the real stack of a distributed sweep on this machine: PostgreSQL
holds the studies and an `mlflow server` (the `MlflowServer` of tests/servers.py) the runs and proxied
artifacts. For each worker count k, a fresh study of `trials` tiny trials (real dSprites grid, 800 training
images, a small Higgins metric: seconds per trial) is created and k `betasweep worker` processes run it to
its study-wide target. Throughput is complete trials over the span from the first trial's start to the last
trial's completion (so interpreter start-up is not counted); speed-up is against k = 1 in the same run.
Each worker gets `cpu_count // k` torch threads (at least 1), so k workers never ask for more threads than
the machine has cores.

    python benchmarks/storage.py --trials-per-hour --workers 1 2 4 --trials 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import betasweep_command, tiny_spec  # noqa: E402  (shared with the tests)
DEFAULT_DSPRITES = REPO.parent / "shared" / "data" / "dsprites" / "dsprites_downsampled.npz"
WARMUP = 5


def _trial(study) -> None:
    trial = study.ask()
    beta = trial.suggest_float("beta", 0.1, 16.0, log=True)
    latent_dim = trial.suggest_int("latent_dim", 4, 16)
    width = trial.suggest_categorical("width", [16, 32, 64])
    batch_size = trial.suggest_categorical("batch_size", [16, 64, 256])
    study.tell(trial, beta / latent_dim + width / batch_size)


def _worker(url: str, study_name: str, n_trials: int, barrier, results) -> None:
    import optuna

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=url, sampler=optuna.samplers.RandomSampler())
    for _ in range(WARMUP):
        _trial(study)
    barrier.wait()
    latencies, errors = [], 0
    start = time.perf_counter()
    for _ in range(n_trials):
        t0 = time.perf_counter()
        try:
            _trial(study)
        except Exception:  # e.g. SQLite's "database is locked" under concurrent writers
            errors += 1
            continue
        latencies.append(time.perf_counter() - t0)
    results.put({"latencies": latencies, "errors": errors, "wall": time.perf_counter() - start})


def storage_latency(url: str, n_workers: int, n_trials: int) -> dict:
    """Per-trial storage latency of `n_trials` trials (in all) run by `n_workers` concurrent processes.

    Args:
        url: an Optuna storage URL (`sqlite:///...`, `postgresql+psycopg://...`); a fresh study is created in it.
        n_workers: concurrent worker processes.
        n_trials: timed trials in total, split evenly between the workers (plus `WARMUP` untimed each).

    Returns:
        `{"storage", "n_workers", "n_trials", "errors", "median_ms", "p90_ms", "p99_ms", "mean_ms",
        "trials_per_s"}`: latency of one trial (ask + 4 suggestions + tell) as seen by a worker, and the
        aggregate throughput of all workers together.
    """
    import optuna

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study_name = f"latency-{n_workers}w-{time.time_ns()}"
    optuna.create_study(study_name=study_name, storage=url)
    per_worker = max(1, n_trials // n_workers)
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(n_workers), context.Queue()
    processes = [context.Process(target=_worker, args=(url, study_name, per_worker, barrier, results))
                 for _ in range(n_workers)]
    for process in processes:
        process.start()
    outcomes = []
    while len(outcomes) < n_workers:
        try:
            outcomes.append(results.get(timeout=1.0))
        except queue.Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if failed:
                for process in processes:
                    process.kill()
                raise RuntimeError(f"storage_latency: worker process(es) exited with {failed}") from None
    for process in processes:
        process.join()
    latencies = sorted(x for outcome in outcomes for x in outcome["latencies"])
    wall = max(outcome["wall"] for outcome in outcomes)

    def quantile(q: float) -> float:
        return 1e3 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {
        "storage": url.split(":", 1)[0].split("+", 1)[0],
        "n_workers": n_workers,
        "n_trials": len(latencies),
        "errors": sum(outcome["errors"] for outcome in outcomes),
        "median_ms": round(quantile(0.5), 2),
        "p90_ms": round(quantile(0.9), 2),
        "p99_ms": round(quantile(0.99), 2),
        "mean_ms": round(1e3 * statistics.fmean(latencies), 2),
        "trials_per_s": round(len(latencies) / wall, 1),
    }


def study_throughput(storage_url: str, tracking_uri: str, n_workers: int, n_trials: int, workdir: Path,
                     dsprites_path: Path = DEFAULT_DSPRITES, timeout_s: float = 1800.0) -> dict:
    """Run one fresh study of ``n_trials`` tiny trials with ``n_workers`` `betasweep worker` processes.

    Returns:
        ``{"n_workers", "n_trials", "complete", "span_s", "trials_per_hour", "torch_threads", "wall_s"}``:
        ``span_s`` from the first trial's start to the last one's completion.

    Raises:
        RuntimeError: a worker failed or the study did not reach its target in ``timeout_s``.
    """
    import optuna

    study_name = f"throughput-{n_workers}w-{time.time_ns()}"
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{study_name}.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(dsprites_path, study_name, n_trials)))
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    subprocess.run([*betasweep_command(), "study", "create", str(spec_path), "--storage", storage_url,
                    "--tracking-uri", tracking_uri], check=True, capture_output=True, env=env, cwd=workdir)
    start = time.perf_counter()
    logs = [open(workdir / f"{study_name}-worker-{i}.log", "wb") for i in range(n_workers)]
    workers = [subprocess.Popen([*betasweep_command(), "worker", "--study", study_name, "--storage", storage_url,
                                 "--tracking-uri", tracking_uri, "--no-progress",
                                 "--heartbeat-interval", "10", "--grace-period", "60"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir) for log in logs]
    try:
        codes = [worker.wait(timeout=timeout_s) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
    wall = time.perf_counter() - start
    if any(codes):
        tail = (workdir / f"{study_name}-worker-0.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"study_throughput: worker exit codes {codes}:\n{tail}")
    warnings.simplefilter("ignore")
    trials = optuna.load_study(study_name=study_name, storage=storage_url).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return {"n_workers": n_workers, "n_trials": n_trials, "complete": len(trials), "span_s": round(span, 1),
            "trials_per_hour": round(3600 * len(trials) / span, 1), "torch_threads": threads, "wall_s": round(wall, 1)}


def trials_per_hour(workers: list[int], n_trials: int, dsprites_path: Path = DEFAULT_DSPRITES,
                    echo=lambda row: None) -> list[dict]:
    """Start PostgreSQL and an `mlflow server` on it, then measure :func:`study_throughput` for each worker count.

    Returns:
        One row per worker count, each with ``speedup`` against the first (normally 1 worker).
    """
    from servers import MlflowServer, PostgresServer  # the launchers the test fixtures use

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="betasweep-throughput-") as tmp, PostgresServer(settings={}) as postgres:
        tmp = Path(tmp)
        mlflow = MlflowServer(postgres.create_database("mlflow"), tmp / "artifacts", log_file=tmp / "mlflow.log")
        mlflow.start()
        try:
            for n_workers in workers:
                url = postgres.create_database(f"throughput_{n_workers}")
                row = study_throughput(url, mlflow.uri, n_workers, n_trials, tmp / "work", dsprites_path)
                row["speedup"] = round(row["trials_per_hour"] / rows[0]["trials_per_hour"], 2) if rows else 1.0
                rows.append(row)
                echo(row)
        finally:
            mlflow.stop()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None,
                        help="timed trials per configuration (in all) [default: 200; 8 with --trials-per-hour]")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="[default: 1 4; 1 2 4 with --trials-per-hour]")
    parser.add_argument("--trials-per-hour", action="store_true",
                        help="measure trials per hour of real workers (PostgreSQL + mlflow server) instead of latency")
    parser.add_argument("--dsprites", type=Path, default=DEFAULT_DSPRITES, help="real dSprites .npz (trials per hour)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)

    if args.trials_per_hour:
        def show(row):
            print(json.dumps(row) if args.json else
                  "{n_workers} worker(s): {trials_per_hour:8.1f} trials/h  speed-up {speedup:5.2f}  "
                  "({complete} trials in {span_s} s, {torch_threads} torch thread(s) each)".format(**row), flush=True)

        return trials_per_hour(args.workers or [1, 2, 4], args.trials or 8, args.dsprites, echo=show)
    return storage_latencies(args.workers or [1, 4], args.trials or 200,
                             echo=lambda row: print(json.dumps(row) if args.json else _latency_line(row), flush=True))


def storage_latencies(workers: list[int], n_trials: int, echo=lambda row: None) -> list[dict]:
    """Start PostgreSQL (default, durable settings) and measure :func:`storage_latency` on it and on SQLite."""
    from servers import PostgresServer  # the launcher the test fixtures use

    rows = []
    with tempfile.TemporaryDirectory(prefix="betasweep-latency-") as tmp, PostgresServer(settings={}) as postgres:
        for n_workers in workers:
            postgres_url = postgres.create_database(f"latency_{n_workers}")
            sqlite_url = f"sqlite:///{tmp}/latency-{n_workers}.db"
            for url in (postgres_url, sqlite_url):
                rows.append(storage_latency(url, n_workers, n_trials))
                echo(rows[-1])
    return rows


def _latency_line(row: dict) -> str:
    return ("{storage:>10} {n_workers} worker(s): median {median_ms:7.2f} ms  p90 {p90_ms:7.2f} ms  "
            "p99 {p99_ms:7.2f} ms  {trials_per_s:7.1f} trials/s  ({n_trials} trials, {errors} errors)").format(**row)


if __name__ == "__main__":
    main()
