"""Train and score one configuration with one seed: no Optuna, no MLflow.

What a sweep's trial does for each of its seeds, and what ``betasweep evaluate`` / ``traverse`` do for a
checkpoint, on plain configs (:class:`~betasweep.models.ModelConfig`,
:class:`~betasweep.training.TrainConfig`, :class:`~betasweep.metrics.MetricConfig`):

- :func:`train_and_score`: train (:func:`~betasweep.training.train`), score with the metric panel
  (:func:`~betasweep.metrics.evaluate_model`), write the figures; returns ``(metrics, files, model)``.
- :func:`curve_callback` / :func:`curve_from_history`: the learning curve (the panel at cheap settings at
  budgets of images seen) scored into the training records and read back from them.
- :func:`name_dimensions` / :func:`dimension_labels` (CelebA) and :func:`conditional_metrics` (cvae).
- :func:`summarise_seeds` / :func:`objective_value`: the mean (and standard error) over seeds of the
  per-seed metrics, and the objective's value in them.

The sweep's objective (:mod:`betasweep.sweeps.objective`) calls these with a spec's configs and logs what
they return to MLflow; a tracker reaches in only through the plain callables ``on_record`` and
``on_checkpoint``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from betasweep.data import load_dataset
from betasweep.figures import save_figures, save_kl_chart
from betasweep.metrics import (MetricConfig, control, evaluate_model, held_out, labelled_view, leakage,
                               measure_dimension_names, panel_scores, representation_function, write_naming_csv,
                               write_naming_heatmap)
from betasweep.models import ModelConfig, beta_norm, probability_function
from betasweep.training import TrainConfig, load_classifier, train

__all__ = ["train_and_score", "load_data", "curve_callback", "curve_from_history", "name_dimensions",
           "dimension_labels", "conditional_metrics", "objective_value", "summarise_seeds", "SCALAR_KEYS"]

SCALAR_KEYS = ("beta_vae", "weak_label", "factor_vae", "mig", "sap", "dci_disentanglement", "dci_completeness",
               "dci_informativeness", "udr", "model_centrality", "modularity", "explicitness", "irs",
               "gaussian_total_correlation", "wasserstein_correlation", "mutual_info_score", "train_accuracy",
               "eval_accuracy", "recon_loss", "kl", "elbo", "active_units", "wall_time_s", "train_wall_time_s")
"""Per-seed metrics a trial summarises by mean (and standard error): the panel's keys, UDR, the VAE statistics."""


def load_data(dataset: Mapping[str, Any]):
    """The dataset a spec's ``dataset:`` block names: ``{"name": ..., "path": ..., "subsample": ...}``
    (:func:`~betasweep.data.load_dataset`; other keys ignored).

    Raises:
        DataError: the file or folder is missing or malformed.
    """
    return load_dataset(dataset["name"], dataset.get("path"), subsample=dataset.get("subsample"))


def objective_value(metrics: dict[str, Any], objective: str) -> float:
    """The objective's value in one model's (or one trial's) metrics: ``metrics[objective]``.

    Trials logged before the panel existed have no ``beta_vae`` / ``weak_label`` key: their Higgins
    (or weak-label) score is ``eval_accuracy``.

    Raises:
        KeyError: naming the objective and the keys there are.
    """
    if objective in metrics:
        return float(metrics[objective])
    if objective in ("beta_vae", "weak_label") and "eval_accuracy" in metrics:
        return float(metrics["eval_accuracy"])
    raise KeyError(f"no {objective!r} among the metrics ({', '.join(sorted(metrics))})")


