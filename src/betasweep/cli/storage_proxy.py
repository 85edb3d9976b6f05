"""``betasweep storage-proxy``: Optuna's gRPC storage proxy in front of the study's database."""

from __future__ import annotations

import click

from betasweep.cli._common import echo


@click.command("storage-proxy")
@click.option("--storage", required=True, help="The database: postgresql+psycopg://USER:PW@HOST:5432/DB.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for workers on other nodes (the proxy has no authentication: "
                   "keep it inside the cluster's network).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=13000, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--threads", type=click.IntRange(min=1), default=16, show_default=True,
              help="Server threads, and the most database connections the proxy opens.")
def storage_proxy(storage, host, port, threads):
    """Serve the study database to many workers over gRPC (workers use --storage grpc://HOST:PORT).

    One proxy holds at most --threads database connections whatever the number of workers, and
    caches finished trials. Workers behind it keep heartbeats through it (a trial attribute), so
    a killed worker's trial is still failed and retried after the grace period. Stops on SIGTERM
    or Ctrl-C.
    """
    import signal
    import socket
    import threading

    from betasweep.sweeps.proxy import make_proxy_server, redact_url

    server, bound = make_proxy_server(storage, host=host, port=port, threads=threads)
    server.start()
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    click.echo(f"grpc://{shown}:{bound}")  # what workers pass as --storage
    echo(f"storage proxy for {redact_url(storage)} listening on {host}:{bound} ({threads} threads); "
         f"workers: --storage grpc://{shown}:{bound}")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    try:
        while not stopped.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    server.stop(grace=5).wait()
    echo("storage proxy stopped")


command = storage_proxy
