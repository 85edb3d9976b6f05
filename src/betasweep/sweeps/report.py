"""The study report: the verdict (how sure the seeds let us be), per-configuration mean ± SE of every
panel metric, the β curve with error bars, rank correlations between the metrics, best and top
trials and Optuna's plots, in one offline HTML file.

The numbers come from :mod:`betasweep.sweeps.results` (whose entry points are named here as well:
``best_trial``, ``configurations``, ``study_verdict``, ``reseed_top``, ...); this module writes them.
"""

from __future__ import annotations

import base64
import html
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
import plotly.express as px
import plotly.io as pio
from optuna.trial import TrialState

from betasweep.sweeps.records import ACTIVE_UNITS, BEST_SEED_CHECKPOINT, BETA_NORM, MLFLOW_RUN_ID, RACE_ATTR, seeds_of
from betasweep.sweeps.results import (PARAM_COLUMNS, best_trial, config_label, configuration_frame, configurations,
                                      curve_frame, default_value, format_configurations, format_numbers, format_value,
                                      method_frame, metric_name, panel_value_keys, reseed_top, spearman_table,
                                      study_verdict, trials_frame)
from betasweep.sweeps.spec import SweepSpec

__all__ = ["write_report", "TrialPictures", "fetch_pictures",
           # from betasweep.sweeps.results
           "best_trial", "trials_frame", "reseed_top", "format_numbers", "format_value", "format_configurations",
           "panel_value_keys", "config_label", "configurations", "configuration_frame", "study_verdict",
           "spearman_table", "curve_frame", "method_frame"]

def _methods_html(configs: pd.DataFrame, spec: SweepSpec, rank_by: str) -> list[str]:
    table = method_frame(configs, rank_by)
    if table.empty:
        return []
    return [f"<h2>Methods: each one's best configuration by {html.escape(metric_name(rank_by))}</h2>",
            table.to_html(index=False, na_rep="")]


def _figures(study: optuna.Study, spec: SweepSpec, frame: pd.DataFrame, configs: pd.DataFrame,
             rank_by: str) -> list[tuple[str, Any]]:
    """(title, plotly figure or an explanation string) for each panel of the report."""
    complete = frame[frame["state"] == "COMPLETE"].copy()
    complete["latent_dim"] = complete["latent_dim"].astype(str)
    panels: list[tuple[str, Any]] = []
    hover = ["trial", "width", "batch_size", "active_units"]
    name = metric_name(spec.objective)
    if "beta" in configs:
        curve = configs.copy()
        if "latent_dim" not in curve:
            curve["latent_dim"] = spec.fixed.get("latent_dim", default_value("latent_dim"))
        curve["latent_dim"] = curve["latent_dim"].astype(str)
        curve[f"{rank_by}_se"] = curve[f"{rank_by}_se"].fillna(0.0)
        panels.append(("Score vs β, mean ± SE over seeds (Higgins et al.: too little and too much β both entangle)",
                       px.scatter(curve.sort_values("beta"), x="beta", y=rank_by, error_y=f"{rank_by}_se", color="latent_dim",
                                  log_x=True, hover_data=["trials", "seeds", "collapsed"],
                                  labels={rank_by: metric_name(rank_by), "latent_dim": "latent size"})))
    curves = curve_frame(study, spec)
    if not curves.empty:
        figure = px.line(curves, x="images", y="mean", error_y="se", color="configuration", facet_col="metric",
                         facet_col_wrap=3, log_x=True, markers=True, hover_data=["seeds"],
                         labels={"images": "images seen", "mean": "mean ± SE over seeds"})
        figure.update_yaxes(matches=None, showticklabels=True)
        figure.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
        panels.append(("Learning curves: each panel value against images seen (cheap settings of metric.curve; "
                       "mean ± SE over seeds, log-x)", figure))
    panels.append(("Score vs β_norm = β·m/n (each trial: mean over its seeds)",
                   px.scatter(complete, x="beta_norm", y="score", color="latent_dim", log_x=True, hover_data=hover,
                              labels={"score": name, "latent_dim": "latent size"})))
    target = (lambda t: t.values[0]) if spec.second_objective else None
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


# -- the pictures behind the scores ----------------------------------------------------------------------

@dataclass
class TrialPictures:
    """PNG bytes of one trial's figures, fetched from its MLflow run (``figures/traversal.png``, ...)."""

    trial: int
    params: dict[str, Any]
    score: float
    traversal: bytes | None = None
    reconstruction: bytes | None = None