def summarise_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every scalar in :data:`SCALAR_KEYS` present in all of ``per_seed``, and with
    two seeds or more its standard error ``<key>_se`` = ``std(ddof=1) / sqrt(N)``; ``kl_per_dim``
    averaged element-wise. Non-finite values propagate (a NaN seed makes the mean NaN)."""
    out: dict[str, Any] = {}
    n = len(per_seed)
    conditional = sorted(k for k in (per_seed[0] if per_seed else {}) if k.startswith(("control_", "leakage_auc_")))
    for key in (*SCALAR_KEYS, *conditional):  # cvae: control_<label>, leakage_auc_<label> (and their means)
        if not per_seed or not all(key in m for m in per_seed):
            continue
        values = np.array([float(m[key]) for m in per_seed])
        out[key] = float(values.mean())
        if n >= 2:
            out[f"{key}_se"] = float(values.std(ddof=1) / math.sqrt(n))
    if per_seed and all("kl_per_dim" in m for m in per_seed):
        out["kl_per_dim"] = [float(v) for v in np.mean([m["kl_per_dim"] for m in per_seed], axis=0)]
    return out


def curve_callback(budgets: tuple[int, ...], config: MetricConfig, data, log_every: int,
                   log: Callable[[dict[str, float], int], None] | None = None) -> Callable[[dict[str, Any], Any], None]:
    """A training callback that scores the learning curve (a spec's ``metric.curve``) into the training records.

    At the first record at or past each of ``budgets`` (images seen) the model is scored with
    ``config``'s panel at its cheap settings (its metric seed fixed); the record gets
    ``curve = {"budgets": [the budgets it covers], "scores": {metric: value}}`` and ``log(scores,
    samples)`` is called. The records are the training history that checkpoints keep, so a seed resumed
    from a checkpoint keeps the points scored before (:func:`curve_from_history`); which budgets a record
    covers follows from its step alone (records come every ``log_every`` steps, and at the last one), so a
    resumed run scores exactly the budgets the first attempt did not reach. The model's mode is restored
    after (:func:`~betasweep.metrics.representation_function`).
    """
    budgets = tuple(budgets)

    def score(record: dict[str, Any], model) -> None:
        step, samples = int(record["step"]), int(record["samples"])
        previous = (step - 1) // log_every * log_every * (samples // step)  # images seen at the record before
        covered = [b for b in budgets if previous < b <= samples]
        if not covered:
            return
        scores = {k: float(v) for k, v in panel_scores(labelled_view(model, data), representation_function(model),
                                                        np.random.default_rng(config.seed), config=config).items()}
        record["curve"] = {"budgets": covered, "scores": scores}
        if log is not None:
            log(scores, samples)

    return score


def curve_from_history(history: list[dict[str, Any]]) -> dict[str, list]:
    """A seed's learning curve from its training records (:func:`curve_callback`): ``budgets`` (nominal),
    ``samples`` (images seen when scored), and each panel value's list, one entry per budget; ``{}``
    when no record was scored."""
    curve: dict[str, list] = {}
    for record in history:
        point = record.get("curve")
        for budget in (point or {}).get("budgets", []):
            curve.setdefault("budgets", []).append(budget)
            curve.setdefault("samples", []).append(record["samples"])
            for key, value in point["scores"].items():
                curve.setdefault(key, []).append(value)
    return curve


def train_and_score(
    data,
    model_config: ModelConfig,
    train_config: TrainConfig,
    metric: MetricConfig,
    workdir: str | Path,
    *,
    dataset: Mapping[str, Any],
    title: str = "",
    on_record: Callable[[dict[str, Any], Any], None] | None = None,
    progress: bool = False,
    checkpoint_path: str | Path | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Path], Any]:
    """Train one configuration with one seed (``train_config.seed``) and score it with ``metric``'s panel.

    Args:
        data: the loaded dataset (:func:`load_data`).
        model_config, train_config: the run's configs (``model_config.num_channels`` that of ``data``).
        metric: the full score's settings; stored in the checkpoint (``betasweep evaluate`` scores it with
            this panel by default). Its seed also draws the figures' and the naming's images.
        workdir: where the figures (and by default the checkpoint) are written; created.
        dataset: the ``dataset:`` block it came from: ``name``, ``path``, ``subsample`` (stored in the
            checkpoint), ``classifier`` (CelebA: an attribute classifier for the naming / cvae's control).
        title: the KL chart's title (e.g. the trial's params).
        on_record: :func:`~betasweep.training.train`'s ``callback`` (e.g. :func:`curve_callback`, a logger).
        checkpoint_path: where training checkpoints (and resumes from, if the file exists);
            default ``workdir/checkpoint.pt``.
        on_checkpoint: passed to :func:`~betasweep.training.train` (e.g. upload each checkpoint).

    Returns:
        ``(metrics, files, model)``: metrics of :func:`~betasweep.metrics.evaluate_model` (the
        panel's keys, ``train_accuracy``, ``eval_accuracy``, ``recon_loss``, ``kl``,
        ``kl_per_dim`` (nats), ``elbo``, ``active_units``) plus ``curve`` (when the records were scored:
        :func:`curve_from_history`), ``beta_norm``, ``seed``, ``wall_time_s``, ``train_wall_time_s``
        (seconds); paths of ``checkpoint``, ``traversal``, ``reconstruction``, ``kl_chart`` (and for CelebA
        ``naming_csv``, ``naming_html``: see :func:`name_dimensions`); the trained model (eval mode).

    Raises:
        DivergenceError: training produced a non-finite loss.
        DataError: ``data`` does not fit ``model_config``, or the checkpoint to resume from does not.

    >>> from betasweep.metrics import MetricConfig
    >>> from betasweep.models import ModelConfig
    >>> from betasweep.scoring import load_data, train_and_score
    >>> from betasweep.training import TrainConfig
    >>> dataset = {"name": "shapes", "subsample": [1, 1, 4, 2, 2]}
    >>> data = load_data(dataset)
    >>> metrics, files, model = train_and_score(  # doctest: +SKIP
    ...     data, ModelConfig(latent_dim=6, width=16, num_channels=data.num_channels),
    ...     TrainConfig(beta=2.0, batch_size=16, train_samples=4_000, learning_rate=5e-4, seed=0),
    ...     MetricConfig(panel=("beta_vae", "mig"), num_train=500, num_eval=250), "run", dataset=dataset)
    >>> sorted(files)  # doctest: +SKIP
    ['checkpoint', 'kl_chart', 'reconstruction', 'traversal']
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else workdir / "checkpoint.pt"
    extra = {"dataset": dataset["name"], "data_path": dataset.get("path"), "subsample": dataset.get("subsample"),
             "metric_config": metric.to_dict()}  # `betasweep evaluate` scores it with this panel by default
    result = train(data, model_config, train_config, checkpoint_path=checkpoint, extra=extra, callback=on_record,
                   progress=progress, on_checkpoint=on_checkpoint)
    metrics = evaluate_model(result.model, data, metric)
    if curve := curve_from_history(result.history):
        metrics["curve"] = curve
    files = {"checkpoint": checkpoint, **_describe(result.model, data, metric, dataset, metrics, workdir, title)}
    metrics.update(
        beta_norm=beta_norm(train_config.beta, model_config.latent_size, model_config.num_pixels),
        seed=train_config.seed,
        train_wall_time_s=result.wall_time_s,
        wall_time_s=time.perf_counter() - start,
    )
    return metrics, files, result.model


