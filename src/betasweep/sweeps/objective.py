"""The Optuna objective: one trial = build data and model from the trial's params, train, score, log."""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from betasweep.data import load_dataset
from betasweep.errors import DivergenceError
from betasweep.figures import save_figures, save_kl_chart
from betasweep.metrics import disentanglement_score, evaluate_model
from betasweep.models import ModelConfig, beta_norm
from betasweep.sweeps.spec import SweepSpec
from betasweep.training import TrainConfig, train
from betasweep.tracking import Tracker, TrialRun

__all__ = ["Objective", "build_configs", "train_and_score"]

USER_ATTRS = ("train_accuracy", "recon_loss", "kl", "kl_per_dim", "elbo", "active_units", "beta_norm", "seed",
              "wall_time_s", "train_wall_time_s")


def build_configs(spec: SweepSpec, params: dict[str, Any], seed: int, num_channels: int) -> tuple[ModelConfig, TrainConfig]:
    """Split a trial's params plus the spec's fixed fields into the model's and the training's config."""
    values = {**spec.fixed, **params}
    model_config = ModelConfig(
        num_channels=num_channels, **{k: v for k, v in values.items() if k in ModelConfig.__dataclass_fields__}
    )
    train_config = TrainConfig(
        train_samples=spec.train_samples, seed=seed,
        **{k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__},
    )
    return model_config, train_config