def fetch_pictures(study: optuna.Study, spec: SweepSpec, tracker, *, gallery: int = 8) -> list[TrialPictures]:
    """Download the traversals of the ``gallery`` best COMPLETE trials (and the best one's reconstruction);
    with several seeds per trial, those of each trial's best seed.

    Args:
        tracker: the study's :class:`~betasweep.tracking.Tracker` (its runs hold ``figures/*.png``).

    Returns:
        The best trial first (with its reconstruction), then the others by score; a trial whose run
        holds no figure (an older version's, or one deleted) gets ``None`` for it.
    """
    best = best_trial(study, spec)
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: (t.number != best.number, -t.values[0], t.number))[:max(1, gallery)]
    pictures = []
    with tempfile.TemporaryDirectory(prefix="betasweep-report-") as tmp:
        for trial in complete:
            run_id = trial.user_attrs.get(MLFLOW_RUN_ID)
            names = ("traversal", "reconstruction") if trial.number == best.number else ("traversal",)
            seed_folder = trial.user_attrs.get(BEST_SEED_CHECKPOINT, "checkpoint")[:-len("checkpoint")]  # "seed-i/"
            found = {name: _download_png(tracker, run_id, f"{seed_folder}figures/{name}.png", Path(tmp) / str(trial.number))
                     for name in names} if run_id else {}
            pictures.append(TrialPictures(trial.number, {**spec.fixed, **trial.params}, trial.values[0], **found))
    return pictures


def _download_png(tracker, run_id: str, artifact_path: str, dst: Path) -> bytes | None:
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return tracker.download(run_id, artifact_path, dst).read_bytes()
    except Exception:  # MlflowException, OSError: the run has no such figure
        return None


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p><i>{html.escape(alt)}: not logged</i></p>"
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}' style='max-width:100%'>"


