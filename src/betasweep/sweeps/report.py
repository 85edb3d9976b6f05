"""The study report: the verdict (how sure the seeds let us be), per-configuration mean ± SE of every
panel metric, the β curve with error bars, rank correlations between the metrics, best and top
trials and Optuna's plots, in one offline HTML file."""

from __future__ import annotations

import base64
import html
import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd
import plotly.express as px
import plotly.io as pio
import scipy.stats
from optuna.trial import TrialState

from betasweep.errors import ConfigError
from betasweep.metrics.panel import PANEL_KEYS
from betasweep.models.vae import family_values
from betasweep.sweeps.objective import objective_value, train_and_score
from betasweep.sweeps.records import (ACTIVE_UNITS, ATTEMPT_OF, BEST_SEED_CHECKPOINT, BETA_NORM, FAIL_REASON, MLFLOW_RUN_ID,
                                      RACE_ATTR, RACE_IMAGES, RACE_ROUND, STUDY_SPEC, config_key, group_by_configuration,
                                      per_seed, rung_of, seeds_of)
from betasweep.sweeps.spec import SweepSpec, parse_spec
from betasweep.sweeps.verdict import ConfigResult, Verdict, verdict

__all__ = ["best_trial", "trials_frame", "write_report", "reseed_top", "format_numbers", "format_value",
           "TrialPictures", "fetch_pictures", "panel_value_keys", "configurations", "configuration_frame",
           "study_verdict", "spearman_table", "curve_frame"]

PARAM_COLUMNS = ("beta", "latent_dim", "width", "batch_size")


def best_trial(study: optuna.Study, spec: SweepSpec | None = None) -> optuna.trial.FrozenTrial:
    """The best trial of the best configuration; for two objectives, the Pareto-optimal trial with the highest score.

    The best configuration is the verdict's (:func:`study_verdict`): the highest mean of the objective
    over its distinct seeds (:func:`configurations`: a seed trained by two trials of one configuration
    counts once; a race's seeds at higher rungs are the race's), ties by label; then its complete trial
    with the highest value (the lowest number among equals; a race's trials at every rung). Optuna's ``study.best_trial`` alone would name one
    race trial's lucky single seed. With one trial per configuration this is ``study.best_trial``.

    Args:
        spec: the study's spec (default the one stored in the study; a study without one, not made by
            betasweep, gets Optuna's ``study.best_trial``).

    Raises:
        ValueError: no complete trial (as Optuna's ``best_trial``).
    """
    if len(study.directions) != 1:
        return max(study.best_trials, key=lambda t: t.values[0])
    if spec is None and STUDY_SPEC in study.user_attrs:
        spec = parse_spec(study.user_attrs[STUDY_SPEC])
    if spec is None:
        return study.best_trial
    ranked = sorted((c for c in configurations(study, spec, spec.objective) if c.n), key=lambda c: (-c.mean, c.label))
    if not ranked:
        return study.best_trial  # Optuna's own error, or its best when no trial scored at the spec's budget
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    key = config_key(next(t for t in complete if t.number == ranked[0].trials[0]).params)
    return max((t for t in complete if config_key(t.params) == key), key=lambda t: (t.values[0], -t.number))


