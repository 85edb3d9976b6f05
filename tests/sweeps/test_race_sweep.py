"""Learning curves and the race end to end on the real dSprites grid: the real `betasweep` command, SQLite, local MLflow."""

from __future__ import annotations

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from helpers import race_spec, run_betasweep


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
    assert race["status"] in ("decided", "undecided") and race["rounds"][0].startswith("round 0: 2 configurations left")
    racing = [t for t in study.trials if "race_seeds" in t.user_attrs]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    from betasweep.sweeps.spec import parse_spec

    parsed = parse_spec(race_spec(dsprites_path))
    for beta in (0.5, 8.0):
        seeds = [s for t in study.trials if t.params["beta"] == beta for s in (t.user_attrs["seeds"])]
        assert len(seeds) == len(set(seeds)) <= 3  # no seed trained twice, at most max_seeds
        assert seeds[:2] == parsed.seeds_for(0) and seeds[2:] == [parsed.seed_at(0, 2)][: len(seeds) - 2]
    if race["status"] == "undecided":  # both still racing after round 0: one seed each, then max_seeds
        assert len(racing) == 2 and "max_seeds = 3 did not decide it" in proc.stderr
    assert "race round 0: 2 configurations left" in proc.stderr


def test_the_report_plots_the_learning_curves_and_shows_the_race(raced):
    directory, study, _, storage, tracking_uri = raced
    proc = run_betasweep("report", "--study", "race", "--storage", storage, "--tracking-uri", tracking_uri,
                         "--no-register", "--gallery", "0", cwd=directory)
    assert "you would need" in proc.stdout and "per doubling of images seen (from 200 to 800 images" in proc.stdout
    html = (directory / "betasweep-report-race.html").read_text()
    assert "<h2>Learning curves: each panel value against images seen" in html
    assert '"images seen"' in html or "images seen" in html.split("Learning curves", 1)[1][:20000]
    assert "<h2>Race: at most 3 seeds per configuration" in html


@pytest.mark.parametrize("args, needle", [
    (["--max-seeds", "2"], "--max-seeds 2: fewer than the 3 seeds"),
    (["--rank-by", "accuracy"], "--rank-by 'accuracy': this study records beta_vae"),
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
