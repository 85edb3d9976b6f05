"""Learning curves and the race end to end on the real dSprites grid: the real `betasweep` command, SQLite, local MLflow."""

from __future__ import annotations

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from helpers import invoke_betasweep, race_spec


def run_betasweep(*args, cwd, check=True):
    """``betasweep ARGS`` in this process (``betasweep.cli.main``, what the console script calls): a subprocess
    would add seconds of imports to each call; tests/test_cli.py runs the script itself for every command."""
    return invoke_betasweep(*args, cwd=cwd, check=check)


@pytest.fixture(scope="module")
def raced(dsprites_path, tmp_path_factory):
    directory = tmp_path_factory.mktemp("race")
    (directory / "spec.yaml").write_text(yaml.safe_dump(race_spec(dsprites_path)))
    proc = run_betasweep("sweep", "spec.yaml", "--no-progress", cwd=directory)
    storage, tracking_uri = f"sqlite:///{directory / 'betasweep.db'}", f"sqlite:///{directory / 'mlflow.db'}"
    return directory, optuna.load_study(study_name="race", storage=storage), proc, storage, tracking_uri


def test_each_seed_logs_its_learning_curve_as_a_stepped_metric(raced):
    _, study, _, _, tracking_uri = raced
    client = MlflowClient(tracking_uri)
    first = study.trials[0]
    curve = first.user_attrs["per_seed"][0]["curve"]
    assert curve["budgets"] == [200, 400, 800]
    assert all(s >= b for s, b in zip(curve["samples"], curve["budgets"])) and curve["samples"][-1] == 800
    for key in ("beta_vae", "factor_vae", "mig", "sap"):
        assert len(curve[key]) == 3
        history = client.get_metric_history(first.user_attrs["mlflow_run_id"], f"seed-0/curve/{key}")
        assert [m.step for m in history] == curve["samples"]  # step = images seen
        assert [m.value for m in history] == pytest.approx(curve[key])


def test_the_race_adds_seeds_only_where_undecided_and_never_twice(raced, dsprites_path):
    _, study, proc, _, _ = raced
    race = study.user_attrs["race"]
    assert race["status"] in ("decided", "undecided") and race["rounds"][0].startswith("round 0 at 800 images")
    racing = [t for t in study.trials if "race_seeds" in t.user_attrs]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    from betasweep.sweeps.spec import parse_spec

    parsed = parse_spec(race_spec(dsprites_path))
    for beta in (0.5, 8.0):
        seeds = [s for t in study.trials if t.params["beta"] == beta for s in (t.user_attrs["seeds"])]
        assert len(seeds) == len(set(seeds)) <= 3  # no seed trained twice, at most max_seeds
        assert seeds[:2] == parsed.seeds_for(0) and seeds[2:] == [parsed.seed_at(0, 2)][: len(seeds) - 2]
    assert len(racing) == 2  # a test needs 3 seeds a side (race.MIN_TEST_SEEDS): one more each, then max_seeds
    if race["status"] == "undecided":
        assert "max_seeds and max_images reached, not every comparison decided" in proc.stderr
    assert "race round 0 at 800 images (level 0)" in proc.stderr
    assert any(word in line for line in race["verdict"][1:-1] for word in ("worse", "equivalent", "undecided"))
    assert race["verdict"][-1].startswith("Cost: ") and "The fixed design (2 configurations × 3 seeds × 800 images)" in race["verdict"][-1]


def test_the_report_plots_the_learning_curves_and_shows_the_race(raced):
    directory, study, _, storage, tracking_uri = raced
    proc = run_betasweep("report", "--study", "race", "--storage", storage, "--tracking-uri", tracking_uri,
                         "--no-register", "--gallery", "0", cwd=directory)
    assert "you would need" in proc.stdout and "per doubling of images seen (from 200 to 800 images" in proc.stdout
    html = (directory / "betasweep-report-race.html").read_text()
    assert "<h2>Learning curves: each panel value against images seen" in html
    assert '"images seen"' in html or "images seen" in html.split("Learning curves", 1)[1][:20000]
    assert "<h2>Race: at most 3 seeds and 800 images per configuration" in html