def _describe(model, data, metric: MetricConfig, dataset: Mapping[str, Any], metrics: dict[str, Any], workdir: Path,
              title: str) -> dict[str, Path]:
    """The trained model's figures (and CelebA's naming, cvae's control and leakage into ``metrics``); their paths."""
    figure_rng, naming_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(metric.seed).spawn(4)[2:])
    files: dict[str, Path] = {}
    names = None
    if model.conditional:  # cvae: control and leakage instead of naming z's dimensions by attribute
        metrics.update(conditional_metrics(model, data, dataset.get("classifier"), naming_rng))
    elif dataset["name"] == "celeba":
        rows, naming_files = name_dimensions(model, data, dataset.get("classifier"), naming_rng, workdir,
                                             metrics["kl_per_dim"])
        files.update(naming_files)
        metrics["dimension_names"] = [str(row) for row in rows]
        names = dimension_labels(rows)
    files.update(save_figures(model, data, figure_rng, workdir, metrics["kl_per_dim"], names=names))
    files["kl_chart"] = save_kl_chart(metrics["kl_per_dim"], workdir / "kl_per_dim.png", title=title)
    return files


def name_dimensions(model, data, classifier_path: str | None, rng: np.random.Generator, workdir: Path,
                    kl_per_dim: list[float]) -> tuple[list, dict[str, Path]]:
    """CelebA: which latent dimension encodes which attribute, measured on the val partition.

    Writes ``dimension_names.csv`` and ``dimension_names.html`` (AUC of each ``mu_j`` per attribute;
    with an attribute ``classifier`` checkpoint also the change of its predicted probability along
    a traversal of ``j``).

    Returns:
        ``(rows, files)``: the naming table (one :class:`~betasweep.metrics.attribute_naming.DimensionName`
        per dimension, by KL) and ``{"naming_csv": path, "naming_html": path}``.
    """
    val = data.with_partition("val")
    classifier = None
    if classifier_path:
        classifier = probability_function(load_classifier(classifier_path, next(model.parameters()).device)[0])
    named = measure_dimension_names(model, val.images(np.arange(len(val))), val.attributes, classifier,
                                    val.attribute_names, rng, kl_per_dim=kl_per_dim)
    return named["rows"], {
        "naming_csv": write_naming_csv(named["rows"], Path(workdir) / "dimension_names.csv"),
        "naming_html": write_naming_heatmap(named["auc"], named["direction"], named["delta_p"], val.attribute_names,
                                            Path(workdir) / "dimension_names.html", rows=named["rows"]),
    }


def dimension_labels(rows) -> dict[int, str]:
    """Traversal row labels from the naming table: ``{dim: "Blond_Hair + (AUC 0.76)"}``."""
    return {row.dim: f"{row.attribute} {'+' if row.direction > 0 else '-'} (AUC {row.auc:.2f})" for row in rows}


def conditional_metrics(model, data, classifier_path: str | None, rng: np.random.Generator) -> dict[str, Any]:
    """A cvae's control and leakage (:mod:`betasweep.metrics.conditional`) on held-out data.

    Returns:
        ``leakage_auc`` ({label: AUC}), ``leakage_auc_mean``, ``leakage_auc_<label>``; with a
        CelebA attribute ``classifier``: ``control`` ({attribute: Δp, "mean": ...}), ``control_mean``,
        ``control_<attribute>``. The flat keys go to MLflow as metrics, the dicts to the trial.
    """
    control_rng, leakage_rng = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(2))
    val = held_out(data)
    auc = leakage(model, val, leakage_rng)
    out: dict[str, Any] = {"leakage_auc": auc, "leakage_auc_mean": float(np.nanmean(list(auc.values())))}
    out.update({f"leakage_auc_{k}": v for k, v in auc.items()})
    if classifier_path:
        classifier, state = load_classifier(classifier_path, next(model.parameters()).device)
        names = tuple(state["attribute_names"]) if "attribute_names" in state else tuple(data.attribute_names)
        dp = control(model, val, probability_function(classifier), names, control_rng)
        out.update(control=dp, control_mean=dp.get("mean", float("nan")))
        out.update({f"control_{k}": v for k, v in dp.items() if k != "mean"})
    return out
