"""``betasweep storage-proxy``: Optuna's gRPC storage proxy in front of the study's database."""

from __future__ import annotations

from pathlib import Path

import click

from betasweep.cli._common import echo, storage_option


@click.command("storage-proxy")
@storage_option(None, required=True, help="The database: postgresql+psycopg://USER:PW@HOST:5432/DB.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for workers on other nodes (then a token is required: "
                   "BETASWEEP_PROXY_TOKEN or BETASWEEP_PROXY_TOKEN_FILE).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=13000, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--threads", type=click.IntRange(min=1), default=16, show_default=True,
              help="Server threads, and the most database connections the proxy opens.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM certificate of the proxy: the port speaks TLS (workers set BETASWEEP_PROXY_CA to its CA).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--tls-client-ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="BETASWEEP_PROXY_CLIENT_CA", show_envvar=True,
              help="With --tls-cert: accept only clients whose certificate this CA signed (mutual TLS).")
def storage_proxy(storage, host, port, threads, tls_cert, tls_key, tls_client_ca):
    """Serve the study database to many workers over gRPC (workers use --storage grpc://HOST:PORT).

    One proxy holds at most --threads database connections whatever the number of workers, and
    caches finished trials. Workers behind it keep heartbeats through it (a trial attribute), so
    a killed worker's trial is still failed and retried after the grace period. Stops on SIGTERM
    or Ctrl-C.

    Strangers are kept out by a shared token, read from the environment (BETASWEEP_PROXY_TOKEN, or a
    file named by BETASWEEP_PROXY_TOKEN_FILE; never an option, since argv is public): a call without
    it is answered UNAUTHENTICATED. Workers set the same variable. With --tls-cert/--tls-key the
    connection is encrypted too. Without a token the proxy listens only on a loopback address.
    """
    import signal
    import socket
    import threading

    from betasweep.sweeps.proxy import TOKEN_ENV, make_proxy_server, proxy_token, redact_url

    token = proxy_token()
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        raise click.UsageError(f"--host {host}: a proxy reachable from other machines needs a token: set {TOKEN_ENV} "
                               f"(or {TOKEN_ENV}_FILE) here and in the workers' environment")
    server, bound = make_proxy_server(storage, host=host, port=port, threads=threads, token=token,
                                      tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca)
    server.start()
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    click.echo(f"grpc://{shown}:{bound}")  # what workers pass as --storage
    guard = ("token" if token else "no token: loopback only") + (", TLS" if tls_cert else "")
    echo(f"storage proxy for {redact_url(storage)} listening on {host}:{bound} ({threads} threads; {guard}); "
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
