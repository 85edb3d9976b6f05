"""`betasweep race` on a real one-node Slurm cluster (tests/slurm.py), PostgreSQL and an `mlflow server`: the race
queues its extension tasks as trials, and the workers of a Slurm job array started as users start them
(`betasweep submit --cluster slurm`, submitit's sbatch) take them; the race ends decided or undecided with no
seed trained twice at a rung, and the array's workers stop once the race is over."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time

import pytest
import yaml
from helpers import betasweep_command, invoke_betasweep, race_spec
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(600)

HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "8")
TIMEOUT_S = 300  # 2 shared cores: the race and two array tasks train at once


def test_slurm_array_workers_take_the_race_extension_tasks(slurm_cluster, postgres_url, mlflow_server, dsprites_path,
                                                            tmp_path):
    import optuna

    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker

    name = f"race-slurm-{secrets.token_hex(4)}"
    raw = race_spec(dsprites_path, name, race={"max_seeds": 3, "max_images": 1600, "margin": 0.05})
    raw["metric"].pop("curve")  # the race scores each rung with the panel; the cheap curve only costs time here
    create_study(parse_spec(raw), make_storage(postgres_url), Tracker(mlflow_server, name))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    common = ["--study", name, "--storage", postgres_url, "--tracking-uri", mlflow_server, "--no-progress",
              "--checkpoint-dir", str(tmp_path / "ckpt"), *HEARTBEAT]
    invoke_betasweep("worker", *common, cwd=tmp_path, check=True)  # the search: 2 trials of 2 seeds at 800 images

    env = {**os.environ, **slurm_cluster.env(), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = tmp_path / "race.log"
    with open(log, "wb") as out:
        race = subprocess.Popen([*betasweep_command(), "race", *common], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp_path, env=env)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    jobs = tmp_path / "jobs"
    try:
        deadline = time.monotonic() + TIMEOUT_S  # an array worker finding no race alive and nothing queued stops
        while "race_alive" not in study.user_attrs and race.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        submitted = invoke_betasweep("submit", "--study", name, "--storage", postgres_url, "--tracking-uri", mlflow_server,
                                     "--workers", "2", "--cluster", "slurm", "--time", "10", "--log-dir", str(jobs),
                                     "--checkpoint-dir", str(tmp_path / "ckpt"), *HEARTBEAT, cwd=tmp_path,
                                     env=slurm_cluster.env(), check=True)
        job = json.loads(submitted.stdout)["job_id"]
        assert race.wait(timeout=TIMEOUT_S) == 0, log.read_text()[-3000:]
        deadline = time.monotonic() + 120  # the race is over: waiting array workers see it and stop
        while slurm_cluster.run("squeue", "-h", "-j", job).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        if race.poll() is None:
            race.kill()
            race.wait(timeout=30)
    logs = "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-2500:]}"
                     for p in [log, *sorted(jobs.glob("*_log.*"))] if p.is_file())
    assert not slurm_cluster.run("squeue", "-h", "-j", job).stdout.strip(), "the array still runs\n" + logs
    assert "race verdict:" in log.read_text(), logs

    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state.name) for t in trials]
    tasks = [t for t in trials if "race_task" in t.user_attrs]
    names = [t.user_attrs["race_task"] for t in tasks]
    assert len(names) == len(set(names)), "a seed trained twice at a rung"
    # Each task trained 800 images: a new seed to 800, an extension from its lower rung's checkpoint (800) to
    # 1,600 (not 1,600 from scratch), on whichever machine took it.
    assert all(t.user_attrs["images_trained"] == 800 for t in tasks), [t.user_attrs["images_trained"] for t in tasks]
    extensions = [t for t in tasks if "race_from" in t.user_attrs]
    by_array = [t for t in extensions if str(t.user_attrs.get("slurm_task", "")).startswith(f"{job}_")]
    assert by_array, "no array task took an extension\n" + logs  # the array's workers, not only the race's process
    assert {t.user_attrs["slurm_task"] for t in by_array} <= {f"{job}_0", f"{job}_1"}
    state = study.user_attrs["race"]
    assert state["status"] in ("decided", "undecided") and state["rounds"][0].startswith("round 0 at 800 images")
    errs = sorted(jobs.glob("*_log.err"))
    assert len(errs) == 2 and all("Traceback" not in p.read_text() for p in errs), logs
