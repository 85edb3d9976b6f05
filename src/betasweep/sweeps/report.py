"""The study report: best trial, top trials, the β curve and Optuna's plots in one offline HTML file."""

from __future__ import annotations

import html
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
import plotly.express as px
import plotly.io as pio
from optuna.trial import TrialState

from betasweep.sweeps.objective import train_and_score
from betasweep.sweeps.spec import SweepSpec

__all__ = ["best_trial", "trials_frame", "write_report", "reseed_top"]

PARAM_COLUMNS = ("beta", "latent_dim", "width", "batch_size")


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """Optuna's ``study.best_trial``; for two objectives, the Pareto-optimal trial with the highest score."""
    if len(study.directions) == 1:
        return study.best_trial
    return max(study.best_trials, key=lambda t: t.values[0])


def trials_frame(study: optuna.Study, spec: SweepSpec) -> pd.DataFrame:
    """One row per finished trial: number, state, score, params (fixed ones filled in), β_norm, run id; best first."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        params = {**spec.fixed, **t.params}
        row = {"trial": t.number, "state": t.state.name, "score": t.values[0] if t.values else math.nan}
        if spec.second_objective and t.values:
            row[spec.second_objective] = t.values[1]
        for name in PARAM_COLUMNS:
            row[name] = params.get(name, _default(name))
        row.update({k: v for k, v in params.items() if k not in PARAM_COLUMNS})
        row["beta_norm"] = t.user_attrs.get("beta_norm", math.nan)
        row["active_units"] = t.user_attrs.get("active_units")
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id", "")
        if t.state == TrialState.FAIL:
            row["fail_reason"] = t.user_attrs.get("fail_reason", "")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["score", "trial"], ascending=[False, True], na_position="last").reset_index(drop=True)


def _default(name: str) -> Any:
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig

    return getattr(ModelConfig(), name, None) if hasattr(ModelConfig(), name) else getattr(TrainConfig(), name, None)


def _figures(study: optuna.Study, spec: SweepSpec, frame: pd.DataFrame) -> list[tuple[str, Any]]:
    """(title, plotly figure or an explanation string) for each panel of the report."""
    complete = frame[frame["state"] == "COMPLETE"].copy()
    complete["latent_dim"] = complete["latent_dim"].astype(str)
    panels: list[tuple[str, Any]] = []
    hover = ["trial", "width", "batch_size", "active_units"]
    panels.append(("Score vs β (Higgins et al.: too little and too much β both entangle)",
                   px.scatter(complete, x="beta", y="score", color="latent_dim", log_x=True, hover_data=hover,
                              labels={"score": "Higgins eval accuracy", "latent_dim": "latent size"})))
    panels.append(("Score vs β_norm = β·m/n",
                   px.scatter(complete, x="beta_norm", y="score", color="latent_dim", log_x=True, hover_data=hover,
                              labels={"score": "Higgins eval accuracy", "latent_dim": "latent size"})))
    target = (lambda t: t.values[0]) if spec.second_objective else None
    name = "Higgins eval accuracy"
    plots: list[tuple[str, Callable[[], Any]]] = [
        ("Parallel coordinates", lambda: optuna.visualization.plot_parallel_coordinate(study, target=target, target_name=name)),
        ("Parameter importances", lambda: optuna.visualization.plot_param_importances(study, target=target, target_name=name)),
        ("Optimisation history", lambda: optuna.visualization.plot_optimization_history(study, target=target, target_name=name)),
    ]
    if spec.second_objective:
        plots.append(("Pareto front (score up, recon loss down)", lambda: optuna.visualization.plot_pareto_front(
            study, target_names=[name, spec.second_objective])))
    for title, make in plots:
        try:
            panels.append((title, make()))
        except (ValueError, RuntimeError) as error:  # e.g. importances need >= 2 complete trials
            panels.append((title, f"not available: {error}"))
    return panels


def write_report(study: optuna.Study, spec: SweepSpec, path: str | os.PathLike, *, reseed: pd.DataFrame | None = None) -> Path:
    """Write a self-contained HTML report (plotly.js inlined once: viewable offline).

    Returns:
        The written path.
    """
    frame = trials_frame(study, spec)
    best = best_trial(study)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>betasweep report: {html.escape(study.study_name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}h2{margin-top:1.5em}</style></head><body>",
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        f"<p>Dataset <b>{html.escape(spec.dataset['name'])}</b>, {spec.train_samples:,} training samples per trial, "
        f"objective: Higgins et al. (2017) linear-classifier score (eval accuracy, {spec.metric.num_train:,} train / "
        f"{spec.metric.num_eval:,} eval points, metric seed {spec.metric.seed}).</p>",
        f"<h2>Best trial: #{best.number}</h2>",
        _best_html(best, spec),
    ]
    if reseed is not None and not reseed.empty:
        parts += ["<h2>Top configurations retrained with more seeds</h2>", reseed.to_html(index=False, float_format="%.4f")]
    parts += ["<h2>Trials</h2>", frame.to_html(index=False, float_format="%.4g", na_rep="")]
    plotlyjs = True
    for title, figure in _figures(study, spec, frame):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(figure, str):
            parts.append(f"<p><i>{html.escape(figure)}</i></p>")
            continue
        parts.append(pio.to_html(figure, full_html=False, include_plotlyjs=plotlyjs))
        plotlyjs = False
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _best_html(best: optuna.trial.FrozenTrial, spec: SweepSpec) -> str:
    params = {**spec.fixed, **best.params}
    rows = {**{k: params.get(k, _default(k)) for k in PARAM_COLUMNS}, "score": best.values[0],
            "train_accuracy": best.user_attrs.get("train_accuracy"), "beta_norm": best.user_attrs.get("beta_norm"),
            "active_units": best.user_attrs.get("active_units"), "mlflow_run_id": best.user_attrs.get("mlflow_run_id")}
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items()) + "</table>"


def reseed_top(
    study: optuna.Study,
    spec: SweepSpec,
    n_seeds: int,
    *,
    top: int = 3,
    log_run: Callable[[int, int, dict[str, Any], dict[str, Path]], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Retrain the ``top`` best distinct configurations with ``n_seeds`` more seeds; rank by mean score.

    Scores vary with the seed about as much as with the hyperparameters (Locatello et al. 2019,
    Sec. 5), so the chosen β should win on the mean, not on one lucky seed. New seeds are
    ``max(used seeds) + 1, + 2, ...``.

    Args:
        log_run: called as ``log_run(trial_number, seed, metrics, files)`` for each retraining
            (e.g. to record it as an MLflow child run).

    Returns:
        One row per configuration: trial, params, seeds, ``mean_score``, ``std_score``, scores; best mean first.
    """
    echo = echo or (lambda message: None)
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.values[0])
    chosen, seen = [], set()
    for trial in complete:
        key = tuple(sorted(trial.params.items()))
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == top:
            break
    used = [t.user_attrs.get("seed", spec.seed) for t in complete]
    rows = []
    for trial in chosen:
        scores = [trial.values[0]]
        seeds = [trial.user_attrs.get("seed", spec.seed)]
        for i in range(n_seeds):
            seed = max(used) + 1 + i
            echo(f"reseed: trial {trial.number} with seed {seed}")
            with tempfile.TemporaryDirectory(prefix="betasweep-reseed-") as workdir:
                metrics, files = train_and_score(spec, trial.params, seed, workdir)
                if log_run is not None:
                    log_run(trial.number, seed, metrics, files)
            scores.append(metrics["eval_accuracy"])
            seeds.append(seed)
        rows.append({"trial": trial.number, **trial.params, "seeds": " ".join(map(str, seeds)),
                     "mean_score": statistics.fmean(scores), "std_score": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                     "scores": " ".join(f"{s:.4f}" for s in scores)})
    frame = pd.DataFrame(rows)
    return frame.sort_values("mean_score", ascending=False).reset_index(drop=True) if not frame.empty else frame