def trials_frame(study: optuna.Study, spec: SweepSpec) -> pd.DataFrame:
    """One row per finished trial: number, state, score, params (fixed ones filled in), β_norm, run id, and for a
    retry the attempt it continued (``attempt_of``), for a race's seed its round (``race_round``); best first."""
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        params = family_values({**spec.fixed, **t.params})
        row = {"trial": t.number, "state": t.state.name, "score": t.values[0] if t.values else math.nan,
               "score_se": t.user_attrs.get(f"{spec.objective}_se", math.nan)}
        if spec.second_objective and t.values:
            row[spec.second_objective] = t.values[1]
        read = family_values({**{name: None for name in PARAM_COLUMNS}, "model": params.get("model", "beta_vae")})
        for name in PARAM_COLUMNS:  # "—" where the trial's family has no such field (an nvae's latent_dim)
            row[name] = params.get(name, _default(name)) if name in read else "—"
        row.update({k: v for k, v in params.items() if k not in PARAM_COLUMNS})
        row["model"] = params.get("model", "beta_vae")
        row[BETA_NORM] = t.user_attrs.get(BETA_NORM, math.nan)
        row[ACTIVE_UNITS] = t.user_attrs.get(ACTIVE_UNITS)
        row[MLFLOW_RUN_ID] = t.user_attrs.get(MLFLOW_RUN_ID, "")
        if ATTEMPT_OF in t.user_attrs:  # a retry: the attempt it continued (sweeps/resume.py)
            row[ATTEMPT_OF] = t.user_attrs[ATTEMPT_OF]
        if RACE_ROUND in t.user_attrs:  # a seed the race added (sweeps/race.py)
            row[RACE_ROUND] = t.user_attrs[RACE_ROUND]
        if t.user_attrs.get(RACE_IMAGES):  # the race's rung: images seen by the trial's seed
            row[RACE_IMAGES] = t.user_attrs[RACE_IMAGES]
        if t.state == TrialState.FAIL:
            row[FAIL_REASON] = t.user_attrs.get(FAIL_REASON, "")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["score", "trial"], ascending=[False, True], na_position="last").reset_index(drop=True)


def panel_value_keys(spec: SweepSpec) -> list[str]:
    """The per-model values a study of ``spec`` records, objective first: the panel's keys (``beta_vae``
    or on CelebA ``weak_label``; ``factor_vae``, ``mig``, ``sap``, ``dci_*``) and ``udr``."""
    celeba = spec.dataset["name"] == "celeba"
    keys = []
    for name in spec.metric.panel:
        if name == "beta_vae":
            keys.append("weak_label" if celeba else "beta_vae")
        elif not (name == "factor_vae" and celeba):
            keys.extend(PANEL_KEYS[name])
    if spec.objective in ("udr", "model_centrality"):
        keys.append(spec.objective)
    return list(dict.fromkeys([spec.objective, *keys]))


def config_label(params: dict[str, Any], trials: list[int]) -> str:
    """How the verdict names a configuration: ``"trials #3, #7 (beta=4, latent_dim=10)"``."""
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return f"trial{'s' if len(trials) > 1 else ''} #{', #'.join(map(str, trials))} ({shown})"


def _groups(study: optuna.Study, spec: SweepSpec) -> list[tuple[dict[str, Any], list[optuna.trial.FrozenTrial]]]:
    """Complete trials at the spec's budget grouped by configuration (:func:`~betasweep.sweeps.records.config_key`),
    in trial order: a race's seed at a higher rung is left out (its verdict is the race's, sweeps/race.py)."""
    at_budget = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if rung_of(t, spec.train_samples) == spec.train_samples]
    return list(group_by_configuration(at_budget).values())


def configurations(study: optuna.Study, spec: SweepSpec, metric: str) -> list[ConfigResult]:
    """One :class:`~betasweep.sweeps.verdict.ConfigResult` per configuration of the study's complete trials:
    the per-seed values of ``metric`` (a seed trained by two trials of the same configuration counts once),
    its β, its collapsed models (0 active units), and its seeds' learning curves of ``metric`` at the
    budgets every one of its seeds was scored at (none when a seed has no curve)."""
    out = []
    for params, trials in _groups(study, spec):
        values, collapsed, seen, curves = [], [], set(), []
        for t in trials:
            seeds = seeds_of(t, spec.seed)
            for index, (seed, metrics) in enumerate(zip(seeds, per_seed(t, spec.objective))):
                if seed in seen:
                    continue
                seen.add(seed)
                if metrics.get("active_units") == 0:
                    collapsed.append(f"trial #{t.number} seed {index}" + (f" ({seed})" if len(seeds) > 1 else ""))
                try:
                    value = objective_value(metrics, metric)
                except KeyError:
                    continue
                if math.isfinite(value):
                    values.append(value)
                    curve = metrics.get("curve") or {}
                    curves.append(dict(zip(curve.get("budgets", []), curve.get(metric, []))))
        beta = {**spec.fixed, **params}.get("beta")
        budgets = tuple(sorted(set.intersection(*(set(c) for c in curves)))) if curves else ()
        out.append(ConfigResult(label=config_label(params, [t.number for t in trials]), values=tuple(values),
                                beta=None if beta is None else float(beta), collapsed=tuple(collapsed),
                                trials=tuple(t.number for t in trials), budgets=budgets,
                                curves=tuple(tuple(float(c[b]) for b in budgets) for c in curves) if budgets else ()))
    return out


