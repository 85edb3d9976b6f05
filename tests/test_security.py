"""Attacks as tests (issue 22): code smuggled in data files and checkpoints, strangers at the storage proxy,
passwords where other users read them (``ps``, logs, MLflow, the HTML report).

Real components throughout: the ``betasweep`` command, Optuna's gRPC proxy, PostgreSQL with a password and an
``mlflow server`` (tests/servers.py). The proxy and the password test's commands run as subprocesses (what ``ps``
and the logs show is the point there); the commands that refuse crafted files or strangers run in-process
(``betasweep.cli.main``, as the console script), each a subprocess's seconds of imports less. A crafted file's
payload creates a marker file when it is unpickled; each test first shows that the payload works
(``np.load(allow_pickle=True)`` runs it: the control), then that betasweep never runs it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import betasweep_command, invoke_betasweep

sys.path.insert(0, str(Path(__file__).parent / "data"))
from synthetic import write_dsprites  # noqa: E402

TINY_TRAIN = ["--beta", "4", "--latent-dim", "2", "--width", "4", "--train-samples", "64", "--batch-size", "16",
              "--no-progress"]
METRIC = {"num_train": 40, "num_eval": 20, "batch_size": 8, "num_stat_samples": 32}


class Payload:
    """Unpickled, it calls ``open(marker, "w")``: the marker file appears (a stand-in for any code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_dsprites(folder: Path, marker: Path) -> Path:
    """A valid dSprites grid whose pickled ``metadata`` member runs the payload when unpickled."""
    path, _ = write_dsprites(folder, sizes=(3, 2, 2, 2, 2))
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files if key != "metadata"}
    crafted = folder / "crafted.npz"
    np.savez_compressed(crafted, **arrays, metadata=np.array(Payload(marker), dtype=object))
    return crafted


