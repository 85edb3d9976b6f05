"""A retried trial continues from its failed attempt (sweeps/resume.py), with real workers, databases and MLflow.

A `betasweep worker` is SIGKILLed once the second of its trial's two seeds has checkpointed mid-training;
a second worker fails the trial as stale (heartbeats), runs its retry, and must keep the first seed
(not retrained: its metrics and artifacts are the failed attempt's) and resume the second from its last
checkpoint, so that the final weights equal an uninterrupted run's bit for bit (CPU, one thread).
SQLite with --checkpoint-dir, and PostgreSQL with the checkpoints in the runs' artifacts proxied by an
`mlflow server`. The Slurm time-limit requeue of the same is tests/slurm_time_limit.py (run by hand).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from helpers import betasweep_command, invoke_betasweep, tiny_spec
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "6")
CHECKPOINT_EVERY = 16
STEPS = 128  # per seed, batch 16


def resume_spec(dsprites_path, name: str) -> dict:
    spec = tiny_spec(dsprites_path, name, 1, train_samples=16 * STEPS, seeds_per_trial=2)
    spec["fixed"].update(checkpoint_every=CHECKPOINT_EVERY, threads=1, log_every=8)
    spec["metric"]["panel"] = ["beta_vae"]  # the panel is not what is tested here
    return spec


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker(name: str, storage: str, tracking_uri: str, cwd: Path, log: Path, *options: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([*betasweep_command(), "worker", "--study", name, "--storage", storage,
                                 "--tracking-uri", tracking_uri, "--no-progress", *HEARTBEAT, *options],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=_env())


def _wait(predicate, timeout: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 (SQLite busy while the worker writes)
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(p.read_text()[-3000:] for p in logs.glob("*.log")))


def uninterrupted(spec, params: dict, seed: int, data):
    """The seed's final weights trained straight through, in this process (one thread, as the workers)."""
    from betasweep.sweeps.spec import build_configs
    from betasweep.training import train

    model_config, train_config = build_configs(spec, params, seed, data.num_channels)
    return train(data, model_config, train_config)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_mid_second_seed_and_retry(dsprites_path, tmp_path, storage: str, tracking_uri: str, *options: str):
    """Run the scenario; returns (study, killed trial, retry trial, the step seen in the killed trial's checkpoints)."""
    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker

    name = f"resume-{secrets.token_hex(3)}"
    spec = parse_spec(resume_spec(dsprites_path, name))
    create_study(spec, make_storage(storage), Tracker(tracking_uri, name))
    study = optuna.load_study(study_name=name, storage=storage)
    first = _worker(name, storage, tracking_uri, tmp_path, tmp_path / "worker-0.log", *options)
    try:
        def second_seed_half_trained():
            (trial,) = study.get_trials(deepcopy=False)
            steps = trial.user_attrs.get("checkpoint_steps", {})
            return trial if "0" in trial.user_attrs.get("seeds_done", {}) and steps.get("1", 0) >= 2 * CHECKPOINT_EVERY else None

        killed = _wait(second_seed_half_trained, 150, "the second seed's checkpoints", tmp_path)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    seen = killed.user_attrs["checkpoint_steps"]["1"]
    assert seen < STEPS, "the second seed had finished before the kill: nothing left to resume"
    # The second worker in this process (betasweep.cli.main, as the console script; one torch thread, as the
    # first): the killed one had to be a process of its own, this one saves an interpreter's imports.
    second = invoke_betasweep("worker", "--study", name, "--storage", storage, "--tracking-uri", tracking_uri,
                              "--no-progress", *HEARTBEAT, *options, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    killed_trial, retry = study.get_trials(deepcopy=False)
    return spec, killed_trial, retry, seen, second.stderr


def assert_resumed(spec, killed, retry, seen: int, log: str, dsprites, final_weights) -> None:
    """The retry kept seed 0, resumed seed 1 at or after ``seen``, and its final weights are the uninterrupted run's."""
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE, log
    assert retry.system_attrs["retry_history"] == [killed.number] and retry.params == killed.params
    assert retry.user_attrs["attempt_of"] == killed.number
    assert retry.user_attrs["seeds"] == killed.user_attrs["seeds"]
    resumed = retry.user_attrs["resumed"]
    assert resumed["0"] == {"attempt": killed.number, "step": STEPS, "finished": True}, resumed
    assert resumed["1"]["attempt"] == killed.number and not resumed["1"]["finished"]
    assert seen <= resumed["1"]["step"] < STEPS and resumed["1"]["step"] % CHECKPOINT_EVERY == 0, (seen, resumed)
    # Seed 0 was not retrained: no training lines for it, its metrics are the failed attempt's.
    assert f"trial {retry.number}: seed 0: finished in trial {killed.number}; not retrained" in log, log
    assert f"trial {retry.number}: seed-0/" not in log and f"trial {retry.number}: seed-1/100%" in log, log
    assert f"resuming at step {resumed['1']['step']}" in log
    assert retry.user_attrs["per_seed"][0] == killed.user_attrs["seeds_done"]["0"]["metrics"]
    # Both seeds' final weights equal an uninterrupted run's, bit for bit.
    for index, seed in enumerate(retry.user_attrs["seeds"]):
        straight = uninterrupted(spec, retry.params, seed, dsprites)
        assert _equal(final_weights(index), straight.model.state_dict()), f"seed {index}"
        if index == 1:  # the resumed history (the sums since the last record included) is the straight one's
            from betasweep.training import read_checkpoint

            history = read_checkpoint(final_weights.path(index))["history"]
            assert [r["loss"] for r in history] == [r["loss"] for r in straight.history]


class Weights:
    """Final weights of the retry's seed ``i`` from a folder or a run's artifacts."""

    def __init__(self, locate):
        self.path = locate

    def __call__(self, index: int) -> dict:
        from betasweep.training import read_checkpoint

        return read_checkpoint(self.path(index))["model_state"]


def test_sqlite_worker_killed_mid_second_seed_resumes_from_the_checkpoint_dir(dsprites_path, dsprites, tmp_path):
    storage, tracking = f"sqlite:///{tmp_path / 'study.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    shared = tmp_path / "checkpoints"
    spec, killed, retry, seen, log = kill_mid_second_seed_and_retry(dsprites_path, tmp_path, storage, tracking,
                                                                     "--checkpoint-dir", str(shared))
    folder = shared / spec.study
    assert_resumed(spec, killed, retry, seen, log, dsprites,
                   Weights(lambda i: folder / f"trial-{killed.number if i == 0 else retry.number}" / f"seed-{i}"
                           / "checkpoint.pt"))
    assert not (folder / f"trial-{retry.number}" / "seed-0").exists()  # not retrained: nothing written for it
    client = MlflowClient(tracking)
    run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert run.data.tags["betasweep.attempt_of_trial"] == str(killed.number)
    assert run.data.tags["betasweep.attempt_of_run"] == killed.user_attrs["mlflow_run_id"]
    # The kept seed's artifacts are re-logged to the retry's run (the report's best checkpoint lives there).
    assert {a.path for a in client.list_artifacts(run.info.run_id, "seed-0/figures")} >= {
        "seed-0/figures/traversal.png", "seed-0/figures/reconstruction.png"}


def test_postgres_worker_killed_mid_second_seed_resumes_from_the_run_artifacts(dsprites_path, dsprites, postgres_url,
                                                                               mlflow_server, tmp_path):
    spec, killed, retry, seen, log = kill_mid_second_seed_and_retry(dsprites_path, tmp_path, postgres_url, mlflow_server)
    client = MlflowClient(mlflow_server)
    # The killed attempt's in-progress checkpoint was uploaded through the server (proxied artifacts).
    assert client.get_run(killed.user_attrs["mlflow_run_id"]).info.artifact_uri.startswith("mlflow-artifacts:")

    def located(index: int) -> Path:
        return Path(client.download_artifacts(retry.user_attrs["mlflow_run_id"], f"seed-{index}/checkpoint/checkpoint.pt",
                                              str(tmp_path / f"final-{index}")))

    assert_resumed(spec, killed, retry, seen, log, dsprites, Weights(located))


def test_a_corrupt_checkpoint_is_skipped_in_one_line_and_one_in_the_old_format_is_resumed(dsprites_path, tmp_path):
    """Failed attempts made by hand: one whose checkpoint is garbage (the retry restarts the seed at step 0, one
    logged line, and scores what an uninterrupted trial scores), one whose checkpoint has the layout of main
    before issue 17 (the retry resumes from it, to the same value)."""
    from betasweep.sweeps.spec import build_configs, load_spec_data, parse_spec
    from betasweep.sweeps.study import create_study, make_storage, run_trials
    from betasweep.tracking import Tracker
    from betasweep.training import TrainConfig, train

    raw = resume_spec(dsprites_path, "corrupt")
    raw.update(seeds_per_trial=1, train_samples=16 * 32, search_space={"beta": [2.0]}, n_trials=None)
    spec = parse_spec(raw)
    storage, tracker = make_storage(f"sqlite:///{tmp_path / 'study.db'}"), Tracker(f"sqlite:///{tmp_path / 'm.db'}", "corrupt")
    study = create_study(spec, storage, tracker)
    shared, said = tmp_path / "checkpoints", []
    run_trials(study, spec, tracker, n_trials=1, progress=False, echo=said.append, checkpoint_dir=shared)
    (straight,) = study.trials
    seed = straight.user_attrs["seeds"][0]

    def failed_attempt(write) -> int:
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params=straight.params,
                                                  distributions=straight.distributions, user_attrs={"seeds": [seed]}))
        number = len(study.trials) - 1
        path = shared / "corrupt" / f"trial-{number}" / "seed-0" / "checkpoint.pt"
        path.parent.mkdir(parents=True)
        write(path)
        study.enqueue_trial(straight.params, user_attrs={"retried_from": number})
        return number

    garbage = failed_attempt(lambda path: path.write_bytes(b"not a checkpoint" * 64))
    said.clear()
    run_trials(study, spec, tracker, n_trials=1, progress=False, echo=said.append, checkpoint_dir=shared)
    retry = study.trials[-1]
    skipped = [line for line in said if "skipping the checkpoint" in line]
    assert len(skipped) == 1 and f"of trial {garbage}: unreadable" in skipped[0], said
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["attempt_of"] == garbage
    assert retry.user_attrs["resumed"] == {"0": {"attempt": None, "step": 0, "finished": False}}
    assert retry.value == straight.value and retry.user_attrs["per_seed"][0]["recon_loss"] == straight.user_attrs["recon_loss"]

    def old_format(path: Path) -> None:  # half the budget, then stored in the frozen layout of tests/training
        from training.test_resume_and_speed import FORMAT_1_KEYS, FORMAT_1_TRAIN_CONFIG

        data = load_spec_data(spec)
        model_config, train_config = build_configs(spec, straight.params, seed, data.num_channels)
        half = TrainConfig(**{**train_config.to_dict(), "train_samples": 16 * 16})
        train(data, model_config, half, checkpoint_path=path)
        state = torch.load(path, weights_only=True)
        old = {k: v for k, v in state.items() if k in FORMAT_1_KEYS}
        old["train_config"] = {k: v for k, v in state["train_config"].items() if k in FORMAT_1_TRAIN_CONFIG}
        torch.save(old, path)

    old = failed_attempt(old_format)
    said.clear()
    run_trials(study, spec, tracker, n_trials=1, progress=False, echo=said.append, checkpoint_dir=shared)
    retry = study.trials[-1]
    assert retry.state == TrialState.COMPLETE and not [line for line in said if "skipping" in line], said
    assert retry.user_attrs["resumed"] == {"0": {"attempt": old, "step": 16, "finished": False}}
    assert retry.value == straight.value and retry.user_attrs["recon_loss"] == straight.user_attrs["recon_loss"]
