"""The CelebA commands as a user runs them, in this process (``betasweep.cli.main``, what the console script
calls; tests/test_cli.py runs the installed script itself for every command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import invoke_betasweep, small_celeba_root

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = SHARED / "celeba-sample"
ATTRS = SHARED / "celeba-attrs"


def run(*args, check=True, cwd=None):
    return invoke_betasweep(*args, check=check, cwd=cwd)


def _need(root: Path) -> Path:
    if not (root / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA data not found at {root}")
    return root


@pytest.mark.parametrize("root", [SAMPLE, ATTRS], ids=["sample", "full-attributes"])
def test_data_stats_prints_table_and_writes_report(root, tmp_path):
    _need(root)
    out = run("data", "stats", "--root", str(root), "--out", str(tmp_path / "stats.html")).stdout
    for attribute in ("5_o_Clock_Shadow", "Male", "Young"):
        assert attribute in out
    header = out.splitlines()[0].split()
    assert header[:3] == ["attribute", "train", "val"] and header[-1] == "imbalance"
    assert ("test" in header) == (root == ATTRS)
    html = (tmp_path / "stats.html").read_text()
    assert "Plotly.newPlot" in html and "<script src=" not in html


def test_data_stats_bad_root_is_one_line_exit_2(tmp_path):
    proc = run("data", "stats", "--root", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("betasweep: error: CelebA root not found")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """48 train and 24 val rows of the real sample; images symlinked, never copied."""
    return small_celeba_root(_need(SAMPLE), tmp_path_factory.mktemp("celeba-cli"), n_train=48, n_val=24)


@pytest.fixture(scope="module")
def classifier_run(small_root, tmp_path_factory):
    """One epoch of a from-scratch ResNet-18 at 32 px, logged to a local MLflow store."""
    directory = tmp_path_factory.mktemp("classifier")
    cache, out, tracking_uri = str(directory / "cache"), directory / "clf", f"sqlite:///{directory / 'mlflow.db'}"
    proc = run("classifier", "train", "--root", str(small_root), "--arch", "resnet18", "--image-size", "32",
               "--epochs", "1", "--batch-size", "16", "--from-scratch", "--threads", "1", "--cache-dir", cache,
               "--out", str(out), "--no-progress", "--tracking-uri", tracking_uri)
    return proc, cache, out, tracking_uri


def test_classifier_run_is_logged_to_mlflow(classifier_run):
    from mlflow.tracking import MlflowClient

    _, _, _, tracking_uri = classifier_run
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("attribute-classifier")
    (run_info,) = client.search_runs([experiment.experiment_id])
    assert run_info.info.status == "FINISHED" and run_info.data.params["arch"] == "resnet18"
    assert len(client.get_metric_history(run_info.info.run_id, "val_mean_accuracy")) == 1
    assert "mean_accuracy" in run_info.data.metrics
    assert [f.path for f in client.list_artifacts(run_info.info.run_id, "checkpoint")] == ["checkpoint/classifier.pt"]


def test_classifier_train_then_evaluate(classifier_run):
    proc, cache, out, _ = classifier_run
    assert "mean accuracy" in proc.stdout and "epoch 1:" in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and len(metrics["val"]["attributes"]) == 40
    assert 0 <= metrics["val"]["mean_accuracy"] <= 1 and metrics["val"]["num_images"] == 24

    # evaluate rebuilds the model from the checkpoint alone and finds the data from it.
    table = run("classifier", "evaluate", str(out / "classifier.pt"), "--cache-dir", cache).stdout.splitlines()
    assert table[0].split() == ["attribute", "accuracy", "balanced", "f1", "baseline", "positive"]
    assert len(table) == 1 + 40 + 2
    val = metrics["val"]
    assert table[-1] == (f"mean accuracy {val['mean_accuracy']:.4f} vs majority baseline "
                         f"{val['baseline_mean_accuracy']:.4f} on 24 images")


def test_classifier_without_local_imagenet_weights_says_where_to_put_them(small_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    proc = run("classifier", "train", "--root", str(small_root), "--arch", "resnet18", "--image-size", "32",
               "--out", str(tmp_path / "clf"), check=False)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert str(expected) in proc.stderr and "--from-scratch" in proc.stderr


def test_classifier_evaluate_rejects_a_foreign_file(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"garbage")
    proc = run("classifier", "evaluate", str(path), check=False)
    assert proc.returncode == 2 and "not a readable classifier checkpoint" in proc.stderr


def test_two_trial_celeba_sweep_names_dimensions_for_each_trial(classifier_run, tmp_path):
    """The weak-label objective end to end on the real sample; each trial logs its dimension-to-attribute table.

    The whole sample (its val partition names dimensions: an attribute needs 20 positive and 20
    negative images to get an AUC); a tiny training budget.
    """
    import optuna
    import yaml
    from mlflow.tracking import MlflowClient

    _, _, out, _ = classifier_run
    spec = {
        "study": "faces",
        "dataset": {"name": "celeba", "path": str(_need(SAMPLE)), "classifier": str(out / "classifier.pt")},
        "search_space": {"beta": [1.0, 8.0]},
        "fixed": {"latent_dim": 4, "width": 8, "hidden_dim": 32, "batch_size": 16, "learning_rate": 0.001},
        "train_samples": 320,
        "metric": {"full": {"num_train": 100, "num_eval": 50, "batch_size": 8, "num_stat_samples": 24,
                            "attribute_subset": ["Male", "Smiling", "Young", "Eyeglasses"]}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": "none",
        "n_trials": 2,
    }
    (tmp_path / "faces.yaml").write_text(yaml.safe_dump(spec))
    run("sweep", "faces.yaml", "--no-progress", cwd=tmp_path)
    study = optuna.load_study(study_name="faces", storage=f"sqlite:///{tmp_path / 'betasweep.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for trial in study.trials:
        assert 0.0 <= trial.value <= 1.0  # weak-label eval accuracy; chance is 1/4 here
        names = trial.user_attrs["dimension_names"]
        assert len(names) == 4 and all(line.startswith("dim ") and "AUC" in line and "Δp" in line for line in names)
        artifacts = {f.path for f in client.list_artifacts(trial.user_attrs["mlflow_run_id"], "naming")}
        assert artifacts == {"naming/dimension_names.csv", "naming/dimension_names.html"}