def curve_frame(study: optuna.Study, spec: SweepSpec) -> pd.DataFrame:
    """The learning curves: one row per configuration, panel value and budget: ``configuration``,
    ``metric``, ``images`` (images seen), ``mean`` and ``se`` over the seeds scored there, ``seeds``.
    Empty when no trial recorded a curve (``metric.curve``)."""
    rows = []
    for key in panel_value_keys(spec):
        for config in configurations(study, spec, key):
            for i, budget in enumerate(config.budgets):
                at = [curve[i] for curve in config.curves]
                rows.append({"configuration": config.label, "metric": _metric_name(key), "images": budget,
                             "mean": float(np.mean(at)), "seeds": len(at),
                             "se": float(np.std(at, ddof=1) / math.sqrt(len(at))) if len(at) > 1 else 0.0})
    return pd.DataFrame(rows)


def configuration_frame(study: optuna.Study, spec: SweepSpec, rank_by: str | None = None) -> pd.DataFrame:
    """One row per configuration: trials, params, seeds, mean and SE over seeds of every panel value
    (``<metric>``, ``<metric>_se``), collapsed models; best mean of ``rank_by`` (default the objective) first."""
    rank_by = rank_by or spec.objective
    keys = panel_value_keys(spec)
    by_key = {key: configurations(study, spec, key) for key in keys}
    rows = []
    for index, (params, trials) in enumerate(_groups(study, spec)):
        row: dict[str, Any] = {"trials": " ".join(str(t.number) for t in trials), **params,
                               "seeds": by_key[keys[0]][index].n}
        for key in keys:
            config = by_key[key][index]
            row[key], row[f"{key}_se"] = config.mean, config.se
        row["collapsed"] = len(by_key[keys[0]][index].collapsed)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty or rank_by not in frame:
        return frame
    return frame.sort_values(rank_by, ascending=False, na_position="last").reset_index(drop=True)


