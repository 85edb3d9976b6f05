"""A 2-trial sweep and `betasweep evaluate` end to end on each ground-truth file format (tiny budgets),
and a bad file refused by `betasweep sweep` before any study exists."""

from __future__ import annotations

import json

import pytest
import yaml

import synthetic
from betasweep.cli import main

WRITERS = {
    "dsprites": lambda root: synthetic.write_dsprites(root),
    "3dshapes": lambda root: synthetic.write_shapes3d(root),
    "mpi3d_toy": lambda root: synthetic.write_mpi3d(root),
    "smallnorb": lambda root: synthetic.write_smallnorb(root / "norb"),
    "cars3d": lambda root: synthetic.write_cars3d(root / "cars", cars=2),
}
METRIC = {"num_train": 40, "num_eval": 20, "batch_size": 8, "num_stat_samples": 32}


def tiny_spec(name, path):
    return {
        "study": f"tiny-{name}",
        "dataset": {"name": name, "path": str(path)},
        "search_space": {"beta": [1.0, 4.0]},
        "fixed": {"latent_dim": 2, "width": 4, "hidden_dim": 16, "batch_size": 16, "learning_rate": 0.001, "log_every": 4},
        "train_samples": 64,
        "metric": {"seed": 0, "full": METRIC},
        "sampler": {"name": "grid"},
        "pruner": {"name": "none"},
        "n_trials": 2,
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for every sweep here: one SQLite study store and one MLflow store (made once)."""
    return tmp_path_factory.mktemp("sweeps")


@pytest.mark.parametrize("name", list(WRITERS))
def test_two_trial_sweep_and_evaluate(name, workdir, monkeypatch, capsys, one_torch_thread):
    data = workdir / name
    data.mkdir()
    path, _ = WRITERS[name](data)
    monkeypatch.chdir(workdir)
    (data / "spec.yaml").write_text(yaml.safe_dump(tiny_spec(name, path)))
    assert main(["sweep", str(data / "spec.yaml"), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study"] == f"tiny-{name}" and 0 <= summary["score"] <= 1
    from mlflow.tracking import MlflowClient

    params = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(summary["mlflow_run_id"]).data.params
    assert float(params["beta_norm"]) == pytest.approx(summary["beta_norm"], rel=1e-3)  # the data's channel count
    assert main(["evaluate", f"runs:/{summary['mlflow_run_id']}/checkpoint", "--data-from-checkpoint", "--num-train", "40", "--num-eval", "20",
                 "--metric-batch-size", "8", "--num-stat-samples", "32"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["eval_accuracy"] == summary["score"]


def test_sweep_on_a_bad_file_is_one_line_exit_2_and_creates_nothing(tmp_path, monkeypatch, capsys):
    path, _ = synthetic.write_shapes3d(tmp_path)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:100_000])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("BETASWEEP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(tiny_spec("3dshapes", truncated)))
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"betasweep: error: {truncated}: not a readable HDF5 file"), err
    assert not any(work.iterdir()) and not (tmp_path / "cache").exists()
