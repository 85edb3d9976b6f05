"""check_reachable against a real MLflow server behind a relay that stalls or drops chosen connections.

The relay is the network fault only (the server's answers are MLflow's own): a uvicorn worker stalled on a
loaded host, or killed by its supervisor's 5-s healthcheck while it holds a request, looks so to a client.
In the compose stack, ``study create`` met that moment and exited 2 although the server was healthy.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from betasweep.tracking import TrackingError, check_reachable
from servers import free_port


class Relay:
    """127.0.0.1:PORT relayed to ``target`` (host, port); connection ``i`` (0-based, in accept order) is stalled
    (never answered) when ``i in stall`` or ``stall == "all"``, reset after its request when ``i in reset``."""

    def __init__(self, target: tuple[str, int], *, stall=(), reset=()):
        self.target, self.stall, self.reset = target, stall, reset
        self.accepted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            index, self.accepted = self.accepted, self.accepted + 1
            if self.stall == "all" or index in self.stall:
                self.held.append(client)  # open, never answered
            elif index in self.reset:
                client.recv(65536)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # RST: the connection dropped mid-request
            else:
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for s in self.held:
            s.close()


@pytest.fixture
def relay(mlflow_server):
    made = []

    def make(**faults) -> Relay:
        host_port = mlflow_server.removeprefix("http://").split(":")
        made.append(Relay((host_port[0], int(host_port[1])), **faults))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_a_health_request_that_stalls_is_asked_again(relay):
    stalled = relay(stall={0})
    start = time.monotonic()
    check_reachable(stalled.uri, timeout_s=1.0)
    assert stalled.accepted >= 3  # the stalled /health, the next /health, the API request
    assert time.monotonic() - start < 30


def test_an_api_request_dropped_mid_request_is_asked_again(relay):
    dropped = relay(reset={1})  # connection 0 is /health, 1 the API request (MLflow's client)
    check_reachable(dropped.uri, timeout_s=2.0)
    assert dropped.accepted >= 4


def test_a_server_that_keeps_stalling_fails_after_the_budget_in_one_line(relay):
    stalled = relay(stall="all")
    start = time.monotonic()
    expected = r"the reachability check failed for 3 s \(\d+ attempts\): .* is not reachable \(timed out\)"
    with pytest.raises(TrackingError, match=expected) as error:
        check_reachable(stalled.uri, timeout_s=0.5, budget_s=3.0)
    assert 3.0 <= time.monotonic() - start < 15
    assert stalled.accepted >= 2 and "\n" not in str(error.value)


def test_a_refused_connection_is_not_asked_again():
    start = time.monotonic()
    with pytest.raises(TrackingError, match="not reachable"):
        check_reachable(f"http://127.0.0.1:{free_port()}", budget_s=60.0)
    assert time.monotonic() - start < 5