def run(*args, env=None, cwd=None, timeout=600, check=False) -> subprocess.CompletedProcess:
    proc = subprocess.run([*betasweep_command(), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"betasweep {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def local(*args, cwd=None, check=False, **env) -> subprocess.CompletedProcess:
    """``betasweep ARGS`` in this process (:func:`helpers.invoke_betasweep`), without ``BETASWEEP_STORAGE``, with the
    variables ``env`` for the call; what :func:`run` returns."""
    proc = invoke_betasweep(*map(str, args), cwd=cwd, env={"BETASWEEP_STORAGE": None, **env})
    if check and proc.returncode != 0:
        raise AssertionError(f"betasweep {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("betasweep: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("BETASWEEP_STORAGE", None)
    env.update(extra)
    return env


# --- no code from data --------------------------------------------------------------------------------------


def test_the_payload_is_live_when_unpickled(tmp_path):
    """Control: the crafted file's payload does run under ``allow_pickle=True`` (so the tests below can fail)."""
    control = tmp_path / "control-marker"
    crafted = crafted_dsprites(tmp_path, control)
    with np.load(crafted, allow_pickle=True) as npz:
        npz["metadata"]
    assert control.exists()


def test_crafted_npz_runs_nothing_through_data_check_train_and_a_worker(tmp_path):
    marker = tmp_path / "marker"
    crafted = crafted_dsprites(tmp_path, marker)

    checked = local("data", "check", "--dataset", "dsprites", crafted, check=True)
    assert json.loads(checked.stdout)["factors"] == {"shape": 3, "scale": 2, "orientation": 2, "posX": 2, "posY": 2}
    assert not marker.exists()

    local("train", "--dataset", "dsprites", "--data-path", crafted, *TINY_TRAIN, "--out", tmp_path / "run", check=True)
    assert not marker.exists()

    spec = {"study": "crafted", "dataset": {"name": "dsprites", "path": str(crafted)}, "search_space": {"beta": [1.0]},
            "fixed": {"latent_dim": 2, "width": 4, "hidden_dim": 16, "batch_size": 16, "log_every": 4},
            "train_samples": 64, "metric": {"seed": 0, "full": METRIC}, "sampler": {"name": "grid"},
            "pruner": {"name": "none"}, "n_trials": 1}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local("study", "create", tmp_path / "spec.yaml", "--storage", storage, "--tracking-uri", tracking, cwd=tmp_path,
          check=True)
    worked = local("worker", "--study", "crafted", "--storage", storage, "--n-trials", "1", "--no-progress",
                   cwd=tmp_path, check=True)
    assert "trial 0: beta_vae" in worked.stderr, worked.stderr[-2000:]
    assert not marker.exists()

    # the checkpoint records the crafted path: it is read only when the user says so
    refused = local("evaluate", tmp_path / "run" / "checkpoint.pt")
    one_line_exit_2(refused, "--data-path", "--data-from-checkpoint", str(crafted))
    local("evaluate", tmp_path / "run" / "checkpoint.pt", "--data-from-checkpoint", "--num-train", "20", "--num-eval",
          "10", "--metric-batch-size", "8", "--num-stat-samples", "32", check=True)
    assert not marker.exists()


def test_npz_with_pickled_images_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "marker"
    path, _ = write_dsprites(tmp_path, sizes=(3, 2, 2, 2, 2))
    with np.load(path) as npz:
        classes = npz["latents_classes"]
    evil = tmp_path / "evil-imgs.npz"
    np.savez(evil, imgs=np.array([Payload(marker)] * len(classes), dtype=object), latents_classes=classes)
    one_line_exit_2(local("data", "check", "--dataset", "dsprites", evil), str(evil), "object dtype")
    assert not marker.exists()


def test_crafted_checkpoint_is_refused_in_one_line_without_advice(tmp_path):
    import torch

    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "model_config": {}, "x": Payload(marker)}, evil)
    proc = local("evaluate", evil)
    one_line_exit_2(proc, str(evil), "refused")
    assert "weights_only=False" not in proc.stderr and "trusted source" not in proc.stderr
    assert not marker.exists()


# --- strangers kept out of the storage proxy -------------------------------------------------------------------


def _start_proxy(storage: str, env: dict, *extra: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([*betasweep_command(), "storage-proxy", "--port", "0", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**env, "BETASWEEP_STORAGE": storage})
    url = process.stdout.readline().strip()
    if not url.startswith("grpc://"):
        process.kill()
        raise AssertionError(f"storage-proxy printed {url!r}: {process.stderr.read()[-2000:]}")
    return process, url


def test_proxy_without_the_token_answers_unauthenticated(tmp_path):
    import grpc
    from optuna.storages._grpc.auto_generated import api_pb2, api_pb2_grpc

    token = secrets.token_hex(16)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process, url = _start_proxy(storage, _env(BETASWEEP_PROXY_TOKEN=token))
    try:
        address = url.removeprefix("grpc://")
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with grpc.insecure_channel(address) as channel:
                stub = api_pb2_grpc.StorageServiceStub(channel)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetAllStudies(api_pb2.GetAllStudiesRequest(), metadata=metadata, timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as refused:  # a write too
                    stub.CreateNewStudy(api_pb2.CreateNewStudyRequest(study_name="intruder"), metadata=metadata,
                                        timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(address) as channel:  # the token opens it
            stub = api_pb2_grpc.StorageServiceStub(channel)
            stub.GetAllStudies(api_pb2.GetAllStudiesRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        # a worker without the token: one line saying what to set
        one_line_exit_2(local("worker", "--study", "x", "--storage", url, "--n-trials", "1"),
                        "refuses this client", "BETASWEEP_PROXY_TOKEN")
        # the token read from a file works, and appears in no process's argv
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        listed = local("worker", "--study", "x", "--storage", url, "--n-trials", "1",
                       BETASWEEP_PROXY_TOKEN_FILE=str(token_file))
        one_line_exit_2(listed, "no such study")
        assert token not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not any(s.study_name == "intruder" for s in _studies(storage))


def _studies(storage: str):
    import optuna

    return optuna.get_all_study_summaries(storage)


def test_proxy_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    proc = local("storage-proxy", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--host", "0.0.0.0", "--port", "0")
    one_line_exit_2(proc, "BETASWEEP_PROXY_TOKEN")


def test_proxy_over_tls_with_a_token(tmp_path):
    import optuna

    from betasweep.sweeps.proxy import GrpcStorage

    cert, key = tmp_path / "proxy.pem", tmp_path / "proxy.key"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate here: {made.stderr[-300:]}")
    token = secrets.token_hex(16)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process, url = _start_proxy(storage, _env(BETASWEEP_PROXY_TOKEN=token), "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        port = int(url.rsplit(":", 1)[1])
        os.environ.update(BETASWEEP_PROXY_TOKEN=token, BETASWEEP_PROXY_CA=str(cert))
        try:
            client = GrpcStorage(host="127.0.0.1", port=port, heartbeat_interval=5, grace_period=10)
            client.wait_server_ready(timeout=10)
            optuna.create_study(storage=client, study_name="over-tls")
            assert [s.study_name for s in optuna.get_all_study_summaries(client)] == ["over-tls"]
            client.close()
        finally:
            os.environ.pop("BETASWEEP_PROXY_TOKEN")
            os.environ.pop("BETASWEEP_PROXY_CA")
        # plaintext to a TLS port gets nowhere
        one_line_exit_2(local("worker", "--study", "over-tls", "--storage", url, "--n-trials", "1",
                              BETASWEEP_PROXY_TOKEN=token), "--storage")
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- passwords: never in ps, logs, MLflow or the report --------------------------------------------------------


def test_no_password_in_ps_logs_mlflow_or_report(postgres_server, postgres_url, mlflow_server, dsprites_path, tmp_path):
    """A sweep of two local worker processes (submit --cluster local) against PostgreSQL with a password,
    the URL given only as BETASWEEP_STORAGE: the password is in no process's argv while they run, in no
    output or log line, in none of submitit's files but the 0600 storage-url file, in no MLflow param or
    tag, and not in the HTML report."""
    from mlflow.tracking import MlflowClient

    from helpers import tiny_spec

    password = postgres_server.password
    assert password in postgres_url
    name = f"secret-{secrets.token_hex(3)}"
    spec = tiny_spec(dsprites_path, name, n_trials=2, train_samples=480)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = _env(BETASWEEP_STORAGE=postgres_url)
    outputs = []

    created = run("study", "create", tmp_path / "spec.yaml", "--tracking-uri", mlflow_server, env=env, cwd=tmp_path,
                  check=True)
    outputs.append(created.stdout + created.stderr)
    assert json.loads(created.stdout)["storage"] == postgres_url.replace(password, "***")

    jobs = tmp_path / "jobs"
    submitted = subprocess.Popen([*betasweep_command(), "submit", "--study", name, "--workers", "2", "--cluster", "local",
                                  "--log-dir", str(jobs), "--heartbeat-interval", "2", "--grace-period", "10"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    seen_workers = 0
    while submitted.poll() is None:
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert password not in listing, [line for line in listing.splitlines() if password in line]
        seen_workers = max(seen_workers, listing.count("submitit"))
        time.sleep(0.5)
    out, err = submitted.communicate()
    assert submitted.returncode == 0, err[-3000:]
    outputs.append(out + err)
    assert seen_workers >= 1, "no worker process was seen while the sweep ran"

    secret_file = jobs / "storage-url"
    assert secret_file.read_text().strip() == postgres_url and (secret_file.stat().st_mode & 0o777) == 0o600
    for path in jobs.rglob("*"):
        if path.is_file() and path != secret_file:
            assert password.encode() not in path.read_bytes(), path
    logs = "".join(p.read_text(errors="replace") for p in jobs.glob("*_log.*"))
    assert "trial " in logs and "done" in logs

    report = tmp_path / "report.html"
    reported = run("report", "--study", name, "--tracking-uri", mlflow_server, "--out", report, env=env, cwd=tmp_path,
                   check=True)
    outputs.append(reported.stdout + reported.stderr)
    swept = run("sweep", tmp_path / "spec.yaml", "--tracking-uri", mlflow_server, "--n-trials", "1", env=env,
                cwd=tmp_path)  # loads the study, prints its storage line, runs one more trial
    assert swept.returncode == 0 and "storage postgresql+psycopg://" in swept.stderr, swept.stderr[-2000:]
    outputs.append(swept.stdout + swept.stderr)
    for text in outputs:
        assert password not in text, text[-2000:]
    assert password not in report.read_text(errors="replace")

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len(runs) >= 3  # the parent and two trials
    for mlflow_run in runs:
        fields = json.dumps({"params": mlflow_run.data.params, "tags": mlflow_run.data.tags})
        assert password not in fields, mlflow_run.info.run_id
    assert password not in json.dumps(experiment.tags)
