"""A study's results, ranked: configurations (mean ± SE over seeds of every panel value), the verdict, the best
trial, the trials, rank correlations, learning curves, and the top configurations reseeded.

Everything here is a table or a number read from the study's trials (:mod:`betasweep.sweeps.records` says what
each trial records); :mod:`betasweep.sweeps.report` writes it as HTML, the CLI prints it.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd
import scipy.stats
from optuna.trial import TrialState

from betasweep.errors import ConfigError
from betasweep.metrics.panel import PANEL_KEYS
from betasweep.models import ModelConfig
from betasweep.models.vae import family_values
from betasweep.scoring import objective_value
from betasweep.sweeps.objective import train_and_score
from betasweep.sweeps.records import (ACTIVE_UNITS, ATTEMPT_OF, BETA_NORM, FAIL_REASON, MLFLOW_RUN_ID, RACE_IMAGES,
                                      RACE_ROUND, STUDY_SPEC, config_key, group_by_configuration, per_seed, rung_of,
                                      seeds_of)
from betasweep.sweeps.spec import SweepSpec, parse_spec
from betasweep.sweeps.verdict import ConfigResult, Verdict, verdict
from betasweep.training import TrainConfig

__all__ = ["PARAM_COLUMNS", "METRIC_NAMES", "best_trial", "trials_frame", "panel_value_keys", "config_label",
           "configurations", "curve_frame", "configuration_frame", "format_configurations", "method_frame",
           "panel_keys_in", "study_verdict", "spearman_table", "default_value", "metric_name", "format_value",
           "format_numbers", "reseed_top"]

PARAM_COLUMNS = ("beta", "latent_dim", "width", "batch_size")


def best_trial(study: optuna.Study, spec: SweepSpec | None = None) -> optuna.trial.FrozenTrial:
    """The best trial of the best configuration; for two objectives, the Pareto-optimal trial with the highest score.

    The best configuration is the verdict's (:func:`study_verdict`): the highest mean of the objective
    over its distinct seeds (:func:`configurations`: a seed trained by two trials of one configuration
    counts once; a race's seeds at higher rungs are the race's), ties by label; then its complete trial
    with the highest value (the lowest number among equals; a race's trials at every rung). Optuna's ``study.best_trial`` alone would name one
    race trial's lucky single seed. With one trial per configuration and no tie this is ``study.best_trial``.

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
            row[name] = params.get(name, default_value(name)) if name in read else "—"
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
                rows.append({"configuration": config.label, "metric": metric_name(key), "images": budget,
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


def default_value(name: str) -> Any:
    """A model or training field's default (:class:`~betasweep.models.ModelConfig`, then
    :class:`~betasweep.training.TrainConfig`), None for neither."""
    return getattr(ModelConfig(), name, None) if hasattr(ModelConfig(), name) else getattr(TrainConfig(), name, None)


METRIC_NAMES = {
    "beta_vae": "Higgins et al. (2017) score", "weak_label": "weak-label Higgins score", "factor_vae": "FactorVAE score",
    "mig": "MIG", "sap": "SAP", "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
    "dci_informativeness": "DCI informativeness", "udr": "UDR", "model_centrality": "ModelCentrality",
}


def metric_name(key: str) -> str:
    """A panel value's name for a reader (``"mig"`` -> ``"MIG"``); unknown keys as they are."""
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