@pytest.mark.parametrize("args, needle", [
    (["--max-seeds", "2"], "--max-seeds 2: fewer than the 3 seeds"),
    (["--rank-by", "accuracy"], "--rank-by 'accuracy': this study records beta_vae"),
    (["--margin", "0"], "--margin 0: expected a margin > 0 in the metric's units"),
    (["--margin", "-0.1"], "--margin -0.1: expected a margin > 0"),
    (["--max-images", "400"], "--max-images 400: below the 800 images each seed of study 'race' already trained"),
])
def test_race_refuses_bad_input_in_one_line(raced, args, needle):
    directory, _, _, storage, tracking_uri = raced
    proc = run_betasweep("race", "--study", "race", "--storage", storage, "--tracking-uri", tracking_uri, *args,
                         cwd=directory, check=False)
    assert proc.returncode == 2 and needle in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("betasweep: error")]) == 1
    assert "Traceback" not in proc.stderr


def test_race_on_one_seed_per_trial_without_room_for_seeds_is_refused(dsprites_path, tmp_path):
    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker

    storage, tracking_uri = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(race_spec(dsprites_path, "one", seeds_per_trial=1, race=None))
    study = create_study(spec, make_storage(storage), Tracker(tracking_uri, "one"))
    for beta, value in ((0.5, 0.3), (8.0, 0.4)):  # complete trials as the objective records them
        study.add_trial(optuna.trial.create_trial(params={"beta": beta}, distributions={"beta": CategoricalDistribution([0.5, 8.0])},
                                                  value=value, user_attrs={"seeds": [0], "per_seed": [{"beta_vae": value}]}))
    proc = run_betasweep("race", "--study", "one", "--storage", storage, "--tracking-uri", tracking_uri, "--max-seeds", "1",
                         cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "betasweep: error: --max-seeds 1: the study's trials have 1 seed each and a Welch test needs 2 a side; "
        "give --max-seeds >= 2 so that the race can add seeds")


def test_race_extends_every_seed_from_its_checkpoint_and_trains_no_image_twice(raced):
    """The raced study raced again with --max-images: each seed still racing is continued to 1,600 images from
    its 800-image checkpoint (a trial per seed and rung, ``race_from``), trains 800 images, and scores the panel
    there (logged at step = images seen)."""
    directory, _, _, storage, tracking_uri = raced
    proc = run_betasweep("race", "--study", "race", "--storage", storage, "--tracking-uri", tracking_uri,
                         "--max-images", "1600", "--margin", "0.05", "--no-progress", cwd=directory)
    study = optuna.load_study(study_name="race", storage=storage)
    extended = [t for t in study.trials if t.user_attrs.get("race_from")]
    assert extended and all(t.state == TrialState.COMPLETE for t in extended), proc.stderr[-3000:]
    client = MlflowClient(tracking_uri)
    for t in extended:
        assert t.user_attrs["race_images"] == 1600 and t.user_attrs["images_trained"] == 800  # 800 -> 1,600 only
        assert t.user_attrs["cpu_s"] > 0 and t.user_attrs["gpu_s"] == 0
        source = study.trials[t.user_attrs["race_from"]["trial"]]
        assert source.user_attrs["seeds"][t.user_attrs["race_from"]["index"]] == t.user_attrs["seeds"][0]
        history = client.get_metric_history(t.user_attrs["mlflow_run_id"], "beta_vae")
        assert [m.step for m in history] == [1600]
    tasks = [t.user_attrs["race_task"] for t in study.trials if t.state == TrialState.COMPLETE and "race_task" in t.user_attrs]
    assert len(tasks) == len(set(tasks))  # no seed trained twice at a rung
    assert "race verdict:" in proc.stdout and "Cost: " in proc.stdout
    assert any(w in proc.stdout for w in (": worse by", ": equivalent (within ±0.05", ": undecided ("))


def test_extension_of_trials_that_kept_no_checkpoint_is_refused_naming_them(dsprites_path, tmp_path):
    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker

    storage, tracking_uri = f"sqlite:///{tmp_path / 'bare.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(race_spec(dsprites_path, "bare", race=None))
    study = create_study(spec, make_storage(storage), Tracker(tracking_uri, "bare"))
    for beta, value in ((0.5, 0.3), (8.0, 0.4)):  # complete trials without runs or checkpoints
        study.add_trial(optuna.trial.create_trial(params={"beta": beta}, distributions={"beta": CategoricalDistribution([0.5, 8.0])},
                                                  value=value, user_attrs={"seeds": [0, 1], "per_seed": [{"beta_vae": value}] * 2}))
    proc = run_betasweep("race", "--study", "bare", "--storage", storage, "--tracking-uri", tracking_uri,
                         "--max-images", "1600", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "betasweep: error: --max-images: extending needs each seed's checkpoint, and trials #0 seed 0, #0 seed 1, #1 seed 0")
