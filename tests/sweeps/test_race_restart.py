"""A race killed and started again: its rounds numbered as one uninterrupted race's, no task trained twice, the
same verdict. First :func:`run_race` on simulated values (a kill at each of its trainings), then the real
``betasweep race`` command, SIGKILLed while a round's extension trains, started again with the same arguments."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from betasweep.sweeps.race import ConfigRungs, run_race, rungs_of
from betasweep.sweeps.spec import RaceConfig

R0 = 24_000
MEANS = {"a": 0.9, "b": 0.895, "c": 0.85}  # c worse, b equivalent to a (margin 0.03): 4 rounds, extend then seeds
RACE = RaceConfig(max_seeds=6, max_images=4 * R0, margin=0.03)
RUNGS = rungs_of(R0, RACE.max_images)


class Killed(Exception):
    """The driver's process dies here (as SIGKILL would: nothing after it runs)."""


class Simulated:
    """A study's side of a race on fixed simulated values: seed ``s`` of configuration ``k`` at rung ``r`` scores
    the same whichever process trains it. ``train`` records its calls, trains each (configuration, seed, rung)
    once, and with ``kill_at`` = n dies in its n-th call after training half the plan's configurations."""

    def __init__(self, kill_at: int | None = None, stop_at: int | None = None) -> None:
        self.table = {k: ConfigRungs(f"config {k}") for k in MEANS}
        self.calls: list[int] = []
        self.trained: list[tuple[str, int, int]] = []
        self.kill_at, self.stop_at = kill_at, stop_at
        self.stored: dict | None = None
        for key in MEANS:
            for seed in range(2):
                self.fill(key, seed, R0)

    def fill(self, key: str, seed: int, images: int) -> None:
        at = self.table[key].values.setdefault(seed, {})
        for i, rung in enumerate(RUNGS):
            if rung <= images and rung not in at:
                noise = np.random.default_rng([list(MEANS).index(key), seed, rung]).normal(0, 0.005)
                at[rung] = MEANS[key] + np.random.default_rng([seed]).normal(0, 0.01) + noise
                self.table[key].images += rung - (RUNGS[i - 1] if i else 0)
                self.trained.append((key, seed, rung))

    def train(self, number: int, plan: dict) -> bool | None:
        self.calls.append(number)
        if self.stop_at == len(self.calls) - 1:
            return None  # the deadline: nothing trained
        for i, (key, (seeds, images)) in enumerate(plan.items()):
            if self.kill_at == len(self.calls) - 1 and i == len(plan) // 2:
                raise Killed
            for seed in range(seeds):
                self.fill(key, seed, images)
        return True

    def on_round(self, round_, labels, state) -> None:
        self.stored = json.loads(json.dumps(state))  # what the study keeps (its user attribute ``race``)

    def race(self, state=None):
        return run_race(lambda: self.table, self.train, RACE, "score", rungs=RUNGS, pair=True, state=state,
                        on_round=self.on_round)


def test_the_simulated_race_has_four_rounds_that_extend_then_add_seeds():
    plain = Simulated()
    result = plain.race()
    assert [(r.number, r.action) for r in result.rounds] == [(0, "extend"), (1, "seeds"), (2, "seeds"), (3, None)]
    assert plain.calls == [1, 2, 3] and result.words() == {"a": "best", "b": "equivalent", "c": "worse"}
    assert result.lines[0].split(": ")[1].startswith("decided after 3 rounds")


@pytest.mark.parametrize("kill_at", [0, 1, 2])
def test_a_race_killed_in_a_rounds_training_resumes_with_the_next_number_and_the_same_verdict(kill_at):
    plain = Simulated()
    expected = plain.race()
    killed = Simulated(kill_at=kill_at)
    with pytest.raises(Killed):
        killed.race()
    stored = copy.deepcopy(killed.stored)
    assert stored["round"] == kill_at  # the last round played: the killed training was round kill_at + 1's
    resumed = killed.race(state=stored)
    numbers = list(range(kill_at + 1)) + [r.number for r in resumed.rounds]
    assert numbers == [r.number for r in expected.rounds]  # 0, 1, 2, 3: none twice, none skipped
    # The killed training is taken up under its own number; no (configuration, seed, rung) is trained twice.
    assert killed.calls == plain.calls[:kill_at + 1] + plain.calls[kill_at:]
    assert len(killed.trained) == len(set(killed.trained)) and sorted(killed.trained) == sorted(plain.trained)
    assert resumed.lines == expected.lines  # "decided after 3 rounds" included, and the cost
    assert resumed.rounds[0].line(resumed.labels, RACE.margin).startswith(f"round {kill_at + 1} at ")


