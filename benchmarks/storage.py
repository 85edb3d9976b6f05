"""Optuna's per-trial storage latency: PostgreSQL vs SQLite, with 1 and 4 concurrent worker processes.

One trial here is what a betasweep worker asks of the storage around its objective: `study.ask()`, the
suggestions of a few parameters (each one a storage write), `study.tell(trial, value)`. The objective
itself is a trivial expression, so the time measured is storage time. Each of `n_workers` processes
(spawned, as separate workers would be) loads the study and runs its share of the trials at the same
moment; the first `WARMUP` trials of each process (connection set-up) are not timed.

    python benchmarks/storage.py                      # PostgreSQL (started here) and SQLite, 1 and 4 workers
    python benchmarks/storage.py --trials 400 --json  # one JSON object per line

PostgreSQL runs with its default (durable) settings in a temporary directory on a free loopback port,
started by the same `PostgresServer` the test fixtures use (tests/servers.py).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="timed trials per configuration (in all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "tests"))
    from servers import PostgresServer  # the launcher the test fixtures use

    rows = []
    with tempfile.TemporaryDirectory(prefix="betasweep-latency-") as tmp, PostgresServer(settings={}) as postgres:
        for n_workers in args.workers:
            postgres_url = postgres.create_database(f"latency_{n_workers}")
            sqlite_url = f"sqlite:///{tmp}/latency-{n_workers}.db"
            for url in (postgres_url, sqlite_url):
                rows.append(storage_latency(url, n_workers, args.trials))
                print(json.dumps(rows[-1]) if args.json else
                      "{storage:>10} {n_workers} worker(s): median {median_ms:7.2f} ms  p90 {p90_ms:7.2f} ms  "
                      "p99 {p99_ms:7.2f} ms  {trials_per_s:7.1f} trials/s  ({n_trials} trials, {errors} errors)"
                      .format(**rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
