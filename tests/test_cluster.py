"""`betasweep submit` as a user runs it: a real one-node Slurm (tests/slurm.py), real PostgreSQL and `mlflow server`.

The Slurm test submits two workers of a 4-trial study as a job array and requeues one task in the
middle of a trial (`scontrol requeue`, as an admin or preemption does): the trial must end FAIL
with its reason, its params run again, the task come back, and the study end with exactly 4
COMPLETE trials. `--cluster local` runs the same workers as processes; `--dry-run` and bad input
need no Slurm at all. `submit` itself runs in this process (betasweep.cli.main, as the console script, whose own
run is tests/test_security.py's); the workers it starts are processes, on Slurm or here.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy.engine
import yaml
from helpers import invoke_betasweep, tiny_spec
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from test_distributed import Study, child_runs, make_study, wait_for  # noqa: F401  (make_study: a fixture)

from betasweep.cli import main

HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "8")


WORKER_ENV = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as test_distributed's _env()


def submit_in_process(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``betasweep submit ARGS`` in this process (betasweep.cli.main; ``env`` overrides variables for the call, and
    the workers it starts inherit them): a subprocess would spend its seconds importing before it submits; the
    workers are processes either way. tests/test_security.py runs the console script of ``submit``."""
    return invoke_betasweep("submit", *args, cwd=cwd, env=env)