def test_a_race_stopped_at_its_deadline_resumes_with_the_next_number():
    stopped = Simulated(stop_at=1)
    first = stopped.race()
    assert first.status == "stopped" and [r.number for r in first.rounds] == [0, 1, 2]
    assert first.lines[0].split(": ")[1].startswith("stopped at its deadline after 2 rounds")
    calls = len(stopped.calls)
    resumed = stopped.race(state=copy.deepcopy(stopped.stored))
    numbers = [r.number for r in first.rounds + resumed.rounds]
    assert numbers == list(range(len(numbers)))  # continuous: the resumed race's first round is 3
    assert stopped.calls[calls] == 3 and resumed.status == "decided"  # the stopped training, taken up as round 3's
    assert len(stopped.trained) == len(set(stopped.trained))


# --- the real command, SIGKILLed mid-extension and started again ---------------------------------------------

RACE_ARGS = ("--max-seeds", "3", "--max-images", "1600", "--margin", "0.05", "--heartbeat-interval", "1",
             "--grace-period", "8", "--checkpoint-dir", "ckpt", "--no-progress")
TIMEOUT_S = 300  # 2 shared cores; the race alone takes about a minute


def _searched(dsprites_path, folder):
    """``folder`` with the search done (2 β × 2 seeds at 800 images, checkpoints under ``folder/ckpt``), its race
    not started: a spec without ``race:``, the race's settings on ``betasweep race``'s command line."""
    import yaml
    from helpers import invoke_betasweep, race_spec

    raw = race_spec(dsprites_path, "restart")
    raw.pop("race")
    raw["metric"].pop("curve")  # the race scores each rung with the panel; the cheap curve only costs time here
    raw["fixed"] = {**raw["fixed"], "checkpoint_every": 5}  # a killed extension resumes from its last 5 steps
    folder.mkdir()
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw))
    invoke_betasweep("sweep", "spec.yaml", "--checkpoint-dir", "ckpt", "--no-progress", cwd=folder, check=True)
    return folder


def _copy(searched, folder):
    """A copy of the searched study (its databases and checkpoints): the same trials and seeds to race again. Its
    MLflow runs keep their artifact folder (absolute paths in mlflow.db), which both copies then share as they
    would share a tracking server's."""
    import shutil

    shutil.copytree(searched, folder)
    return folder


def _race_args(folder) -> list[str]:
    return ["race", "--study", "restart", "--storage", f"sqlite:///{folder / 'betasweep.db'}",
            "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", *RACE_ARGS]


def _images_by_task(trials) -> dict[str, int]:
    """Images trained per race task (configuration, seed, rung) from the trial records: each complete attempt's
    ``images_trained``, and a killed attempt's part up to the checkpoint its retry resumed from (``resumed``: its
    last, ``checkpoint_steps``; the steps after it are lost and trained again by the retry, the one allowance of a
    kill). Batch 16 (the spec's)."""
    from optuna.trial import TrialState

    by_number = {t.number: t for t in trials}
    images: dict[str, int] = {}
    for t in trials:
        task = t.user_attrs.get("race_task")
        if task is None:
            continue
        if t.state == TrialState.COMPLETE:
            images[task] = images.get(task, 0) + t.user_attrs["images_trained"]
            for how in t.user_attrs.get("resumed", {}).values():  # the killed attempt's checkpointed part
                if how.get("attempt") is not None and not how.get("finished"):
                    killed = by_number[how["attempt"]].user_attrs
                    start = killed["race_images"] // 2 if "race_from" in killed else 0  # an extension starts a rung below
                    images[task] += int(how["step"]) * 16 - start
    return images


def _without_cpu(lines: list[str]) -> list[str]:
    """The race's printed lines without their CPU seconds (they differ from run to run; images and GPU s do not)."""
    import re

    return [re.sub(r"[\d,]+ CPU s", "CPU s", line) for line in lines]


