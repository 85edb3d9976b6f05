"""``--jobs N``: several local processes of one thread on one study (Optuna's JournalStorage on a file)."""

from __future__ import annotations

import os
import subprocess
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from betasweep.errors import ConfigError
from betasweep.sweeps.jobs import resolve_jobs, usable_cores
from betasweep.sweeps.study import DEFAULT_JOURNAL, DEFAULT_STORAGE, local_storage, make_storage

import helpers


def test_resolve_jobs_and_local_storage():
    assert resolve_jobs("auto") == usable_cores() >= 1
    assert resolve_jobs("3") == 3 and resolve_jobs(1) == 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ConfigError, match=f"--jobs {bad}: expected a number of processes >= 1 or auto"):
            resolve_jobs(bad)
    assert local_storage(DEFAULT_STORAGE, 2) == DEFAULT_JOURNAL
    assert local_storage("runs.journal", 4) == "runs.journal"
    assert local_storage("postgresql+psycopg://u@h/db", 4) == "postgresql+psycopg://u@h/db"
    with pytest.raises(ConfigError, match="SQLite is for one process"):
        local_storage("sqlite:///other.db", 2)


def test_journal_heartbeats_fail_a_silent_trial_and_queue_its_retry(tmp_path):
    storage = make_storage(str(tmp_path / "s.journal"), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="hb")
    silent, beating = study.ask(), study.ask()  # RUNNING; no worker beats for the first
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        storage.record_heartbeat(beating._trial_id)
        time.sleep(0.5)
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[silent.number] == TrialState.FAIL
    assert states[beating.number] == TrialState.RUNNING
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["failed_trial"] for t in retries] == [silent.number]


def _sweep(directory, spec, *args, in_process: bool = False):
    """``betasweep sweep spec.yaml ARGS`` in ``directory``: the console script, or ``betasweep.cli.main`` in this
    process (whose torch runs one thread, as the subprocess's and the workers')."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spec.yaml").write_text(yaml.safe_dump(spec))
    if in_process:
        proc = helpers.invoke_betasweep("sweep", "spec.yaml", "--no-progress", *args, cwd=directory,
                                        env={"BETASWEEP_STORAGE": None})
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # --jobs 1 at one thread too: the same arithmetic as the workers
        env.pop("BETASWEEP_STORAGE", None)
        proc = subprocess.run([*helpers.betasweep_command(), "sweep", "spec.yaml", "--no-progress", *args],
                              cwd=directory, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_jobs_2_gives_the_trials_of_jobs_1(dsprites_path, tmp_path):
    """A grid of 4 β on the real dSprites grid, 1 seed each: the same values (score, recon, KL: the same weights)
    by β with 1 and with 2 processes; both processes train."""
    spec = helpers.tiny_spec(dsprites_path, study="jobs", n_trials=4, search_space={"beta": [0.5, 1.0, 2.0, 8.0]},
                             sampler={"name": "grid", "seed": 0})
    _sweep(tmp_path / "one", spec, "--jobs", "1", in_process=True)
    proc = _sweep(tmp_path / "two", spec, "--jobs", "2")
    assert "--jobs 2: 1 worker process(es) of one thread" in proc.stderr
    assert not (tmp_path / "two" / "betasweep.db").exists()  # the default storage became the journal
    one = optuna.load_study(study_name="jobs", storage=f"sqlite:///{tmp_path / 'one' / 'betasweep.db'}")
    two = optuna.load_study(study_name="jobs", storage=make_storage(str(tmp_path / "two" / DEFAULT_JOURNAL)))
    by_beta = {}
    for study in (one, two):
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
        by_beta[study] = {t.params["beta"]: (t.value, t.user_attrs["seeds"], t.user_attrs["recon_loss"], t.user_attrs["kl"])
                          for t in trials}
    assert by_beta[one] == by_beta[two]
    workers = {t.user_attrs["worker"] for t in two.get_trials()}
    assert len(workers) == 2  # both processes trained
    # the report finds the journal with the default --storage (no betasweep.db here)
    helpers.invoke_betasweep("report", "--study", "jobs", "--gallery", "0", "--no-register", cwd=tmp_path / "two",
                             check=True)


def test_bad_jobs_is_one_line_exit_2_and_writes_nothing(tmp_path):
    for command, value in ((("sweep",), "0"), (("race", "--study", "s"), "-1")):
        proc = helpers.invoke_betasweep(*command, f"--jobs={value}", cwd=tmp_path)  # bad input: in-process
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"betasweep: error: --jobs {value}: expected a number of processes >= 1 or auto"]
        assert list(tmp_path.iterdir()) == []
