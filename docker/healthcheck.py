"""Container healthcheck of the compose stack: exit 0 when every given endpoint answers, else 1.

    python /opt/betasweep/docker/healthcheck.py http://127.0.0.1:5000/health tcp://postgres:5432

``http(s)://...``: a GET that answers 2xx within 4 s (no credentials: MLflow exempts /health from its
authentication); ``tcp://host:port``: a TCP connection within 4 s. Standard library only.
"""

from __future__ import annotations

import socket
import sys
import urllib.request
from urllib.parse import urlsplit


def check(target: str) -> str | None:
    """None when ``target`` answers, else one line saying why not."""
    parts = urlsplit(target)
    try:
        if parts.scheme == "tcp":
            with socket.create_connection((parts.hostname, parts.port), timeout=4):
                return None
        with urllib.request.urlopen(target, timeout=4) as response:  # noqa: S310 (http(s) targets of the stack)
            return None if 200 <= response.status < 300 else f"{target}: HTTP {response.status}"
    except (OSError, ValueError) as error:
        return f"{target}: {error}"


if __name__ == "__main__":
    problems = [p for p in map(check, sys.argv[1:]) if p]
    print("\n".join(problems) or "healthy")
    sys.exit(1 if problems or len(sys.argv) < 2 else 0)
