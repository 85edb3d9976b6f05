"""The Python API (`import betasweep as bs`): the README's example run as written, and the API's own checks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# Appended to the README's block: what its names hold, as JSON on the last line of stdout.
PROBE = '''
import json as _json
print(_json.dumps({
    "result": type(result).__name__, "complete": result.complete_trials, "verdict": result.verdict,
    "configurations": len(result.configurations), "best": type(result.best).__name__,
    "checkpoint": result.best.checkpoint, "best_params": sorted(result.best.params),
    "report": type(found).__name__, "report_path": str(found.path), "report_verdict": found.verdict,
    "model": type(model).__name__, "latent_dim": model.model.config.latent_dim,
    "scores": {k: v for k, v in scores.items() if k in ("beta_vae", "mig")},
}))
'''


def readme_example() -> str:
    """The one ```python block between the README's ``<!-- api:start -->`` and ``<!-- api:end -->`` markers."""
    text = README.read_text()
    section = text[text.index("<!-- api:start -->"):text.index("<!-- api:end -->")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's Python API section holds one python block"
    return blocks[0]


def test_import_betasweep_stays_light():
    code = ("import sys, betasweep as bs; heavy = [m for m in ('torch', 'optuna', 'mlflow') if m in sys.modules]; "
            "print(heavy, 'betasweep.api' in sys.modules, sorted(set(bs.__all__) - set(dir(bs))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False []"


def test_readme_example_runs_as_written(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = "import torch\ntorch.set_num_threads(1)\n" + readme_example() + PROBE
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    shape = json.loads(lines[-1])
    assert shape["result"] == "SweepResult" and shape["complete"] == 2 and shape["best"] == "BestTrial"
    words = {"worse", "equivalent", "undecided"}
    assert shape["verdict"][0].startswith("Race ") and any(w in " ".join(shape["verdict"]) for w in words)
    assert shape["configurations"] in (1, 2)  # two trials: two configurations unless TPE drew one twice
    assert re.fullmatch(r"runs:/[0-9a-f]{32}/(seed-[01]/)?checkpoint", shape["checkpoint"])
    assert {"beta", "latent_dim", "width", "batch_size", "learning_rate"} <= set(shape["best_params"])
    assert shape["report"] == "Report" and (tmp_path / shape["report_path"]).is_file()
    assert shape["report_verdict"][0].startswith("Best configuration by beta_vae")
    assert shape["model"] == "LoadedModel" and shape["latent_dim"] in (6, 10)
    assert all(0 <= v <= 1 for v in shape["scores"].values()) and set(shape["scores"]) == {"beta_vae", "mig"}
    printed = "\n".join(lines[:-1])
    assert "\n".join(shape["verdict"]) in printed and shape["checkpoint"] in printed
    assert re.search(r"beta_vae_se", printed) and "'alias': 'best'" in printed
    assert re.search(r"latent_dim (6|10): beta_vae 0\.\d{3}, mig 0\.\d{3}$", printed)


def test_the_light_model_module_names_the_trackers_default_store():
    from betasweep.api import model
    from betasweep.tracking import DEFAULT_TRACKING_URI

    assert model.DEFAULT_TRACKING_URI == DEFAULT_TRACKING_URI


def test_overrides_merge_into_the_default_spec_and_none_removes_a_key():
    from betasweep.api import resolve_spec
    from betasweep.errors import ConfigError

    spec = resolve_spec(None, {"n_trials": 3, "metric": {"intermediate": None, "full": {"num_train": 100}}})
    default = resolve_spec(None)
    assert spec.n_trials == 3 and spec.intermediate is None and default.intermediate is not None
    assert spec.metric.num_train == 100 and spec.metric.num_eval == default.metric.num_eval
    assert spec.search_space == default.search_space
    with pytest.raises(ConfigError, match="train_samples"):
        resolve_spec(None, {"train_samples": -5})


def test_race_settings_refuse_bad_values_in_one_line():
    from betasweep.api import race_settings, resolve_spec
    from betasweep.errors import ConfigError

    spec = resolve_spec(None)
    assert race_settings(spec, "s").margin == 0.05 and race_settings(spec, "s", max_seeds=4).max_seeds == 4
    for kwargs, needle in (({"max_seeds": 1}, "--max-seeds 1"), ({"margin": 0.0}, "--margin 0"),
                           ({"max_images": 10}, "--max-images 10"), ({"max_total_images": 0}, "--max-total-images 0")):
        with pytest.raises(ConfigError, match=needle) as error:
            race_settings(spec, "s", **kwargs)
        assert "\n" not in str(error.value)


def test_evaluate_needs_data_for_a_bare_module():
    from betasweep.api import evaluate
    from betasweep.errors import ConfigError

    with pytest.raises(ConfigError, match="data: expected a dataset"):
        evaluate(object(), None)
