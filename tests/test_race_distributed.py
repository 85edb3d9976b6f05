"""`betasweep race` with real components: PostgreSQL, an `mlflow server`, three `betasweep worker` subprocesses,
one of them SIGKILLed mid-extension (a seed being continued from 800 to 1,600 images); its task must be retried
from its own last checkpoint, no rung trained twice, and the verdict must equal a one-process race's on the same spec."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import betasweep_command, invoke_betasweep, race_spec
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(1800)  # two races with extension (distributed, then alone) on 2 shared cores

HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "8")
TIMEOUT_S = 420  # generous: the CI machine has 2 shared cores and this runs 4 processes on them


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([*betasweep_command(), *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=_env())


def _outcome(study: optuna.Study) -> dict:
    """What a race decided, independent of trial numbering: status, the words, each β's (seed, rung, value)."""
    per_config: dict[float, list] = {}
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        seeds = trial.user_attrs["seeds"]
        rung = trial.user_attrs.get("race_images", 800)
        values = [m["beta_vae"] for m in trial.user_attrs["per_seed"]]
        per_config.setdefault(trial.params["beta"], []).extend((seed, rung, value) for seed, value in zip(seeds, values))
    race = study.user_attrs["race"]
    words = {key: d["word"] for key, d in race["outcome"].items()}
    return {"status": race["status"], "contenders": len(race["contenders"]), "words": words,
            "seeds": {beta: sorted(triples) for beta, triples in per_config.items()}}


def test_race_on_postgres_with_three_workers_loses_nothing_when_one_is_killed(postgres_url, mlflow_server, dsprites_path,
                                                                               tmp_path):
    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker

    name = f"race-{secrets.token_hex(4)}"
    raw = race_spec(dsprites_path, name, race={"max_seeds": 4, "max_images": 1600, "margin": 0.05})
    raw["fixed"] = {**raw["fixed"], "checkpoint_every": 5}  # a killed extension resumes from its last 5 steps
    spec = parse_spec(raw)
    create_study(spec, make_storage(postgres_url), Tracker(mlflow_server, name))
    common = ["--study", name, "--storage", postgres_url, "--tracking-uri", mlflow_server, "--no-progress", *HEARTBEAT]
    # the search (2 trials of 2 seeds) by a worker in this process: the processes that matter are the race's
    search = invoke_betasweep("worker", *common, cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-3000:]

    race = _start(["race", *common], tmp_path / "race.log", tmp_path)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    deadline = time.monotonic() + TIMEOUT_S  # workers that find no race alive and nothing queued stop at once
    while "race_alive" not in study.user_attrs and race.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [_start(["worker", *common], tmp_path / f"worker-{i}.log", tmp_path) for i in range(3)]
    logs = lambda: "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(tmp_path.glob("*.log")))
    try:
        ours = {f"{socket.gethostname()}:{w.pid}": w for w in workers}
        deadline, victim = time.monotonic() + TIMEOUT_S, None
        while victim is None and time.monotonic() < deadline and race.poll() is None:
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if ("race_from" in trial.user_attrs and trial.user_attrs.get("worker") in ours
                        and trial.user_attrs.get("checkpoint_steps")):  # mid-extension, past a checkpoint of its own
                    victim = (trial.number, ours[trial.user_attrs["worker"]])
                    break
            else:
                time.sleep(0.1)
        assert victim is not None, "no worker took an extension\n" + logs()
        killed_number, killed = victim
        killed.send_signal(signal.SIGKILL)  # mid-extension: its trial is RUNNING
        assert race.wait(timeout=TIMEOUT_S) == 0, logs()
        for worker in workers:
            worker.wait(timeout=60)  # the race is over: waiting workers see it and stop
    finally:
        for process in (race, *workers):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=30)

    assert "race verdict:" in (tmp_path / "race.log").read_text(), logs()
    assert [w.returncode for w in workers if w is not killed] == [0, 0], logs()
    trials = study.get_trials(deepcopy=False)
    killed_trial = trials[killed_number]
    assert killed_trial.state == TrialState.FAIL  # failed as stale by a live process, then retried:
    retries = [t for t in trials if killed_number in t.system_attrs.get("retry_history", [])]
    assert [t.state for t in retries] == [TrialState.COMPLETE], logs()
    retry = retries[0]
    assert retry.user_attrs["race_seeds"] == killed_trial.user_attrs["race_seeds"]  # the same seed and rung, once
    assert retry.user_attrs["race_task"] == killed_trial.user_attrs["race_task"]
    # Retried from the killed attempt's own checkpoint (past the 800-image rung), not from the rung below: the
    # images trained are the killed attempt's checkpointed part plus the retry's, 800 in all.
    resumed = retry.user_attrs["resumed"]["0"]
    assert resumed["attempt"] == killed_number and resumed["step"] > 50, retry.user_attrs["resumed"]
    assert (resumed["step"] - 50) * 16 + retry.user_attrs["images_trained"] == 800
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    tasks = [t.user_attrs["race_task"] for t in complete if "race_task" in t.user_attrs]
    assert len(tasks) == len(set(tasks)), "a seed trained twice at a rung"
    assert any(t.user_attrs.get("race_images") == 1600 for t in complete)
    for beta in (0.5, 8.0):
        seeds = sorted({s for t in complete if t.params["beta"] == beta for s in t.user_attrs["seeds"]},
                       key=lambda s: [spec.seed_at(0, i) for i in range(8)].index(s))
        assert seeds == [spec.seed_at(0, i) for i in range(len(seeds))] and len(seeds) <= 4
    distributed = _outcome(study)

    # The same spec, raced by one process (`betasweep sweep` runs the search, then the spec's race): this one.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "spec.yaml").write_text(yaml.safe_dump(raw))
    proc = invoke_betasweep("sweep", "spec.yaml", "--no-progress", cwd=alone, env={"BETASWEEP_STORAGE": None})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _outcome(optuna.load_study(study_name=name, storage=f"sqlite:///{alone / 'betasweep.db'}")) == distributed