def test_the_race_command_killed_mid_extension_resumes_and_decides_as_an_uninterrupted_race(dsprites_path, tmp_path):
    import os
    import signal
    import subprocess
    import time

    import optuna
    from helpers import betasweep_command, invoke_betasweep
    from optuna.trial import TrialState

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    searched = _searched(dsprites_path, tmp_path / "searched")
    killed_folder, alone_folder = _copy(searched, tmp_path / "killed"), _copy(searched, tmp_path / "alone")
    study = optuna.load_study(study_name="restart", storage=f"sqlite:///{killed_folder / 'betasweep.db'}")
    log = killed_folder / "race-1.log"
    with open(log, "wb") as out:
        race = subprocess.Popen([*betasweep_command(), *_race_args(killed_folder)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=killed_folder, env=env)
    try:
        victim, deadline = None, time.monotonic() + TIMEOUT_S
        while victim is None and race.poll() is None and time.monotonic() < deadline:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            victim = next((t.number for t in running if "race_from" in t.user_attrs
                           and t.user_attrs.get("checkpoint_steps")), None)  # past a checkpoint of its own
            time.sleep(0.05 if victim is None else 0)
        assert victim is not None, "the race never trained an extension\n" + log.read_text()[-3000:]
        race.send_signal(signal.SIGKILL)  # the driver, mid-extension (it trains the round's tasks itself)
        race.wait(timeout=30)
    finally:
        if race.poll() is None:
            race.kill()
            race.wait(timeout=30)
    state = study.user_attrs["race"]
    assert state["status"] == "running" and study.trials[victim].state == TrialState.RUNNING
    restart = subprocess.run([*betasweep_command(), *_race_args(killed_folder)], capture_output=True, text=True,
                             cwd=killed_folder, env=env, timeout=TIMEOUT_S)
    (killed_folder / "race-2.log").write_text(restart.stderr)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert f"race: resuming after round {state['round']} " in restart.stderr
    assert f"race round {state['round'] + 1} at " in restart.stderr and f"race round {state['round']} at " not in restart.stderr

    trials = study.get_trials(deepcopy=False)
    assert trials[victim].state == TrialState.FAIL  # failed as stale by the restarted race, then retried:
    (retry,) = [t for t in trials if victim in t.system_attrs.get("retry_history", [])]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["race_task"] == trials[victim].user_attrs["race_task"]
    resumed = retry.user_attrs["resumed"]["0"]  # from the killed attempt's own last checkpoint, past the lower rung
    # (>=: a kill between writing a checkpoint and recording its step leaves the record one checkpoint behind)
    assert resumed["attempt"] == victim and resumed["step"] >= trials[victim].user_attrs["checkpoint_steps"]["0"] > 50
    tasks = [t.user_attrs["race_task"] for t in trials if t.state == TrialState.COMPLETE and "race_task" in t.user_attrs]
    assert len(tasks) == len(set(tasks)), "a seed trained twice at a rung"
    images = _images_by_task(trials)
    assert images and all(n == 800 for n in images.values()), images  # each task 800 images: none twice
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))

    # The same spec and seeds, raced by one uninterrupted process.
    invoke_betasweep(*_race_args(alone_folder), cwd=alone_folder, check=True)
    alone = optuna.load_study(study_name="restart", storage=f"sqlite:///{alone_folder / 'betasweep.db'}")
    resumed_state, alone_state = study.user_attrs["race"], alone.user_attrs["race"]
    assert resumed_state["status"] == alone_state["status"] and resumed_state["outcome"] == alone_state["outcome"]
    # The same rounds, numbered 0, 1, ... across the kill, and the same verdict, cost in images included: the killed
    # attempt's images up to its checkpoint count once (the retry's resumed part), as the uninterrupted race's do.
    assert _without_cpu(resumed_state["rounds"]) == _without_cpu(alone_state["rounds"])
    assert _without_cpu(resumed_state["verdict"]) == _without_cpu(alone_state["verdict"])
    values = lambda s: sorted((t.params["beta"], t.user_attrs["seeds"][0], t.user_attrs.get("race_images", 800),
                               t.user_attrs["per_seed"][0]["beta_vae"]) for t in s.get_trials(states=(TrialState.COMPLETE,))
                              if "race_task" in t.user_attrs)
    assert values(study) == values(alone)