def _pictures_html(pictures: list[TrialPictures]) -> list[str]:
    """The best trial's traversal and reconstruction, then the gallery of the top trials' traversals ordered by β."""
    if not pictures:
        return []
    best = pictures[0]
    parts = [f"<h2>What the best trial learned (trial #{best.trial})</h2>",
             "<p>Latent traversal: one row per dimension (largest KL first), z from −3 to 3 around a real "
             "image's mean code; then originals over reconstructions.</p>",
             _img(best.traversal, f"traversal of trial #{best.trial} (best)"),
             _img(best.reconstruction, f"reconstruction of trial #{best.trial} (best)"),
             f"<h2>Traversals of the top {len(pictures)} trials, by β</h2>",
             "<p>Does the score follow what you see? Low β: sharp images, entangled rows; high β: few "
             "active rows, blurry images.</p><div class='gallery'>"]
    for pic in sorted(pictures, key=lambda p: (float(p.params.get("beta", math.nan)), p.trial)):
        caption = (f"trial #{pic.trial}{' (best)' if pic.trial == best.trial else ''}: β {format_value('beta', pic.params.get('beta'))}, "
                   f"m {pic.params.get('latent_dim', '')}, score {format_value('score', pic.score)}")
        parts.append(f"<figure>{_img(pic.traversal, f'traversal of trial #{pic.trial}')}"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</div>")
    return parts


def write_report(study: optuna.Study, spec: SweepSpec, path: str | os.PathLike, *, reseed: pd.DataFrame | None = None,
                 rank_by: str | None = None, pictures: list[TrialPictures] | None = None) -> Path:
    """Write a self-contained HTML report (plotly.js inlined once, pictures as base64 PNG: viewable offline).

    Args:
        rank_by: the panel value the verdict and the configurations are ranked by (default the objective).
        pictures: from :func:`fetch_pictures`: the best trial's traversal and reconstruction and a
            gallery of the top trials' traversals (none: the report has numbers only).

    The verdict (:func:`study_verdict`) by ``rank_by`` (default the objective) comes first, then the
    configurations' mean ± SE of every panel value, the Spearman table, the best trial, the trials
    and the figures (score vs β with error bars first).

    Returns:
        The written path.
    """
    rank_by = rank_by or spec.objective
    frame = trials_frame(study, spec)
    best = best_trial(study, spec)
    the_verdict = study_verdict(study, spec, rank_by)
    configs = configuration_frame(study, spec, rank_by)
    spearman = spearman_table(study, spec)
    seeds = f"{spec.seeds_per_trial} seed{'s' if spec.seeds_per_trial > 1 else ''} per trial"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>betasweep report: {html.escape(study.study_name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}h2{margin-top:1.5em}.verdict{background:#f4f6fa;padding:0.5em 1em}"
        ".gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;width:520px;font-size:12px}</style></head><body>",
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        "<div class='verdict'><h2>Verdict</h2>" + "".join(f"<p>{html.escape(line)}</p>" for line in the_verdict.lines) + "</div>",
        f"<p>Dataset <b>{html.escape(spec.dataset['name'])}</b>, {spec.train_samples:,} training samples per model, {seeds}; "
        f"objective: {html.escape(metric_name(spec.objective))} (<code>{html.escape(spec.objective)}</code>), mean over seeds; "
        f"panel: {html.escape(', '.join(spec.metric.panel))} ({spec.metric.num_train:,} train / {spec.metric.num_eval:,} eval "
        f"points, metric seed {spec.metric.seed}). Ranked by <code>{html.escape(rank_by)}</code>.</p>",
        *_race_html(study.user_attrs.get(RACE_ATTR)),
        *_methods_html(configs, spec, rank_by),
        "<h2>Configurations: mean ± SE over seeds</h2>",
        format_configurations(configs, spec).to_html(index=False, na_rep=""),
        "<h2>Spearman rank correlations between the panel's metrics (over trials)</h2>",
        (spearman.to_html(float_format="%.2f", na_rep="") if isinstance(spearman, pd.DataFrame)
         else f"<p><i>{html.escape(spearman)}</i></p>"),
        f"<h2>Best trial: #{best.number}</h2>",
        _best_html(best, spec),
        *_pictures_html(pictures or []),
    ]
    if reseed is not None and not reseed.empty:
        parts += ["<h2>Top configurations retrained with more seeds</h2>", format_numbers(reseed).to_html(index=False)]
    parts += _families_html(study, frame)
    parts += ["<h2>Trials</h2>", format_numbers(frame).to_html(index=False, na_rep="")]
    plotlyjs = True
    for title, figure in _figures(study, spec, frame, configs, rank_by):
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


def _race_html(race: dict[str, Any] | None) -> list[str]:
    """The race's rounds and verdict (:mod:`betasweep.sweeps.race`, the study's user attribute ``race``), if one ran."""
    if not race or not race.get("rounds"):
        return []
    status = {"decided": "decided", "undecided": "max_seeds and max_images reached, not every comparison decided",
              "budget": "stopped at its image budget", "stopped": "stopped before it decided (start `betasweep race` again to resume)",
              "running": "running"}.get(race.get("status"), race.get("status"))
    images = f" and {race['max_images']:,} images" if race.get("max_images") else ""
    margin = f", margin ±{race['margin']:g}" if race.get("margin") else ""
    return [f"<h2>Race: at most {race['max_seeds']} seeds{images} per configuration{margin}, by {html.escape(race['metric'])}, "
            f"overall level {race['alpha']:.0%} ({html.escape(str(status))})</h2>",
            *(["<p>" + "<br>".join(html.escape(line) for line in race["verdict"]) + "</p>"] if race.get("verdict") else []),
            "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in race["rounds"]) + "</ul>"]


def _families_html(study: optuna.Study, frame: pd.DataFrame) -> list[str]:
    """HTML parts: the score per model family (when the study has more than one), and the cvae
    trials' control (classifier Δp, +1 vs −1) and leakage (AUC of z) per conditioned attribute."""
    parts = []
    complete = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
    if not complete.empty and complete["model"].nunique() > 1:
        by_family = complete.groupby("model")["score"].agg(["count", "mean", "max"]).reset_index()
        parts += ["<h2>By model family</h2>", by_family.to_html(index=False, float_format="%.4f")]
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        for key, label in (("control", "control Δp"), ("leakage_auc", "leakage AUC")):
            if key in t.user_attrs:
                rows.append({"trial": t.number, "measure": label, **t.user_attrs[key]})
    if rows:
        parts += ["<h2>Conditional VAE: control (classifier Δp, y = +1 vs −1 on the same z) and leakage "
                  "(ROC AUC of z; 0.5 = the attribute lives in y only)</h2>",
                  pd.DataFrame(rows).to_html(index=False, float_format="%.3f", na_rep="")]
    return parts


def _best_html(best: optuna.trial.FrozenTrial, spec: SweepSpec) -> str:
    params = {**spec.fixed, **best.params}
    rows = {**{k: params.get(k, default_value(k)) for k in PARAM_COLUMNS}, "score": best.values[0],
            "seeds": " ".join(map(str, seeds_of(best))),
            "train_accuracy": best.user_attrs.get("train_accuracy"), BETA_NORM: best.user_attrs.get(BETA_NORM),
            ACTIVE_UNITS: best.user_attrs.get(ACTIVE_UNITS), MLFLOW_RUN_ID: best.user_attrs.get(MLFLOW_RUN_ID)}
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(format_value(k, v))}</td></tr>"
                               for k, v in rows.items()) + "</table>"
