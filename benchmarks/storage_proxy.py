"""How many workers one PostgreSQL serves, directly and through `betasweep storage-proxy` (Optuna's gRPC proxy).

32 lightweight client processes (spawned; optuna, SQLAlchemy and gRPC only: no torch) share one study
and run trials whose objective sleeps: each trial is what a betasweep worker asks of the storage
(``ask`` with the spec's TPE sampler, five suggestions, a user attribute, a heartbeat, ``tell``)
around a ``--sleep`` second wait standing in for training. Measured, for each path:

- ``trials_per_s``: complete trials over the span from the first client's start to the last one's end;
- ``pg_connections``: the most backends of the study's database seen in ``pg_stat_activity`` (sampled
  every 0.2 s from a separate connection, which is not counted);
- ``db_statements_per_trial``: SQL statements the database executed per trial (SQLAlchemy's
  ``before_cursor_execute`` event, counted in each client on the direct path and in the proxy's
  process behind it): the database's round trips;
- ``rpcs_per_trial`` (proxy only): gRPC calls the proxy answered per trial (a server interceptor);
- ``trial_storage_ms``: median time a client spends in the storage per trial (wall time minus the sleep).

PostgreSQL runs with its defaults (``max_connections`` 100) in a temporary folder, started by the same
`PostgresServer` as the test fixtures (tests/servers.py). The proxy runs in this process with 16 threads
(``betasweep storage-proxy``'s default), built by the same ``make_proxy_server``.

    python benchmarks/storage_proxy.py                     # 32 clients, 10 trials each, sleep 0.2 s
    python benchmarks/storage_proxy.py --clients 8 --trials 5 --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

PROXY_THREADS = 16
HEARTBEAT_INTERVAL_S = 60  # betasweep's default: one heartbeat at each trial's start at this budget


def _count_statements(counter: list[int]) -> None:
    """Count every SQL statement any SQLAlchemy engine of this process executes."""
    import sqlalchemy.event
    from sqlalchemy.engine import Engine

    def count(*args, **kwargs):
        counter[0] += 1

    sqlalchemy.event.listen(Engine, "before_cursor_execute", count)


def _client(storage_url: str, study_name: str, n_trials: int, sleep_s: float, barrier, results) -> None:
    """One client: load the study, then run ``n_trials`` trials as a betasweep worker does."""
    import optuna

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    statements = [0]
    if storage_url.startswith("grpc://"):
        from betasweep.sweeps.proxy import open_grpc_storage

        storage = open_grpc_storage(storage_url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=180)
    else:
        _count_statements(statements)
        storage = optuna.storages.RDBStorage(storage_url, engine_kwargs={"pool_pre_ping": True},
                                             heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=180)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=int(time.time_ns() % 2**31)))

    def objective(trial):
        trial.suggest_float("beta", 0.1, 16.0, log=True)
        trial.suggest_int("latent_dim", 4, 16)
        trial.suggest_categorical("width", [16, 32, 64])
        trial.suggest_categorical("batch_size", [16, 64, 256])
        trial.suggest_int("seed", 0, 2**31 - 1)
        trial.set_user_attr("worker", "bench")
        time.sleep(sleep_s)
        return trial.params["beta"] / trial.params["latent_dim"]

    barrier.wait()
    statements[0] = 0
    start = time.perf_counter()
    walls = []
    for _ in range(n_trials):
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=1)
        walls.append(time.perf_counter() - t0 - sleep_s)
    results.put({"start": start, "end": time.perf_counter(), "storage_s": walls, "statements": statements[0]})


def _connections(postgres, dbname: str, stop: threading.Event, seen: list[int]) -> None:
    import psycopg

    with psycopg.connect(host=postgres.host, port=postgres.port, user=postgres.user, password=postgres.password,
                         dbname="postgres", autocommit=True) as conn:
        while not stop.is_set():
            (n,), = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchall()
            seen.append(n)
            time.sleep(0.2)


def run_path(path: str, postgres, n_clients: int, n_trials: int, sleep_s: float) -> dict:
    """One measurement: ``path`` is ``"direct"`` or ``"proxy"``; a fresh database and study each time."""
    import grpc
    import optuna

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dbname = f"bench_{path}_{time.time_ns()}"
    db_url = postgres.create_database(dbname)
    study_name = "proxy-bench"
    creator = optuna.storages.RDBStorage(db_url)
    optuna.create_study(study_name=study_name, storage=creator)
    creator.engine.dispose()  # its pooled connection would be counted as a client's
    server, statements, rpcs = None, [0], [0]
    url = db_url
    if path == "proxy":
        from betasweep.sweeps.proxy import make_proxy_server

        class CountRpcs(grpc.ServerInterceptor):
            def intercept_service(self, continuation, handler_call_details):
                rpcs[0] += 1
                return continuation(handler_call_details)

        _count_statements(statements)
        server, port = make_proxy_server(db_url, host="127.0.0.1", port=0, threads=PROXY_THREADS,
                                         interceptors=[CountRpcs()])
        server.start()
        url = f"grpc://127.0.0.1:{port}"
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(n_clients + 1), context.Queue()
    clients = [context.Process(target=_client, args=(url, study_name, n_trials, sleep_s, barrier, results))
               for _ in range(n_clients)]
    for client in clients:
        client.start()
    seen: list[int] = []
    stop = threading.Event()
    try:
        barrier.wait(timeout=600)  # every client has loaded the study
        statements[0] = rpcs[0] = 0
        monitor = threading.Thread(target=_connections, args=(postgres, dbname, stop, seen), daemon=True)
        monitor.start()
        outcomes = []
        while len(outcomes) < n_clients:
            try:
                outcomes.append(results.get(timeout=1.0))
            except queue.Empty:
                failed = [c.exitcode for c in clients if c.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"storage_proxy: client(s) exited with {failed}") from None
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
            if client.is_alive():
                client.kill()
        if server is not None:
            server.stop(grace=None)
    complete = len(optuna.load_study(study_name=study_name, storage=db_url).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    span = max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes)
    storage_ms = [1000 * s for o in outcomes for s in o["storage_s"]]
    db_statements = statements[0] if path == "proxy" else sum(o["statements"] for o in outcomes)
    row = {"path": path, "clients": n_clients, "trials": complete, "sleep_s": sleep_s,
           "trials_per_s": round(complete / span, 2), "pg_connections": max(seen) if seen else None,
           "db_statements_per_trial": round(db_statements / complete, 1),
           "trial_storage_ms": round(statistics.median(storage_ms), 1)}
    if path == "proxy":
        row["rpcs_per_trial"] = round(rpcs[0] / complete, 1)
        row["proxy_threads"] = PROXY_THREADS
    return row


def measure(n_clients: int = 32, n_trials: int = 10, sleep_s: float = 0.2, echo=lambda row: None) -> list[dict]:
    """Start PostgreSQL (default settings) and measure the direct and the proxied path on it."""
    from servers import PostgresServer  # the launcher the test fixtures use

    rows = []
    with PostgresServer(settings={}) as postgres:  # its own folder under the system tmpdir, removed after
        for path in ("direct", "proxy"):
            rows.append(run_path(path, postgres, n_clients, n_trials, sleep_s))
            echo(rows[-1])
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--trials", type=int, default=10, help="trials per client")
    parser.add_argument("--sleep", type=float, default=0.2, help="the objective's sleep, seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)

    def show(row):
        print(json.dumps(row) if args.json else
              f"{row['path']:>6}: {row['clients']} clients, {row['trials']} trials, {row['trials_per_s']} trials/s, "
              f"{row['pg_connections']} PostgreSQL connections, {row['db_statements_per_trial']} SQL statements/trial"
              + (f", {row['rpcs_per_trial']} RPCs/trial" if "rpcs_per_trial" in row else "")
              + f", {row['trial_storage_ms']} ms storage/trial (median)", flush=True)

    return measure(args.clients, args.trials, args.sleep, echo=show)


if __name__ == "__main__":
    main()