def train_and_score(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int,
    workdir: str | Path,
    *,
    on_record: Callable[[dict[str, Any], Any], None] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Train one configuration and score it with the spec's full metric.

    Returns:
        ``(metrics, files)``: ``train_accuracy``, ``eval_accuracy``, ``recon_loss``, ``kl``,
        ``kl_per_dim``, ``elbo``, ``active_units``, ``beta_norm``, ``seed``, ``wall_time_s``,
        ``train_wall_time_s``; and paths of ``checkpoint``, ``traversal``, ``reconstruction``, ``kl_chart``
        (and for CelebA ``naming_csv``, ``naming_html``: see :func:`name_dimensions`).

    Raises:
        DivergenceError: training produced a non-finite loss.
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    dataset = spec.dataset
    data = load_dataset(dataset["name"], dataset.get("path"), subsample=dataset.get("subsample"))
    model_config, train_config = build_configs(spec, params, seed, data.num_channels)
    checkpoint = workdir / "checkpoint.pt"
    extra = {"dataset": dataset["name"], "data_path": dataset.get("path"), "subsample": dataset.get("subsample")}
    result = train(data, model_config, train_config, checkpoint_path=checkpoint, extra=extra, callback=on_record, progress=progress)
    metrics = evaluate_model(result.model, data, spec.metric)
    figure_rng, naming_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.metric.seed).spawn(4)[2:])
    files = {"checkpoint": checkpoint, **save_figures(result.model, data, figure_rng, workdir, metrics["kl_per_dim"])}
    if dataset["name"] == "celeba":
        rows, naming_files = name_dimensions(result.model, data, dataset.get("classifier"), naming_rng, workdir,
                                             metrics["kl_per_dim"])
        files.update(naming_files)
        metrics["dimension_names"] = [str(row) for row in rows]
    files["kl_chart"] = save_kl_chart(metrics["kl_per_dim"], workdir / "kl_per_dim.png",
                                      title=", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()))
    metrics.update(
        beta_norm=beta_norm(train_config.beta, model_config.latent_dim, model_config.num_pixels),
        seed=seed,
        train_wall_time_s=result.wall_time_s,
        wall_time_s=time.perf_counter() - start,
    )
    return metrics, files


class Objective:
    """``objective(trial)`` for ``study.optimize``; one MLflow child run per trial.

    Args:
        spec: the validated sweep spec.
        tracker: the study's MLflow side; ``parent_run_id`` is the study's parent run.
        progress: show a training progress bar and a line per trial.
        echo: where progress lines go (e.g. ``click.echo``).

    The trial's return value is the Higgins ``eval_accuracy`` (and the held-out ``recon_loss`` when
    the spec has a second objective). A NaN/inf loss marks the trial FAIL with the reason in the
    user attribute ``fail_reason`` (pass ``catch=(DivergenceError,)`` to ``study.optimize`` so the
    sweep goes on); a pruned trial's run ends KILLED, a failed one's FAILED.
    """

    def __init__(self, spec: SweepSpec, tracker: Tracker, parent_run_id: str, *, progress: bool = False,
                 echo: Callable[[str], None] | None = None):
        self.spec = spec
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.progress = progress
        self.echo = echo or (lambda message: None)
        self.current_trial: int | None = None  # number of the trial being run, for a graceful stop

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.spec.search_space}

    def __call__(self, trial: optuna.Trial):
        spec = self.spec
        self.current_trial = trial.number
        params = self.suggest(trial)
        seed = spec.seed_for(trial.number)
        run = self.tracker.start_trial_run(self.parent_run_id, trial.number)
        trial.set_user_attr("mlflow_run_id", run.run_id)
        self.echo(f"trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + f" (seed {seed})")
        run.log_params({**spec.fixed, **params, "seed": seed, "dataset": spec.dataset["name"],
                        "train_samples": spec.train_samples, "study": spec.study,
                        "beta_norm": _beta_norm_of(spec, params)})
        try:
            with tempfile.TemporaryDirectory(prefix=f"betasweep-trial-{trial.number}-") as workdir:
                metrics, files = train_and_score(spec, params, seed, workdir, on_record=self._on_record(trial, run),
                                                 progress=self.progress)
                for name, path in files.items():
                    run.log_artifact(path, artifact_folder(name))
            for key in USER_ATTRS:  # inside the try: a trial failed meanwhile by another worker still closes its run
                trial.set_user_attr(key, metrics[key])
            if "dimension_names" in metrics:  # CelebA: "dim 7 -> Blond_Hair (AUC 0.76, ...)", by KL
                trial.set_user_attr("dimension_names", metrics["dimension_names"])
        except optuna.TrialPruned:
            run.set_tags({"optuna.state": "PRUNED"})
            run.end("KILLED")
            self.echo(f"trial {trial.number}: pruned")
            raise
        except DivergenceError as error:
            trial.set_user_attr("fail_reason", str(error))
            run.set_tags({"optuna.state": "FAIL", "fail_reason": str(error)})
            run.end("FAILED")
            self.echo(f"trial {trial.number}: failed: {error}")
            raise
        except BaseException as error:  # a crash (FAILED), SIGTERM / Ctrl-C or a lost heartbeat (KILLED)
            stolen = isinstance(error, optuna.exceptions.UpdateFinishedTrialError)
            if stolen:
                reason = "failed by another worker: no heartbeat within the grace period"
            elif isinstance(error, Exception):
                reason = f"{type(error).__name__}: {error}"[:500]
            else:
                reason = f"worker stopped ({error or 'Ctrl-C'})"
            with contextlib.suppress(Exception):  # the trial may be finished already, or its database gone
                trial.set_user_attr("fail_reason", reason)
            run.set_tags({"optuna.state": "FAIL", "fail_reason": reason})
            run.end("FAILED" if isinstance(error, Exception) and not stolen else "KILLED")
            raise
        run.log_metrics({**metrics, "score": metrics["eval_accuracy"]}, step=spec.train_samples)
        run.set_tags({"optuna.state": "COMPLETE"})
        run.end("FINISHED")
        self.echo(f"trial {trial.number}: score {metrics['eval_accuracy']:.4f} (train {metrics['train_accuracy']:.4f}), "
                  f"recon {metrics['recon_loss']:.1f}, KL {metrics['kl']:.2f}, {metrics['wall_time_s']:.0f} s")
        if spec.second_objective:
            return metrics["eval_accuracy"], metrics[spec.second_objective]
        return metrics["eval_accuracy"]

    def _on_record(self, trial: optuna.Trial, run: TrialRun):
        """The training callback: log each record; at the spec's points report the cheap score and maybe prune."""
        spec = self.spec
        pending = sorted(spec.intermediate_at) if spec.intermediate is not None else []
        data_cache: dict[str, Any] = {}

        def on_record(record: dict[str, Any], model) -> None:
            run.log_metrics({k: record[k] for k in ("loss", "recon_loss", "kl", "kl_per_dim")}, step=record["samples"])
            while pending and record["samples"] >= pending[0] * spec.train_samples:
                fraction = pending.pop(0)
                if "data" not in data_cache:
                    dataset = spec.dataset
                    data_cache["data"] = load_dataset(dataset["name"], dataset.get("path"), subsample=dataset.get("subsample"))
                cheap = spec.intermediate
                score = disentanglement_score(model, data_cache["data"], cheap, np.random.default_rng(cheap.seed))["eval_accuracy"]
                step = int(fraction * spec.train_samples)
                run.log_metrics({"intermediate_score": score}, step=step)
                self.echo(f"trial {trial.number}: step {record['step']}, {record['samples']} samples, intermediate score {score:.4f}")
                if not spec.second_objective:
                    trial.report(score, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"intermediate score {score:.4f} at {step} samples")

        return on_record


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
    from betasweep.metrics import measure_dimension_names, write_naming_csv, write_naming_heatmap
    from betasweep.models import probability_function
    from betasweep.training import load_classifier

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


def artifact_folder(name: str) -> str:
    return {"checkpoint": "checkpoint", "naming_csv": "naming", "naming_html": "naming"}.get(name, "figures")


def _beta_norm_of(spec: SweepSpec, params: dict[str, Any]) -> float:
    """β_norm of a trial's configs, before its data is loaded (CelebA has 3 channels, the rest 1)."""
    model_config, train_config = build_configs(spec, params, spec.seed, 3 if spec.dataset["name"] == "celeba" else 1)
    return beta_norm(train_config.beta, model_config.latent_dim, model_config.num_pixels)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
