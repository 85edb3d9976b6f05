"""What a user sees, checked with the real things: a sweep's log in a file and on a terminal, the MLflow UI
in headless Chromium on a real `mlflow server`, MLflow's REST API, and the HTML report.

One tiny 3-trial sweep on the real dSprites grid serves every test: its first trial runs with the output
redirected to a file (`betasweep sweep > log 2>&1`), the other two under a pseudo-terminal (`script -qc`),
then `betasweep report` writes the HTML report. An `mlflow server` is then started on the sweep's local
store (`sqlite:///mlflow.db`, what `mlflow ui` would serve) and the links betasweep printed are opened in
Chromium with their base replaced by the server's address. Screenshots go to `$BETASWEEP_SCREENSHOTS`
(default: a temporary folder).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from helpers import betasweep_command, invoke_betasweep, tiny_spec
from servers import MlflowServer

STUDY = "ui"
TRAIN_SAMPLES = 320  # 20 steps of 16: seconds per trial
LOCAL_UI = "http://127.0.0.1:5000"


def _spec(dsprites_path) -> dict:
    spec = tiny_spec(dsprites_path, study=STUDY, n_trials=3, train_samples=TRAIN_SAMPLES)
    spec["fixed"] = {**spec["fixed"], "log_every": 1}  # a record per step: the log must still thin them out
    spec["seed"] = {"policy": "per_trial", "value": 0}  # distinct trials (and pictures) also across the two sweeps
    spec["metric"] = {"seed": 0, "full": {"num_train": 100, "num_eval": 50, "batch_size": 16, "num_stat_samples": 128},
                      "intermediate": {"num_train": 40, "num_eval": 20, "batch_size": 8, "at": [0.5]}}
    return spec


@pytest.fixture(scope="module")
def swept(dsprites_path, tmp_path_factory):
    """The sweep: trial 0 with output to a file, trials 1-2 on a pseudo-terminal; then the report."""
    directory = tmp_path_factory.mktemp("ui-sweep")
    (directory / "spec.yaml").write_text(yaml.safe_dump(_spec(dsprites_path)))
    command = [*betasweep_command(), "sweep", "spec.yaml"]
    with open(directory / "log", "w") as log:
        subprocess.run([*command, "--n-trials", "1"], stdout=log, stderr=subprocess.STDOUT, cwd=directory,
                       check=True, timeout=600)
    # `script` gives the command a pseudo-terminal; stty gives it a size, as a terminal window has (tqdm draws no
    # bar on a terminal 0 columns wide)
    on_terminal = "stty cols 120 rows 40; " + shlex.join([*command, "--n-trials", "2"])
    tty = subprocess.run(["script", "-qec", on_terminal, "/dev/null"],
                         capture_output=True, cwd=directory, timeout=600)  # bytes: keep the bar's "\r"
    output = tty.stdout.decode(errors="replace")
    assert tty.returncode == 0, output[-3000:]
    # the report in this process (betasweep.cli.main, as the console script): a subprocess was seconds of imports
    report = invoke_betasweep("report", "--study", STUDY, "--no-register", "--out", "report.html", cwd=directory,
                              check=True)
    return {"dir": directory, "log": (directory / "log").read_text(), "tty": output, "report": report}


@pytest.fixture(scope="module")
def server(swept):
    """`mlflow server` on the sweep's own store (the runs' artifacts are local files beside it)."""
    server = MlflowServer(f"sqlite:///{swept['dir'] / 'mlflow.db'}", swept["dir"] / "server-artifacts",
                          log_file=swept["dir"] / "mlflow-server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BETASWEEP_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _api(server: MlflowServer, endpoint: str, **query) -> dict:
    url = f"{server.uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _links(text: str) -> dict[str, str]:
    """The links betasweep printed last: the study's runs, the best trial's run and its traversal."""
    found = {}
    for name, label in (("study", "study's runs:"), ("trial", "best trial:"), ("traversal", "its traversal:")):
        matches = re.findall(re.escape(label) + r"\s+(\S+)", text)
        assert matches, f"no {label!r} link in:\n{text[-2000:]}"
        found[name] = matches[-1]
    return found


def _text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


# -- logs ------------------------------------------------------------------------------------------------

def test_a_log_file_gets_a_few_lines_per_trial_and_no_bar(swept):
    log = swept["log"]
    assert "\r" not in log  # no carriage-return progress bar
    trial = [line for line in log.splitlines() if line.startswith("trial 0:")]
    progress = [int(m.group(1)) for line in trial if (m := re.match(r"trial 0: (\d+)% ", line))]
    # 20 training records (one per step), at most one line per 10 %: exactly one per tenth here
    assert progress == list(range(10, 101, 10)), trial
    # the objective by name (beta_vae): its cheap score mid-trial, its full score at the end
    assert any("intermediate beta_vae" in line for line in trial) and re.match(r"trial 0: beta_vae \d", trial[-1]), trial
    assert len(trial) <= 13  # start, 10 progress lines, intermediate score, end
    assert len(log.splitlines()) <= 45, log


def test_a_terminal_still_gets_the_progress_bar(swept):
    tty = swept["tty"]
    assert "\r" in tty
    assert re.search(r"train:\s+\d+%\|", tty), tty[-2000:]
    assert not re.search(r"trial \d+: \d+% \(", tty)  # the bar replaces the 10 % lines


def test_printed_links_open_the_training_view_of_the_local_ui(swept):
    links = _links(swept["log"])
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in swept["log"]
    assert re.fullmatch(re.escape(LOCAL_UI) + r"/#/experiments/\d+\?workflowType=machine_learning", links["study"])
    assert re.fullmatch(re.escape(LOCAL_UI) + r"/#/experiments/\d+/runs/[0-9a-f]{32}\?workflowType=machine_learning",
                        links["trial"])
    assert _links(swept["report"].stderr)["study"] == links["study"]


# -- MLflow's REST API -----------------------------------------------------------------------------------

def test_the_experiment_is_tagged_for_model_development_and_the_study_run_ended(swept, server):
    experiment = _api(server, "experiments/get-by-name", experiment_name=STUDY)["experiment"]
    tags = {tag["key"]: tag["value"] for tag in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    study = _study(swept)
    parent = _api(server, "runs/get", run_id=study.user_attrs["mlflow_parent_run_id"])["run"]
    # ended by the first sweep, reopened by the second (which added trials), ended again
    assert parent["info"]["status"] == "FINISHED"


def test_each_trial_lists_its_traversal_images_with_their_steps(swept, server):
    study = _study(swept)
    assert len(study.trials) == 3
    for trial in study.trials:
        files = _api(server, "artifacts/list", run_id=trial.user_attrs["mlflow_run_id"], path="images").get("files", [])
        names = [Path(f["path"]).name for f in files]
        for key in ("traversal", "reconstruction"):
            steps = {int(m.group(1)) for name in names if (m := re.match(key + r"\+step\+(\d+)\+.*\.png$", name))}
            assert steps == {TRAIN_SAMPLES}, names


# -- the UI in a real browser -----------------------------------------------------------------------------

def test_the_experiment_link_shows_the_runs_not_the_genai_overview(swept, server, chromium, screens):
    link = _links(swept["log"])["study"].replace(LOCAL_UI, server.uri)
    page = _text(chromium.open(link, screenshot=screens / "experiment.png"))
    assert "Runs" in page and f" {STUDY} " in page
    assert "4 matching runs" in page  # the study's run and its 3 trial runs
    assert "Token Usage" not in page and "Detect Issues" not in page
    # control: the same experiment without the query opens MLflow's GenAI overview in a fresh browser
    plain = _text(chromium.open(link.split("?")[0], screenshot=screens / "experiment-without-workflowtype.png"))
    assert "Token Usage" in plain and "matching runs" not in plain


def test_the_trial_link_shows_the_labelled_traversal(swept, server, chromium, screens):
    link = _links(swept["log"])["traversal"].replace(LOCAL_UI, server.uri)
    assert "/artifacts/figures/traversal.png?workflowType=machine_learning" in link
    dom = chromium.open(link, screenshot=screens / "trial-traversal.png")
    assert re.search(r"<img[^>]*alt=\"figures/traversal.png\"[^>]*src=\"blob:", dom), _text(dom)[:2000]
    page = _text(dom)
    assert re.search(r"trial-\d+", page) and "images" in page and "reconstruction.png" in page


# -- the report ------------------------------------------------------------------------------------------

def test_the_report_embeds_three_traversals_and_loads_no_script(swept):
    html = (swept["dir"] / "report.html").read_text()
    assert "<script src=" not in html
    gallery = re.findall(r"<figure><img alt='traversal of trial #(\d+)' src='data:image/png;base64,([^']+)'", html)
    assert sorted(int(n) for n, _ in gallery) == [0, 1, 2]
    assert len({data for _, data in gallery}) == 3
    for _, data in gallery:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"<img alt='reconstruction of trial #\d+ \(best\)' src='data:image/png;base64,", html)
    study = _study(swept)
    betas = [study.trials[int(n)].params["beta"] for n, _ in gallery]
    assert betas == sorted(betas)  # the gallery is ordered by β
    # the report's best is the verdict's best configuration (betasweep's best_trial): at this tiny budget the
    # trials can tie, and a tie goes by label as in the verdict, where Optuna's study.best_trial takes the first
    from betasweep.sweeps.results import best_trial

    best = best_trial(study)
    assert f"β {best.params['beta']:.3g}" in html and f"score {best.value:.3f}" in html
    printed = swept["report"].stdout
    assert re.search(rf"best trial #{best.number}: score={best.value:.3f}, beta={best.params['beta']:.3g},", printed)


def _study(swept):
    import optuna

    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{swept['dir'] / 'betasweep.db'}")
