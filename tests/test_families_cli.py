"""The model families through the command as a user runs it, real dSprites and CelebA: in this process
(``betasweep.cli.main``, what the console script calls; tests/test_cli.py runs the script itself for every
command), since each run here is seconds of work after a subprocess's seconds of imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import invoke_betasweep, small_celeba_root, tiny_spec

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba-sample"
TINY = ("--width", "8", "--batch-size", "16", "--train-samples", "160", "--no-progress")


def run(*args, check=True):
    return invoke_betasweep(*map(str, args), check=check)


def one_line_exit_2(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("betasweep: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory) -> Path:
    if not (SAMPLE / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA sample not found at {SAMPLE}")
    return small_celeba_root(SAMPLE, tmp_path_factory.mktemp("celeba-families"), n_train=64, n_val=48)


def test_nvae_trains_evaluates_and_traverses_on_real_dsprites(dsprites_path, tmp_path):
    out = tmp_path / "nvae"
    trained = json.loads(run("train", "--dataset", "dsprites", "--data-path", dsprites_path, "--model", "nvae",
                             "--nvae-latent-channels", "2", "--beta", "2", *TINY, "--out", out).stdout)
    assert trained["model"] == "nvae" and trained["steps"] == 10
    assert trained["beta_norm"] == pytest.approx(2 * (2 * 16 + 2 * 64) / 4096)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"kl_group_0_4x4", "kl_group_1_8x8", "spectral"}
    assert len(metrics["kl_per_dim"]) == 2 * 16 + 2 * 64
    scored = json.loads(run("evaluate", out / "checkpoint.pt", "--data-from-checkpoint", "--num-train", "60", "--num-eval", "30",
                            "--metric-batch-size", "8", "--num-stat-samples", "128").stdout)
    assert scored["model"] == "nvae" and 0 <= scored["eval_accuracy"] <= 1
    assert scored["kl"] == pytest.approx(scored["kl_group_0_4x4"] + scored["kl_group_1_8x8"], rel=1e-6)
    figures = json.loads(run("traverse", out / "checkpoint.pt", "--data-from-checkpoint", "--out", tmp_path / "fig").stdout)
    assert Path(figures["traversal"]).stat().st_size > 0 and Path(figures["reconstruction"]).stat().st_size > 0


def test_nvae_on_the_celeba_sample(celeba_root, tmp_path):
    nvae = tmp_path / "nvae"
    run("train", "--dataset", "celeba", "--data-path", celeba_root, "--model", "nvae", "--nvae-latent-channels", "2",
        *TINY, "--out", nvae)
    assert json.loads(run("evaluate", nvae / "checkpoint.pt", "--data-from-checkpoint", "--num-train", "40", "--num-eval", "20",
                          "--metric-batch-size", "8", "--num-stat-samples", "128").stdout)["model"] == "nvae"
    run("traverse", nvae / "checkpoint.pt", "--data-from-checkpoint", "--out", tmp_path / "nvae-fig")
    one_line_exit_2(run("traverse", nvae / "checkpoint.pt", "--data-from-checkpoint", "--out", tmp_path / "x", "--set", "Smiling=1", check=False),
                    "--set applies to cvae")


def test_cvae_on_the_celeba_sample_with_attribute_editing(celeba_root, tmp_path):
    cvae = tmp_path / "cvae"
    run("train", "--dataset", "celeba", "--data-path", celeba_root, "--model", "cvae", "--latent-dim", "4",
        "--conditioned-attributes", "Male,Smiling,Eyeglasses", *TINY, "--out", cvae)
    scored = json.loads(run("evaluate", cvae / "checkpoint.pt", "--data-from-checkpoint", "--num-train", "40", "--num-eval", "20",
                            "--metric-batch-size", "8", "--num-stat-samples", "128").stdout)
    assert set(scored["leakage_auc"]) == {"Male", "Smiling", "Eyeglasses"}
    edited = json.loads(run("traverse", cvae / "checkpoint.pt", "--data-from-checkpoint", "--out", tmp_path / "cvae-fig",
                            "--set", "Smiling=1", "--set", "Eyeglasses=-1").stdout)
    assert Path(edited["edit"]).stat().st_size > 0

    one_line_exit_2(run("traverse", cvae / "checkpoint.pt", "--data-from-checkpoint", "--out", tmp_path / "x", "--set", "Bald=1", check=False),
                    "not conditioned on 'Bald'")
    one_line_exit_2(run("train", "--dataset", "celeba", "--data-path", celeba_root, "--model", "cvae",
                        "--conditioned-attributes", "Smilling", *TINY, "--out", tmp_path / "bad", check=False),
                    "unknown CelebA attribute 'Smilling'")


def test_bad_family_input_is_one_line_exit_2(tmp_path):
    one_line_exit_2(run("train", "--model", "vq_vae", "--out", tmp_path, check=False), "vq_vae")
    one_line_exit_2(run("train", "--model", "beta_vae", "--nvae-groups", "2", *TINY, "--out", tmp_path, check=False),
                    "nvae_groups is a field of model nvae, not of beta_vae")
    spec = {**tiny_spec("unused.npz", study="bad"), "dataset": {"name": "shapes"},
            "fixed": {"model": "beta_vae", "spectral_weight": 0.5}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    one_line_exit_2(run("sweep", tmp_path / "bad.yaml", "--storage", f"sqlite:///{tmp_path / 'b.db'}",
                        "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", check=False),
                    "spectral_weight is a field of model nvae, not of beta_vae")


def test_two_trial_sweep_over_families_on_real_dsprites(dsprites_path, tmp_path):
    """model searched: each trial builds only its family's fields; the report groups by family."""
    spec = tiny_spec(dsprites_path, study="families", n_trials=2)
    spec["search_space"] = {"model": ["nvae", "beta_vae"], "beta": [1.0], "nvae_latent_channels": [2]}
    spec["fixed"] = {**spec["fixed"], "hidden_dim": 32}
    spec["train_samples"] = 160
    spec["sampler"] = {"name": "grid", "seed": 1}  # both families, each once
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    storage, tracking = f"sqlite:///{tmp_path / 'study.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    run("sweep", tmp_path / "spec.yaml", "--storage", storage, "--tracking-uri", tracking)
    import optuna

    study = optuna.load_study(study_name="families", storage=storage)
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2
    for t in trials:
        assert ("nvae_latent_channels" in t.params) == (t.params["model"] == "nvae")
    report = tmp_path / "report.html"
    run("report", "--study", "families", "--storage", storage, "--tracking-uri", tracking, "--out", report)
    assert {t.params["model"] for t in trials} == {"nvae", "beta_vae"}
    assert "By model family" in report.read_text()
    from betasweep.models import ModelConfig
    from betasweep.sweeps.report import trials_frame
    from betasweep.sweeps.spec import parse_spec

    # an nvae has no latent_dim (its latent size is its groups'): the top-trials table says so, not a default
    for _, row in trials_frame(study, parse_spec(spec)).iterrows():
        assert row["latent_dim"] == ("—" if row["model"] == "nvae" else ModelConfig().latent_dim), row.to_dict()