def format_configurations(frame: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """:func:`configuration_frame` with ``mean ± SE`` strings per metric and β-like values to 3
    significant digits (:func:`format_numbers`), for printing."""
    if frame.empty:
        return frame
    keys = [k for k in panel_value_keys(spec) if k in frame]
    shown = frame.drop(columns=[k for key in keys for k in (key, f"{key}_se")])
    for key in keys:
        shown[key] = [f"{m:.4f} ± {s:.4f}" if math.isfinite(s) else f"{m:.4f}" for m, s in zip(frame[key], frame[f"{key}_se"])]
    return format_numbers(shown[[c for c in shown.columns if c != "collapsed"] + ["collapsed"]])


def method_frame(configs: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """The configurations (:func:`configuration_frame`) grouped by method (``model``): one row per method
    with its configurations, its best one's strength parameters, and that one's mean ± SE of ``rank_by``;
    best method first. Empty when the study does not search ``model``."""
    if configs.empty or "model" not in configs or rank_by not in configs:
        return pd.DataFrame()
    rows = []
    for method, group in configs.groupby("model", sort=False):
        top = group.sort_values(rank_by, ascending=False, na_position="last").iloc[0]
        own = [c for c in group.columns if c not in ("trials", "model", "seeds", "collapsed") and not c.endswith("_se")
               and group[c].notna().any() and c not in panel_keys_in(configs)]
        strength = ", ".join(f"{c}={format_value(c, top[c])}" for c in own if pd.notna(top[c]))
        rows.append({"method": method, "configurations": len(group), "best": f"trials {top['trials']}: {strength}",
                     rank_by: f"{top[rank_by]:.4f} ± {top[f'{rank_by}_se']:.4f}", "_mean": top[rank_by]})
    return pd.DataFrame(rows).sort_values("_mean", ascending=False).drop(columns="_mean").reset_index(drop=True)


def panel_keys_in(configs: pd.DataFrame) -> set[str]:
    """Columns of a configuration frame that hold panel values (those with a ``_se`` twin)."""
    return {c for c in configs.columns if f"{c}_se" in configs.columns}


def _methods_html(configs: pd.DataFrame, spec: SweepSpec, rank_by: str) -> list[str]:
    table = method_frame(configs, rank_by)
    if table.empty:
        return []
    return [f"<h2>Methods: each one's best configuration by {html.escape(_metric_name(rank_by))}</h2>",
            table.to_html(index=False, na_rep="")]


def study_verdict(study: optuna.Study, spec: SweepSpec, rank_by: str | None = None) -> Verdict:
    """The :func:`~betasweep.sweeps.verdict.verdict` of the study's complete trials by ``rank_by``
    (default the objective; any of :func:`panel_value_keys`).

    Raises:
        ConfigError: ``rank_by`` is not a value the study records.
    """
    rank_by = rank_by or spec.objective
    keys = panel_value_keys(spec)
    if rank_by not in keys:
        raise ConfigError(f"--rank-by {rank_by!r}: this study records {', '.join(keys)}")
    return verdict(configurations(study, spec, rank_by), rank_by)


def spearman_table(study: optuna.Study, spec: SweepSpec) -> pd.DataFrame | str:
    """Spearman rank correlations between the panel's values over the complete trials (each trial's
    mean over seeds; ``scipy.stats.spearmanr``), or why there is none (fewer than 3 trials)."""
    keys = panel_value_keys(spec)
    rows = [[objective_value(summary, k) if _has(summary, k) else math.nan for k in keys]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            for summary in [{**t.user_attrs, spec.objective: t.values[0]}]]
    matrix = pd.DataFrame(rows, columns=keys).dropna(axis=1, how="all")
    if len(matrix) < 3 or matrix.shape[1] < 2:
        return f"not available: {len(matrix)} complete trial(s) and {matrix.shape[1]} metric(s); needs 3 and 2"
    columns = list(matrix.columns)
    rho = pd.DataFrame(np.nan, index=columns, columns=columns)
    for i, a in enumerate(columns):  # pairwise over the trials that have both; a constant metric correlates with nothing
        for b in columns[i:]:
            pair = matrix[[a, b]].dropna() if a != b else matrix[[a]].dropna()
            x, y = pair[a].to_numpy(), pair[b].to_numpy()
            if len(pair) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                rho.loc[a, b] = rho.loc[b, a] = float(scipy.stats.spearmanr(x, y).statistic)
    return rho


def _has(metrics: dict[str, Any], key: str) -> bool:
    try:
        objective_value(metrics, key)
        return True
    except (KeyError, TypeError, ValueError):
        return False


def _default(name: str) -> Any:
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig

    return getattr(ModelConfig(), name, None) if hasattr(ModelConfig(), name) else getattr(TrainConfig(), name, None)


def _figures(study: optuna.Study, spec: SweepSpec, frame: pd.DataFrame, configs: pd.DataFrame,
             rank_by: str) -> list[tuple[str, Any]]:
    """(title, plotly figure or an explanation string) for each panel of the report."""
    complete = frame[frame["state"] == "COMPLETE"].copy()
    complete["latent_dim"] = complete["latent_dim"].astype(str)
    panels: list[tuple[str, Any]] = []
    hover = ["trial", "width", "batch_size", "active_units"]
    name = _metric_name(spec.objective)
    if "beta" in configs:
        curve = configs.copy()
        if "latent_dim" not in curve:
            curve["latent_dim"] = spec.fixed.get("latent_dim", _default("latent_dim"))
        curve["latent_dim"] = curve["latent_dim"].astype(str)
        curve[f"{rank_by}_se"] = curve[f"{rank_by}_se"].fillna(0.0)
        panels.append(("Score vs β, mean ± SE over seeds (Higgins et al.: too little and too much β both entangle)",
                       px.scatter(curve.sort_values("beta"), x="beta", y=rank_by, error_y=f"{rank_by}_se", color="latent_dim",
                                  log_x=True, hover_data=["trials", "seeds", "collapsed"],
                                  labels={rank_by: _metric_name(rank_by), "latent_dim": "latent size"})))
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


METRIC_NAMES = {
    "beta_vae": "Higgins et al. (2017) score", "weak_label": "weak-label Higgins score", "factor_vae": "FactorVAE score",
    "mig": "MIG", "sap": "SAP", "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
    "dci_informativeness": "DCI informativeness", "udr": "UDR", "model_centrality": "ModelCentrality",
}


def _metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key)


# -- numbers as a reader wants them: β to 3 significant digits, scores to 3 decimals ----------------------

SIGNIFICANT_3 = ("beta", "beta_norm", "learning_rate", "gamma", "capacity_max")
DECIMALS_3 = ("score", "train_accuracy", "eval_accuracy", "mean_score", "std_score")


def format_value(name: str, value: Any) -> str:
    """One value as the report prints it: β-like columns to 3 significant digits, scores to 3 decimals.

    Other floats get 4 significant digits; NaN and None print as an empty string.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if name in DECIMALS_3:
        return f"{value:.3f}"
    if name in SIGNIFICANT_3:
        return f"{value:.3g}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every float column as text by :func:`format_value` (for ``to_string``/``to_html``)."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = [format_value(column, v) for v in out[column]]
    return out


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
        f"objective: {html.escape(_metric_name(spec.objective))} (<code>{html.escape(spec.objective)}</code>), mean over seeds; "
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
    rows = {**{k: params.get(k, _default(k)) for k in PARAM_COLUMNS}, "score": best.values[0],
            "seeds": " ".join(map(str, seeds_of(best))),
            "train_accuracy": best.user_attrs.get("train_accuracy"), BETA_NORM: best.user_attrs.get(BETA_NORM),
            ACTIVE_UNITS: best.user_attrs.get(ACTIVE_UNITS), MLFLOW_RUN_ID: best.user_attrs.get(MLFLOW_RUN_ID)}
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(format_value(k, v))}</td></tr>"
                               for k, v in rows.items()) + "</table>"


def reseed_top(
    study: optuna.Study,
    spec: SweepSpec,
    n_seeds: int,
    *,
    top: int = 3,
    log_run: Callable[[int, int, dict[str, Any], dict[str, Path]], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Retrain the ``top`` best distinct configurations with ``n_seeds`` more seeds; rank by the mean objective
    over the trial's own seeds and the new ones.

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
    if spec.objective in ("udr", "model_centrality"):
        raise ConfigError(f"--reseed: the objective {spec.objective} compares a trial's models with each other; one more seed has no "
                          "UDR of its own (the trial's seeds_per_trial already measures its spread)")
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.values[0])
    chosen, seen = [], set()
    for trial in complete:
        key = config_key(trial.params)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == top:
            break
    used = [s for t in complete for s in seeds_of(t, spec.seed)]
    rows = []
    for trial in chosen:
        seeds = seeds_of(trial, spec.seed)
        scores = [objective_value(m, spec.objective) for m in per_seed(trial, spec.objective)]
        for i in range(n_seeds):
            seed = max(used) + 1 + i
            echo(f"reseed: trial {trial.number} with seed {seed}")
            with tempfile.TemporaryDirectory(prefix="betasweep-reseed-") as workdir:
                metrics, files = train_and_score(spec, trial.params, seed, workdir)
                if log_run is not None:
                    log_run(trial.number, seed, metrics, files)
            scores.append(objective_value(metrics, spec.objective))
            seeds.append(seed)
        rows.append({"trial": trial.number, **trial.params, "seeds": " ".join(map(str, seeds)),
                     "mean_score": statistics.fmean(scores), "std_score": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                     "scores": " ".join(f"{s:.4f}" for s in scores)})
    frame = pd.DataFrame(rows)
    return frame.sort_values("mean_score", ascending=False).reset_index(drop=True) if not frame.empty else frame
