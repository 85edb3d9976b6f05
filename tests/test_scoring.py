"""Train-and-score (betasweep.scoring) and the commands built on it stay free of Optuna and MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from betasweep.scoring import objective_value, summarise_seeds


def _modules_after(code: str, cwd) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_scoring_imports_neither_optuna_nor_mlflow(tmp_path):
    out = _modules_after("""
        import json, sys
        import betasweep.scoring
        print(json.dumps([m for m in ("optuna", "mlflow") if m in sys.modules]))
    """, tmp_path)
    assert out == []


def test_train_evaluate_and_traverse_import_neither_optuna_nor_mlflow(tmp_path):
    """The whole code path of `betasweep train`, `evaluate` (a file checkpoint) and `traverse`, in one process."""
    out = _modules_after("""
        import json, sys
        from betasweep.cli import main
        codes = [
            main(["train", "--dataset", "shapes", "--train-samples", "64", "--batch-size", "32", "--latent-dim", "3",
                  "--width", "8", "--device", "cpu", "--out", "ck"]),
            main(["evaluate", "ck/checkpoint.pt", "--panel", "mig", "--num-train", "40", "--num-eval", "20",
                  "--metric-batch-size", "8", "--num-stat-samples", "64"]),
            main(["traverse", "ck/checkpoint.pt", "--out", "figures"]),
        ]
        print(json.dumps({"codes": codes, "imported": [m for m in ("optuna", "mlflow") if m in sys.modules]}))
    """, tmp_path)
    assert out["codes"] == [0, 0, 0]
    assert out["imported"] == []
    assert (tmp_path / "figures" / "traversal.png").is_file()


def test_summarise_seeds_means_and_standard_errors():
    per_seed = [{"beta_vae": 0.8, "recon_loss": 30.0, "kl_per_dim": [1.0, 3.0]},
                {"beta_vae": 0.6, "recon_loss": 34.0, "kl_per_dim": [3.0, 1.0]}]
    summary = summarise_seeds(per_seed)
    assert summary["beta_vae"] == pytest.approx(0.7)
    assert summary["beta_vae_se"] == pytest.approx(0.1)  # std(ddof=1) = 0.1414, / sqrt(2)
    assert summary["kl_per_dim"] == [2.0, 2.0]
    assert "mig" not in summary
    assert objective_value({"eval_accuracy": 0.9}, "beta_vae") == 0.9  # trials from before the panel
    with pytest.raises(KeyError, match="'mig'"):
        objective_value({"beta_vae": 0.9}, "mig")