def assert_exactly_n_complete_with_finished_runs(study, n: int) -> list:
    trials = study.trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n, [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == n, f"duplicated params among complete trials: {params}"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    runs = child_runs(study)
    for trial in complete:
        (run,) = runs[trial.number]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"] and run.info.status == "FINISHED"
    return trials


def final_retry(trials, number: int):
    """The COMPLETE trial that ends the chain of re-queues of trial ``number`` (a retry may be stopped in turn)."""
    while True:
        (retry,) = [t for t in trials if t.user_attrs.get("retried_from") == number]
        if retry.state == TrialState.COMPLETE:
            return retry
        assert retry.state == TrialState.FAIL and "SIG" in retry.user_attrs["fail_reason"], retry
        number = retry.number


# --- no Slurm needed --------------------------------------------------------------------------------------------


def test_dry_run_shows_the_array_resources_and_worker_command_and_submits_nothing(tmp_path):
    proc = submit_in_process("--study", "s1", "--storage", "postgresql+psycopg://me:s3cret@db.example:5432/optuna",
                             "--workers", "3", "--cluster", "slurm", "--time", "45", "--cpus-per-worker", "4",
                             "--gpus-per-worker", "1", "--mem", "16", "--max-parallel", "2", "--slurm-arg", "account=lab",
                             "--max-complete-trials", "12", "--dry-run", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --time=45", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --mem=16384MB", "#SBATCH --account=lab",
                 "#SBATCH --signal=USR2@120", "#SBATCH --job-name=betasweep-s1",
                 "export OMP_NUM_THREADS=4 MKL_NUM_THREADS=4 PYTHONUNBUFFERED=1"):
        assert line in script.splitlines(), f"{line!r} not in:\n{script}"
    worker_line = next(line for line in script.splitlines() if "betasweep worker" in line)
    assert "--study s1 --storage 'postgresql+psycopg://me:***@db.example:5432/optuna' --max-complete-trials 12" in worker_line
    assert "s3cret" not in script + proc.stderr
    assert "nothing submitted" in proc.stderr
    assert not (tmp_path / "betasweep-jobs").exists()


def test_workers_per_gpu_asks_one_gpu_and_k_cpus_per_task_and_passes_the_checkpoint_dir(tmp_path):
    proc = submit_in_process("--study", "s1", "--storage", "postgresql+psycopg://me:pw@db.example:5432/optuna",
                             "--workers", "2", "--cluster", "slurm", "--workers-per-gpu", "4", "--cpus-per-worker", "2",
                             "--checkpoint-dir", str(tmp_path / "ck"), "--dry-run", cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --cpus-per-task=8", "#SBATCH --gpus-per-node=1",
                 "export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 PYTHONUNBUFFERED=1"):
        assert line in lines, f"{line!r} not in:\n{proc.stdout}"
    worker_line = next(line for line in lines if "betasweep worker" in line)
    assert "4 worker processes sharing its GPU" in worker_line and f"--checkpoint-dir {tmp_path / 'ck'}" in worker_line
    assert "2 worker(s) x 4 per GPU" in proc.stderr
    bad = submit_in_process("--study", "s1", "--storage", "grpc://127.0.0.1:9", "--workers", "1", "--workers-per-gpu",
                            "2", "--gpus-per-worker", "2", "--cluster", "local", cwd=tmp_path)
    assert bad.returncode == 2 and "--workers-per-gpu shares one GPU per task" in bad.stderr, bad.stderr


def test_local_task_with_two_workers_per_gpu_runs_both_processes_on_one_study(postgres_url, mlflow_server,
                                                                               dsprites_path, tmp_path):
    """No GPU here: the two worker processes of the one task train on the CPU; what is tested is the task."""
    name = f"pergpu-{secrets.token_hex(4)}"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(dsprites_path, name, 2)))
    proc = submit_in_process(str(spec_path), "--storage", postgres_url, "--tracking-uri", mlflow_server, "--workers",
                             "1", "--workers-per-gpu", "2", "--cluster", "local", "--log-dir", str(tmp_path / "jobs"),
                             *HEARTBEAT, cwd=tmp_path, env=WORKER_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = sorted((tmp_path / "jobs").glob("*_log.out"))
    assert "2 workers on this task's GPU" in out.read_text(), out.read_text()
    study = Study(name, postgres_url, mlflow_server, tmp_path, [])
    trials = assert_exactly_n_complete_with_finished_runs(study, 2)
    assert len(trials) == 2
    (err,) = sorted((tmp_path / "jobs").glob("*_log.err"))
    assert err.read_text().count("worker done") == 2, err.read_text()[-3000:]  # both processes joined and ended


@pytest.mark.parametrize("args, expected", [
    (["--storage", "sqlite:///study.db", "--cluster", "slurm"], "SQLite cannot be shared by Slurm tasks"),
    (["--storage", "postgresql+psycopg://u:p@127.0.0.1:9/db", "--cluster", "slurm", "--no-sbatch"],
     "--cluster slurm: no sbatch/srun on PATH"),
    (["--storage", "postgresql+psycopg://u:p@127.0.0.1:9/db", "--cluster", "local"], "cannot open"),
    (["--storage", "grpc://127.0.0.1:9", "--cluster", "local"], "no storage proxy answers there"),
    (["--storage", "grpc://127.0.0.1:9", "--workers", "0"], "Invalid value for '--workers'"),
    (["--storage", "grpc://127.0.0.1:9", "--slurm-arg", "acount=lab"], "'acount' is not an sbatch option"),
    (["--storage", "grpc://127.0.0.1:9", "--slurm-arg", "time=10"], "set time with betasweep's --time"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_submitted(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if "--no-sbatch" in args:
        args = [a for a in args if a != "--no-sbatch"]
        monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    if "--workers" not in args:
        args += ["--workers", "2"]
    assert main(["submit", "--study", "s1", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("betasweep: error: ") and expected in err[0], err
    assert "Traceback" not in err[0] and not (tmp_path / "betasweep-jobs").exists()


# --- real workers --------------------------------------------------------------------------------------------


def test_local_cluster_creates_the_study_of_a_spec_and_runs_two_worker_processes(postgres_url, mlflow_server,
                                                                                   dsprites_path, tmp_path):
    name = f"local-{secrets.token_hex(4)}"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec(dsprites_path, name, 2)))
    proc = submit_in_process(str(spec_path), "--storage", postgres_url, "--tracking-uri", mlflow_server, "--workers",
                             "2", "--cluster", "local", "--log-dir", str(tmp_path / "jobs"), *HEARTBEAT, cwd=tmp_path,
                             env=WORKER_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["cluster"] == "local" and len(result["tasks"]) == 2 and result["target"] == 2
    assert re.search(re.escape(f"MLflow: {mlflow_server}/#/experiments/") + r"\d+\?workflowType=machine_learning",
                     proc.stderr), proc.stderr
    assert proc.stderr.count(": done") == 2, proc.stderr
    outs, errs = (sorted((tmp_path / "jobs").glob(f"*_log.{kind}")) for kind in ("out", "err"))
    assert len(outs) == 2 and all("local task" in p.read_text() for p in outs), outs
    assert all("worker done" in p.read_text() for p in errs), [p.read_text() for p in errs]
    study = Study(name, postgres_url, mlflow_server, tmp_path, [])
    trials = assert_exactly_n_complete_with_finished_runs(study, 2)
    assert len(trials) == 2


def test_slurm_array_of_two_workers_with_a_task_requeued_mid_trial(slurm_cluster, make_study, tmp_path):
    # trials of ~6 s (3,200 images), not tiny_spec's ~3: a trial seen running for 1 s must still be running when the
    # requeue lands, and task 0 must still have one to start after it (at 800 images all 4 had ended first, once)
    study = make_study(n_trials=4, train_samples=3200)
    jobs = tmp_path / "jobs"
    proc = submit_in_process("--study", study.name, "--workers", "2", "--cluster", "slurm",  # URL: BETASWEEP_STORAGE
                             "--time", "10", "--log-dir", str(jobs), *HEARTBEAT, cwd=tmp_path,
                             env={**WORKER_ENV, **slurm_cluster.env(), "BETASWEEP_STORAGE": study.storage})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    job = result["job_id"]
    assert result["cluster"] == "slurm" and result["tasks"] == [f"{job}_0", f"{job}_1"]
    assert f"squeue -j {job}" in proc.stderr and f"scancel {job}" in proc.stderr

    def mid_trial(task: str, after: int = -1):
        for trial in study.trials():
            if (trial.state == TrialState.RUNNING and trial.user_attrs.get("slurm_task") == task
                    and trial.number > after and "mlflow_run_id" in trial.user_attrs
                    and time.time() - trial.datetime_start.timestamp() > 1):
                return trial
        return None

    victim = wait_for(lambda: mid_trial(f"{job}_1"), 180, f"task {job}_1 in the middle of a trial")
    password = sqlalchemy.engine.make_url(study.storage).password  # issue 22: in no task's argv while it trains
    assert password and password not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    slurm_cluster.run("scontrol", "requeue", f"{job}_1")  # as an admin or a preemption does: SIGTERM, requeue
    # What Slurm sends --signal-lead seconds before --time (as submitit's own tests do): SIGUSR2.
    timed_out = wait_for(lambda: mid_trial(f"{job}_0", victim.number), 180, f"task {job}_0 in the middle of a trial")
    slurm_cluster.run("scancel", "--signal=USR2", f"{job}_0")

    def array_ended():
        # Slurm holds a requeued task for about 2 minutes (Reason=BeginTime); let it start now instead.
        pending = slurm_cluster.run("squeue", "-h", "-j", job, "-o", "%i %r").stdout.split("\n")
        for line in filter(None, pending):
            task, reason = line.split(maxsplit=1)
            if reason == "BeginTime":
                slurm_cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now", check=False)
        return not any(pending)

    wait_for(array_ended, 300, "the array to end", interval=1.0)
    log_0, log_1 = (jobs / f"{job}_{task}_0_log.err" for task in (0, 1))
    logs = f"--- task 0:\n{log_0.read_text()[-3000:]}\n--- task 1:\n{log_1.read_text()[-3000:]}"

    trials = assert_exactly_n_complete_with_finished_runs(study, 4)
    # The task warned of its time limit closed its trial and was requeued by submitit (`scontrol requeue`).
    out_0 = (jobs / f"{job}_0_0_log.out").read_text()
    assert trials[timed_out.number].state == TrialState.FAIL, logs
    assert "SIGUSR2" in trials[timed_out.number].user_attrs["fail_reason"]
    assert final_retry(trials, timed_out.number).params == timed_out.params
    assert "requeueing through submitit" in out_0 and "could not requeue" not in out_0, out_0
    assert out_0.count(f"array task {job}_0: betasweep worker --study") == 2, out_0
    failed = trials[victim.number]
    assert failed.state == TrialState.FAIL, logs
    assert "SIGTERM" in failed.user_attrs["fail_reason"], failed.user_attrs
    assert final_retry(trials, victim.number).params == victim.params, logs
    run = MlflowClient(study.tracking_uri).get_run(victim.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags["fail_reason"]
    # Both tasks ran trials, and the requeued task came back (a second start in its log).
    assert {f"{job}_0", f"{job}_1"} <= {t.user_attrs.get("slurm_task") for t in trials}, logs
    assert re.search(r"trial \d+: beta_vae \d", log_0.read_text()) and f"trial {victim.number}: " in log_1.read_text(), logs
    out_1 = (jobs / f"{job}_1_0_log.out").read_text()
    assert out_1.count(f"array task {job}_1: betasweep worker --study") == 2, out_1
    # The storage URL travels in a 0600 file only: not in submitit's pickled task, batch script or logs.
    secret = jobs / "storage-url"
    assert secret.read_text().strip() == study.storage and secret.stat().st_mode & 0o777 == 0o600
    leaked = [p for p in jobs.rglob("*") if p.is_file() and p != secret and password.encode() in p.read_bytes()]
    assert not leaked and any(jobs.rglob("*.pkl")), leaked
