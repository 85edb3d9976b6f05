"""benchmarks/label_free_selectors.py: Spearman's ρ with intervals (closed forms), and the script end to end on a
tiny study of 6 untrained models (one collapsed) on real dSprites (skipped if absent)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DSPRITES = REPO.parent / "shared" / "data" / "dsprites" / "dsprites_downsampled.npz"


def _module():
    spec = importlib.util.spec_from_file_location("label_free_selectors", REPO / "benchmarks" / "label_free_selectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


selectors = _module()


def test_rho_of_a_score_with_itself_is_one_and_its_intervals_collapse():
    x = np.random.default_rng(0).standard_normal(12)
    out = selectors.spearman_with_intervals(x, x, np.random.default_rng(1), n_resamples=999)
    assert out["rho"] == pytest.approx(1.0) and out["n"] == 12
    assert out["bootstrap_ci"] == pytest.approx([1.0, 1.0]) and out["fisher_ci"] == pytest.approx([1.0, 1.0])
    reverse = selectors.spearman_with_intervals(x, -x, np.random.default_rng(1), n_resamples=999)
    assert reverse["rho"] == pytest.approx(-1.0) and reverse["bootstrap_ci"] == pytest.approx([-1.0, -1.0])


def test_rho_and_fisher_interval_match_their_closed_forms():
    # one swap of neighbours among 6 ranks: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 210
    x, y = [1, 2, 3, 4, 5, 6], [2, 1, 3, 4, 5, 6]
    out = selectors.spearman_with_intervals(x, y, np.random.default_rng(0), n_resamples=999)
    rho = 1 - 6 * 2 / (6 * 35)
    assert out["rho"] == pytest.approx(rho)
    half = 1.959964 * math.sqrt(1.06 / 3)
    assert out["fisher_ci"] == pytest.approx([math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)], abs=1e-5)
    low, high = out["bootstrap_ci"]
    assert -1 <= low < rho <= high <= 1


def test_bootstrap_interval_narrows_with_n_and_covers_zero_for_independent_scores():
    rng = np.random.default_rng(3)
    small = selectors.spearman_with_intervals(rng.standard_normal(12), rng.standard_normal(12), rng, n_resamples=1999)
    x = rng.standard_normal(400)
    large = selectors.spearman_with_intervals(x, x + rng.standard_normal(400), rng, n_resamples=1999)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert small["bootstrap_ci"][0] < 0 < small["bootstrap_ci"][1]
    assert width(large["bootstrap_ci"]) < 0.25 < width(small["bootstrap_ci"])
    # x vs x + noise of equal variance: Pearson r = 1/sqrt(2), Spearman (6/pi) asin(r/2) = 0.690 (Pearson 1907)
    assert large["bootstrap_ci"][0] < 6 / math.pi * math.asin(1 / math.sqrt(2) / 2) < large["bootstrap_ci"][1]


def test_constant_scores_and_bad_lengths():
    out = selectors.spearman_with_intervals([1, 1, 1, 1, 1], [1, 2, 3, 4, 5], np.random.default_rng(0))
    assert math.isnan(out["rho"]) and all(math.isnan(v) for v in out["bootstrap_ci"] + out["fisher_ci"])
    with pytest.raises(ValueError, match="n >= 4"):
        selectors.spearman_with_intervals([1, 2, 3], [1, 2, 3], np.random.default_rng(0))
    with pytest.raises(ValueError, match="same length"):
        selectors.spearman_with_intervals([1, 2, 3, 4], [1, 2, 3, 4, 5], np.random.default_rng(0))


def test_table_pairs_every_selector_with_every_metric():
    rng = np.random.default_rng(0)
    rows = selectors.selector_table({"a": [1, 2, 3, 4, 5], "b": [5, 4, 3, 2, 1]}, {"m": [1, 2, 3, 4, 5], "k": [2, 1, 4, 3, 5]},
                                    rng, n_resamples=199)
    assert [(r["selector"], r["metric"]) for r in rows] == [("a", "m"), ("a", "k"), ("b", "m"), ("b", "k")]
    assert rows[0]["rho"] == pytest.approx(1) and rows[2]["rho"] == pytest.approx(-1) and rows[3]["rho"] == pytest.approx(-0.8)


@pytest.mark.skipif(not DSPRITES.is_file(), reason="real dSprites absent")
def test_script_on_a_tiny_study(tmp_path, capsys):
    import optuna
    import torch

    from betasweep.models import ModelConfig, build_model
    from betasweep.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="tiny", storage=storage)
    panel_values = []
    for t in range(3):
        trial = study.ask()
        per_seed = []
        for k in range(2):
            config = ModelConfig(latent_dim=3, width=4, hidden_dim=16)
            model = build_model(config)
            collapsed = (t, k) == (2, 1)
            record = {"seed": 10 * t + k, "kl_per_dim": [0.001] * 3 if collapsed else [0.5, 0.2, 0.001], "beta_vae": 0.1 * (2 * t + k),
                      "factor_vae": 1.0 - 0.1 * (2 * t + k), "mig": 0.3, "sap": 0.01 * (t + 1),
                      "active_units": 0 if collapsed else 2}
            per_seed.append(record)
            panel_values.append(record)
            save_checkpoint(tmp_path / "art" / f"run{t}" / "artifacts" / f"seed-{k}" / "checkpoint" / "checkpoint.pt",
                            {"model_config": dataclasses.asdict(config), "model_state": model.state_dict(),
                             "train_config": {"seed": record["seed"]}})
        trial.set_user_attr("per_seed", per_seed)
        trial.set_user_attr("mlflow_run_id", f"run{t}")
        study.tell(trial, 0.0)
    args = ["--storage", storage, "--study", "tiny", "--checkpoints", str(tmp_path / "art"), "--data", str(DSPRITES),
            "--udr-images", "64", "--mc-batch-size", "8", "--mc-num-train", "10", "--mc-num-eval", "10",
            "--mc-num-variance", "50", "--n-resamples", "199"]
    selectors.main(args)
    out = capsys.readouterr().out
    import json

    models = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [m["model"] for m in models] == [f"{t}:beta_vae:{k}" for t in range(3) for k in range(2)]
    assert [m["beta_vae"] for m in models] == pytest.approx([r["beta_vae"] for r in panel_values])
    assert [m["active_units"] for m in models] == [2, 2, 2, 2, 2, 0]
    assert all(0 <= m["udr"] <= 1 and 0 <= m["model_centrality"] <= 1 for m in models)
    # a collapsed model shares no active unit with any other (UDR 0) and generates nothing to score (MC 0)
    assert models[-1]["udr"] == 0 and models[-1]["model_centrality"] == 0
    assert "n = 6 models" in out and "n = 5, same scores" in out
    table = [line for line in out.splitlines() if line.startswith(("udr ", "model_centrality "))]
    assert len(table) == 16
    # re-tabulating the printed scores (--scores) gives the same tables without loading a model
    (tmp_path / "out.txt").write_text(out)
    selectors.main(["--storage", storage, "--study", "tiny", "--scores", str(tmp_path / "out.txt"), "--n-resamples", "199"])
    again = capsys.readouterr().out
    assert [line for line in again.splitlines() if line.startswith(("udr ", "model_centrality ", "{"))] == \
        [line for line in out.splitlines() if line.startswith(("udr ", "model_centrality ", "{"))]
    # beta_vae and factor_vae are opposite rankings: every selector's rho with one is minus its rho with the other
    rows = {tuple(line.split()[:2]): float(line.split()[2]) for line in out.splitlines()
            if line.startswith(("udr ", "model_centrality ")) and line.split()[2] != "nan"}
    for selector in ("udr", "model_centrality"):
        if (selector, "beta_vae") in rows:
            assert rows[(selector, "beta_vae")] == pytest.approx(-rows[(selector, "factor_vae")], abs=0.011)

    # a checkpoint that is not the per_seed record's model (another seed) is refused
    save_checkpoint(tmp_path / "art" / "run0" / "artifacts" / "seed-1" / "checkpoint" / "checkpoint.pt",
                    {"model_config": dataclasses.asdict(ModelConfig(latent_dim=3, width=4, hidden_dim=16)),
                     "model_state": build_model(ModelConfig(latent_dim=3, width=4, hidden_dim=16)).state_dict(),
                     "train_config": {"seed": 999}})
    with pytest.raises(SystemExit, match="999"):
        selectors.main(args)
