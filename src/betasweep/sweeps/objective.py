"""The Optuna objective: one trial = build data and model from the trial's params, train each of its
seeds, score every model with the metric panel, log, return the mean of the objective.

Training and scoring one seed is :func:`betasweep.scoring.train_and_score` (no Optuna, no MLflow; this
module's :func:`train_seed` calls it with a spec's configs); what this module adds is the trial: its
seeds, pruning, resuming an earlier attempt, and what goes to the trial's user attributes and MLflow run.

Seeds inside a trial (``seeds_per_trial: N``). The trial trains its configuration with the seeds of
:meth:`~betasweep.sweeps.spec.SweepSpec.seeds_for`, one after the other, and returns the mean of the
objective over them. What it records:

- user attributes ``seeds`` (the training seeds), ``per_seed`` (one dict of metrics per seed, in
  seed order: the panel's keys, ``train_accuracy``, ``eval_accuracy``, ``recon_loss``, ``kl``,
  ``kl_per_dim``, ``elbo``, ``active_units``, ``seed``, ``wall_time_s``, ...), and for every scalar
  metric its mean over the seeds under the metric's own name (``beta_vae``, ``mig``, ``recon_loss``
  ...) and, with ``N >= 2``, its standard error ``std(ddof=1) / sqrt(N)`` under ``<metric>_se``;
  ``kl_per_dim`` is the element-wise mean (per seed in ``per_seed``); ``collapsed_seeds`` lists the
  seed indices whose model has no active unit;
- one MLflow child run per trial. With one seed it is laid out as before (curves ``loss`` ...,
  artifacts ``checkpoint/``, ``figures/``). With ``N >= 2`` seed ``i``'s training curves are metric
  keys ``seed-i/loss``, ``seed-i/recon_loss``, ... (steps: that seed's training samples), its final
  metrics ``seed-i/<metric>``, its artifacts ``seed-i/checkpoint/checkpoint.pt`` and
  ``seed-i/figures/*.png``; the unprefixed final metrics are the means, ``<metric>_se`` their
  standard errors.

Pruning with several seeds. Optuna accepts one report per step, so the pruner's step axis counts the
trial's training samples over all its seeds: seed ``i`` at fraction ``f`` of its budget ``T`` is
step ``i*T + f*T``, and the value reported there is the mean of the cheap objective scores at
fraction ``f`` of seeds ``0..i`` (the seeds trained so far). Every trial of a study has the same
``N`` and ``T``, so a step means the same thing in every trial and the median pruner compares like
with like; Hyperband's ``max_resource`` is ``N*T``. With one seed this is the former behaviour.

Learning curves (``metric.curve``). At each budget of images seen, at the first logged training step
at or past it, the seed's model is scored with the whole panel at the curve's cheap settings (the
metric seed fixed, as for every score): MLflow metrics ``curve/<metric>`` (``seed-i/curve/<metric>``
with several seeds), step = images seen, and in ``per_seed`` each seed's ``curve``:
``{"budgets": [...], "samples": [...], "<metric>": [...]}`` (the nominal budgets, the images actually
seen, a value per budget).

Race trials (:mod:`betasweep.sweeps.race`) carry their seeds in the user attribute ``race_seeds``;
they train those instead of the spec's and are never pruned (their value is one more seed of a
configuration, not a candidate to stop early).

UDR (``metric.objective: udr``, Duan et al. 2020): after the last seed, the trial's ``N`` models
encode the same 1,000 held-out images (:func:`~betasweep.metrics.udr_images`, drawn with the metric
seed, so every trial uses the same images) and :func:`~betasweep.metrics.udr_of_models` scores them;
the trial's value is their UDR, each seed's ``udr`` in ``per_seed`` is its model's median pairwise score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from betasweep.data import DATASET_CHANNELS
from betasweep.errors import DivergenceError
from betasweep.metrics import disentanglement_score, panel_scores, representation_function, udr_images, udr_of_models
from betasweep.metrics.model_centrality import model_centrality_of_models
from betasweep.models import beta_norm
from betasweep.models.vae import family_values
from betasweep.scoring import (SCALAR_KEYS, curve_callback, objective_value, summarise_seeds,
                               train_and_score as score_configs)
from betasweep.sweeps.records import (BEST_SEED_CHECKPOINT, BETA_NORM, COLLAPSED_SEEDS, CPU_S, DIMENSION_NAMES,
                                      FAIL_REASON, GPU_S, IMAGES_TRAINED, MLFLOW_RUN_ID, PER_SEED, RACE_FROM, RACE_IMAGES,
                                      RACE_SEEDS, SEED, SEEDS)
from betasweep.sweeps.resume import Resume, fits_configs
from betasweep.sweeps.spec import LABEL_FREE, SweepSpec, build_configs, load_spec_data, panel_metric_of
from betasweep.training import TrainConfig, resolve_device
from betasweep.tracking import Tracker, TrialRun

__all__ = ["Objective", "train_and_score", "train_seed", "artifact_folder", "UDR_IMAGES"]

IMAGE_KEYS = ("traversal", "reconstruction")  # logged also as time-stepped images (MLflow's image grid)

UDR_IMAGES = 1000
"""Held-out images the models of a trial encode for UDR (disentanglement_lib's ``num_data_points``)."""


def train_and_score(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int,
    workdir: str | Path,
    *,
    on_record: Callable[[dict[str, Any], Any], None] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Train one configuration of ``spec`` with one seed and score it with the spec's metric panel.

    Returns:
        ``(metrics, files)`` of :func:`train_seed`.
    """
    metrics, files, _ = train_seed(spec, params, seed, workdir, on_record=on_record, progress=progress)
    return metrics, files


def train_seed(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int,
    workdir: str | Path,
    *,
    data=None,
    on_record: Callable[[dict[str, Any], Any], None] | None = None,
    progress: bool = False,
    checkpoint_path: str | Path | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Path], Any]:
    """:func:`betasweep.scoring.train_and_score` with a trial's params: the spec's configs
    (:func:`~betasweep.sweeps.spec.build_configs`), its full metric settings and dataset; the KL chart
    titled with ``params``.

    Args:
        data: the spec's dataset if already loaded (a trial loads it once for all its seeds).
        checkpoint_path, on_checkpoint, on_record, progress: as :func:`betasweep.scoring.train_and_score`'s.

    Returns:
        ``(metrics, files, model)`` of :func:`betasweep.scoring.train_and_score`.

    Raises:
        DivergenceError: training produced a non-finite loss.
    """
    start = time.perf_counter()
    data = data if data is not None else load_spec_data(spec)
    model_config, train_config = build_configs(spec, params, seed, data.num_channels)
    title = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    metrics, files, model = score_configs(data, model_config, train_config, spec.metric, workdir, dataset=spec.dataset,
                                          title=title, on_record=on_record, progress=progress,
                                          checkpoint_path=checkpoint_path, on_checkpoint=on_checkpoint)
    metrics["wall_time_s"] = time.perf_counter() - start  # the whole seed's, loading its data here included
    return metrics, files, model


@dataclass
class _TrialContext:
    """One trial's state while :meth:`Objective.__call__` runs it."""

    trial: optuna.Trial
    spec: SweepSpec
    params: dict[str, Any]
    seeds: list[int]
    resume: Resume
    cpu_start: float
    run: TrialRun | None = None
    data: Any = None
    intermediate: dict[float, list[float]] = field(default_factory=dict)  # fraction -> cheap score of each seed so far
    trained: list[tuple[int, float, str]] = field(default_factory=list)  # (images, seconds, device) per seed trained here

    @property
    def several(self) -> bool:
        return len(self.seeds) > 1


class Objective:
    """``objective(trial)`` for ``study.optimize``; one MLflow child run per trial.

    Args:
        spec: the validated sweep spec.
        tracker: the study's MLflow side; ``parent_run_id`` is the study's parent run.
        progress: show a training progress bar (a terminal); without one, a line per tenth of each trial.
        echo: where progress lines go (e.g. ``click.echo``).

    The trial's return value is the mean over its seeds of ``spec.objective`` (the Higgins score by
    default; see the module docstring for what is recorded per seed), and the mean held-out
    ``recon_loss`` when the spec has a second objective. A NaN/inf loss of any seed marks the trial
    FAIL with the reason in the user attribute ``fail_reason`` (pass ``catch=(DivergenceError,)`` to
    ``study.optimize`` so the sweep goes on); a pruned trial's run ends KILLED, a failed one's FAILED.
    """

    def __init__(self, spec: SweepSpec, tracker: Tracker, parent_run_id: str, *, progress: bool = False,
                 echo: Callable[[str], None] | None = None, checkpoint_dir: str | Path | None = None):
        self.spec = spec
        self.checkpoint_dir = checkpoint_dir  # seeds' checkpoints on a shared filesystem; None: the runs' artifacts
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.progress = progress
        self.echo = echo or (lambda message: None)
        self.current_trial: int | None = None  # number of the trial being run, for a graceful stop

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's params; with ``model`` searched, only the drawn family's fields are suggested.

        With the spec's ``model:`` part, the trial draws a method, then that method's own strength
        parameters (a conditional space, Optuna's define-by-run)."""
        space = sorted(self.spec.search_space, key=lambda p: p.name != "model")  # model first
        params: dict[str, Any] = {}
        if self.spec.methods:
            params["model"] = trial.suggest_categorical("model", list(self.spec.methods))
            for p in self.spec.methods[params["model"]]:
                params[p.name] = p.suggest(trial)
        for p in space:
            if "model" in params and p.name not in family_values({"model": params["model"], p.name: None}):
                continue
            params[p.name] = p.suggest(trial)
        return params

    def __call__(self, trial: optuna.Trial):
        cpu_start = time.process_time()  # the trial's cost: CPU seconds, (images, seconds, device) per seed
        spec = self.spec
        if trial.user_attrs.get(RACE_IMAGES):  # a race's task: its seed's budget is the race's rung (sweeps/race.py)
            spec = dataclasses.replace(spec, train_samples=int(trial.user_attrs[RACE_IMAGES]))
        self.current_trial = trial.number
        params = self.suggest(trial)
        seeds = [int(s) for s in trial.user_attrs.get(RACE_SEEDS) or spec.seeds_for(trial.number)]
        resume = Resume.of(trial, spec.study, checkpoint_dir=self.checkpoint_dir, tracker=self.tracker, echo=self.echo)
        seeds = resume.seeds(seeds)  # a retry trains its failed attempt's seeds (sweeps/resume.py)
        t = _TrialContext(trial, spec, params, seeds, resume, cpu_start)
        self._start_run(t)
        try:
            per_seed = self._train_seeds(t)
            summary = summarise_seeds(per_seed)
            value = objective_value(summary, spec.objective)
            self._record(t, per_seed, summary)  # inside the try: a trial failed meanwhile by another worker still closes its run
        except optuna.TrialPruned:
            t.run.close_quietly("KILLED", {"optuna.state": "PRUNED"})
            self.echo(f"trial {trial.number}: pruned")
            raise
        except DivergenceError as error:
            trial.set_user_attr(FAIL_REASON, str(error))
            t.run.close_quietly("FAILED", {"optuna.state": "FAIL", "fail_reason": str(error)})
            self.echo(f"trial {trial.number}: failed: {error}")
            raise
        except BaseException as error:  # a crash (FAILED), SIGTERM / Ctrl-C or a lost heartbeat (KILLED)
            _close_after_crash(trial, t.run, error)
            raise
        return self._finish(t, per_seed, summary, value)

    def _start_run(self, t: _TrialContext) -> None:
        """Open the trial's MLflow run, record its id and seeds, link it to the attempt it retries, log its params."""
        trial, spec, params, seeds = t.trial, t.spec, t.params, t.seeds
        t.run = run = self.tracker.start_trial_run(self.parent_run_id, trial.number)
        trial.set_user_attr(MLFLOW_RUN_ID, run.run_id)
        trial.set_user_attr(SEEDS, seeds)
        t.resume.start(trial, run)
        _end_previous_run(self.tracker, t.resume.attempts)  # left RUNNING if MLflow was down when that attempt failed
        self.echo(f"trial {trial.number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
                  + (f" (seeds {', '.join(map(str, seeds))})" if t.several else f" (seed {seeds[0]})"))
        run.log_params({**spec.fixed, **params, "seed": seeds[0], "dataset": spec.dataset["name"],
                        "train_samples": spec.train_samples, "study": spec.study,
                        "beta_norm": _beta_norm_of(spec, params), "objective": spec.objective,
                        "panel": ",".join(spec.metric.panel), "seeds_per_trial": len(seeds),
                        **({"seeds": " ".join(map(str, seeds))} if t.several else {})})

    def _train_seeds(self, t: _TrialContext) -> list[dict[str, Any]]:
        """Train (or take over from an earlier attempt) each seed in turn; each seed's metrics, in seed order.
        With a label-free objective (UDR, ModelCentrality) the seeds' models are then scored together."""
        per_seed: list[dict[str, Any]] = []
        models = []
        with tempfile.TemporaryDirectory(prefix=f"betasweep-trial-{t.trial.number}-") as workdir:
            t.data = load_spec_data(t.spec)
            for index, seed in enumerate(t.seeds):
                metrics, model = self._seed(t, index, seed, Path(workdir) / f"seed-{index}")
                per_seed.append(metrics)
                if t.spec.objective in LABEL_FREE:
                    models.append(model)
            if t.spec.objective == "udr":
                self._udr(t.data, models, per_seed)
            elif t.spec.objective == "model_centrality":
                self._model_centrality(models, per_seed)
        return per_seed

    def _seed(self, t: _TrialContext, index: int, seed: int, workdir: Path) -> tuple[dict[str, Any], Any]:
        """Seed ``index``: taken over finished from an earlier attempt, else trained (from a checkpoint where one
        fits); logged to the run and recorded for a retry. Its ``(metrics, model)`` (model: None unless a
        label-free objective needs it)."""
        prefix = f"seed-{index}/" if t.several else ""
        logged: set[int] = set()  # images seen of the curve points logged to the run live
        done = t.resume.finished_seed(index, prefix, workdir, t.intermediate, load_model=t.spec.objective in LABEL_FREE)
        metrics, files, model = done or self._train_one(t, index, seed, prefix, workdir, logged)
        self._log_seed(t, index, seed, prefix, metrics, files, logged)
        t.resume.seed_finished(index, metrics, t.intermediate)
        return metrics, model

    def _train_one(self, t: _TrialContext, index: int, seed: int, prefix: str, workdir: Path,
                   logged: set[int]) -> tuple[dict[str, Any], dict[str, Path], Any]:
        """Train seed ``index``: from an earlier attempt's checkpoint that fits, else a race's lower rung, else step 0;
        its cost appended to ``t.trained``."""
        spec, resume = t.spec, t.resume
        checkpoint = resume.checkpoint_path(index, workdir)
        expected = fits_configs(spec, t.params, seed, t.data)
        start_step = resume.prepare_checkpoint(index, prefix, checkpoint, expected)
        if not start_step and t.trial.user_attrs.get(RACE_FROM):  # a race's extension: from the lower rung
            start_step = resume.continue_from(t.trial.user_attrs[RACE_FROM], checkpoint, expected)
        metrics, files, model = train_seed(
            spec, t.params, seed, workdir, data=t.data, checkpoint_path=checkpoint,
            on_checkpoint=resume.on_checkpoint(index, prefix),
            on_record=self._on_record(t.trial, t.run, t.data, index, prefix, t.intermediate, logged),
            progress=self.progress)
        train_config = build_configs(spec, t.params, seed, t.data.num_channels)[1]
        t.trained.append(((train_config.num_steps - start_step) * train_config.batch_size,
                          float(metrics.get("train_wall_time_s", 0.0)), train_config.device))
        return metrics, files, model

    def _log_seed(self, t: _TrialContext, index: int, seed: int, prefix: str, metrics: dict[str, Any],
                  files: dict[str, Path], logged: set[int]) -> None:
        """Seed ``index``'s artifacts, images, final metrics (several seeds) and the curve points not logged live."""
        run, spec = t.run, t.spec
        for name, path in files.items():
            run.log_artifact(path, prefix + artifact_folder(name))
        for key in IMAGE_KEYS:  # the chart view's image grid shows these side by side across trials
            run.log_image(files[key], key if index == 0 else prefix + key, step=spec.train_samples)
        if t.several:
            run.log_metrics({f"{prefix}{k}": v for k, v in metrics.items() if k != "dimension_names"},
                            step=spec.train_samples)
            self.echo(f"trial {t.trial.number}: seed {index} ({seed}): {_seed_line(metrics, spec)}")
        for i, samples in enumerate(metrics.get("curve", {}).get("samples", [])):  # scored before a resume
            if samples not in logged:
                run.log_metrics({f"{prefix}curve/{k}": v[i] for k, v in metrics["curve"].items()
                                 if k not in ("budgets", "samples")}, step=samples)

    def _record(self, t: _TrialContext, per_seed: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """The trial's user attributes: the summary over seeds, each seed's metrics, its cost (module docstring)."""
        trial, spec = t.trial, t.spec
        best_index = max(range(len(per_seed)), key=lambda i: objective_value(per_seed[i], spec.objective))
        attrs = {**summary,
                 BETA_NORM: per_seed[0]["beta_norm"], SEED: t.seeds[0],
                 PER_SEED: [_json_ready(m) for m in per_seed],
                 COLLAPSED_SEEDS: [i for i, m in enumerate(per_seed) if m["active_units"] == 0],
                 BEST_SEED_CHECKPOINT: (f"seed-{best_index}/" if t.several else "") + "checkpoint"}
        attrs.update(_cost(t.trained, t.cpu_start))
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        if "dimension_names" in per_seed[0]:  # CelebA: "dim 7 -> Blond_Hair (AUC 0.76, ...)", by KL (first seed)
            trial.set_user_attr(DIMENSION_NAMES, per_seed[0]["dimension_names"])
        for key in ("control", "leakage_auc"):  # cvae: {attribute: value} of the first seed (each seed's: per_seed)
            if key in per_seed[0]:
                trial.set_user_attr(key, per_seed[0][key])

    def _finish(self, t: _TrialContext, per_seed: list[dict[str, Any]], summary: dict[str, Any], value: float):
        """Log the summary, end the run FINISHED, echo the trial's line; the trial's value(s) for Optuna."""
        spec, seeds = t.spec, t.seeds
        t.run.log_metrics({**summary, "score": value}, step=spec.train_samples)
        t.run.set_tags({"optuna.state": "COMPLETE"})
        t.run.end("FINISHED")
        spread = f" ± {summary[spec.objective + '_se']:.4f} (SE over {len(seeds)} seeds)" if t.several else ""
        self.echo(f"trial {t.trial.number}: {spec.objective} {value:.4f}{spread}; {_seed_line(summary, spec)}, "
                  f"{sum(m['wall_time_s'] for m in per_seed):.0f} s")
        if spec.second_objective:
            return value, summary[spec.second_objective]
        return value

    def _udr(self, data, models: list, per_seed: list[dict[str, Any]]) -> None:
        """UDR of the trial's models on the same held-out images; each seed's model's score into ``per_seed``."""
        images_seq, udr_seq = np.random.SeedSequence(self.spec.metric.seed).spawn(6)[4:]
        images = udr_images(data, np.random.default_rng(images_seq), UDR_IMAGES)
        result = udr_of_models([representation_function(m) for m in models], [np.asarray(m["kl_per_dim"]) for m in per_seed],
                               images, np.random.default_rng(udr_seq))
        for metrics, score in zip(per_seed, result["udr_per_model"]):
            metrics["udr"] = score

    def _model_centrality(self, models: list, per_seed: list[dict[str, Any]]) -> None:
        """ModelCentrality of the trial's models (Lin et al. 2020; :func:`~betasweep.metrics.model_centrality.
        model_centrality_of_models`, latents drawn with the metric seed); each seed's score into ``per_seed``."""
        rng = np.random.default_rng(np.random.SeedSequence(self.spec.metric.seed).spawn(7)[6])
        result = model_centrality_of_models(models, [np.asarray(m["kl_per_dim"]) for m in per_seed], rng,
                                            batch_size=min(64, self.spec.metric.batch_size),
                                            num_train=min(500, self.spec.metric.num_train),
                                            num_eval=min(250, self.spec.metric.num_eval))
        for metrics, score in zip(per_seed, result["model_centrality_per_model"]):
            metrics["model_centrality"] = score

    def _on_record(self, trial: optuna.Trial, run: TrialRun, data, index: int, prefix: str,
                   intermediate: dict[float, list[float]], logged: set[int] | None = None):
        """The training callback of seed ``index``: log each record; at the curve's budgets score the panel
        into the records (``logged`` gets the images seen of each point logged); at the spec's points compute the cheap objective score and report the mean over the
        seeds trained so far (see the module docstring; a race trial reports nothing: it is never pruned)."""
        spec = self.spec
        racing = RACE_SEEDS in trial.user_attrs
        pending = sorted(spec.intermediate_at) if spec.intermediate is not None and not racing else []
        def log_curve(scores: dict[str, float], samples: int) -> None:
            logged.add(samples)
            run.log_metrics({f"{prefix}curve/{k}": v for k, v in scores.items()}, step=samples)

        log_every = int({**spec.fixed, **trial.params}.get("log_every", TrainConfig.log_every))
        score_curve = curve_callback(spec.curve_budgets, spec.curve, data, log_every, log_curve) if spec.curve is not None else None
        progress_line = self._progress_lines(trial.number, prefix, int(trial.user_attrs.get(RACE_IMAGES) or 0))

        def on_record(record: dict[str, Any], model) -> None:
            run.log_metrics({f"{prefix}{k}": record[k] for k in ("loss", "recon_loss", "kl", "kl_per_dim")}, step=record["samples"])
            progress_line(record)
            if score_curve is not None:
                score_curve(record, model)
            while pending and record["samples"] >= pending[0] * spec.train_samples:
                fraction = pending.pop(0)
                score = self._cheap_score(model, data)
                scores = intermediate.setdefault(fraction, [])
                scores.append(score)
                mean = float(np.mean(scores))
                step = int(index * spec.train_samples + fraction * spec.train_samples)  # the pruner's axis: samples over seeds
                run.log_metrics({f"{prefix}intermediate_score": score}, step=int(fraction * spec.train_samples))
                if prefix:
                    run.log_metrics({"intermediate_score": mean}, step=step)
                self.echo(f"trial {trial.number}: {prefix}step {record['step']}, {record['samples']} samples, "
                          f"intermediate {spec.objective} {score:.4f}" + (f" (mean over {len(scores)} seeds so far {mean:.4f})" if len(scores) > 1 else ""))
                if not spec.second_objective:
                    trial.report(mean, step)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"intermediate score {mean:.4f} at step {step}")

        return on_record

    def _cheap_score(self, model, data) -> float:
        """The objective with the spec's intermediate (cheap) metric settings."""
        cheap = self.spec.intermediate
        rng = np.random.default_rng(cheap.seed)
        if panel_metric_of(self.spec.objective) == "beta_vae":
            return disentanglement_score(model, data, cheap, rng)["eval_accuracy"]
        return float(panel_scores(data, representation_function(model), rng, metrics=(panel_metric_of(self.spec.objective),),
                                  config=cheap)[self.spec.objective])

    def _progress_lines(self, number: int, prefix: str = "", total: int = 0) -> Callable[[dict[str, Any]], None]:
        """Without a progress bar (a log file, CI): one line per tenth of the trial's budget, at most.

        Records come every ``log_every`` steps; a line is echoed at the first record past each 10 %.
        """
        if self.progress:
            return lambda record: None
        total = total or self.spec.train_samples  # a race's task: its rung
        state = {"tenth": 0}

        def line(record: dict[str, Any]) -> None:
            tenth = min(10, record["samples"] * 10 // total)
            if tenth <= state["tenth"]:
                return
            state["tenth"] = tenth
            self.echo(f"trial {number}: {prefix}{tenth * 10}% ({min(record['samples'], total):,}/{total:,} samples, "
                      f"{record['elapsed_s']:.0f} s), loss {record['loss']:.1f}, KL {record['kl']:.2f}")

        return line



def _cost(trained: list[tuple[int, float, str]], cpu_start: float) -> dict[str, Any]:
    """A trial's cost (user attributes): ``images_trained`` (images its seeds trained here, a resumed part not
    counted), ``cpu_s`` (this process's CPU seconds over the trial: training, scoring, logging) and ``gpu_s``
    (training seconds of seeds trained on a CUDA device)."""
    return {IMAGES_TRAINED: int(sum(images for images, _, _ in trained)), CPU_S: time.process_time() - cpu_start,
            GPU_S: float(sum(seconds for _, seconds, device in trained if resolve_device(device).type == "cuda"))}


def _seed_line(metrics: dict[str, Any], spec: SweepSpec) -> str:
    """``beta_vae 0.8512, mig 0.1201, ..., recon 31.2, KL 12.40, 5 active units`` for a progress line."""
    keys = [k for k in SCALAR_KEYS[:9] if k in metrics]
    return ", ".join([*(f"{k} {metrics[k]:.4f}" for k in keys), f"recon {metrics['recon_loss']:.1f}",
                      f"KL {metrics['kl']:.2f}", f"{_fmt(metrics['active_units'])} active units"])


def _json_ready(metrics: dict[str, Any]) -> dict[str, Any]:
    """One seed's metrics as a trial user attribute (JSON): numbers, lists of numbers; no naming rows."""
    return {k: (float(v) if isinstance(v, (float, np.floating)) else int(v) if isinstance(v, np.integer) else v)
            for k, v in metrics.items() if k != "dimension_names"}


def _close_after_crash(trial: optuna.Trial, run: TrialRun, error: BaseException) -> None:
    """A trial stopped by ``error`` (not pruned, not diverged): its ``fail_reason`` recorded and its run closed,
    FAILED for a crash, KILLED for SIGTERM / Ctrl-C or a lost heartbeat. Never raises."""
    stolen = isinstance(error, optuna.exceptions.UpdateFinishedTrialError)
    if stolen:
        reason = "failed by another worker: no heartbeat within the grace period"
    elif isinstance(error, Exception):
        reason = f"{type(error).__name__}: {error}"[:500]
    else:
        reason = f"worker stopped ({error or 'Ctrl-C'})"
    with contextlib.suppress(Exception):  # the trial may be finished already, or its database gone
        trial.set_user_attr(FAIL_REASON, reason)
    # one short try, never raising: with MLflow down the retry of this trial ends the run later
    run.close_quietly("FAILED" if isinstance(error, Exception) and not stolen else "KILLED",
                      {"optuna.state": "FAIL", "fail_reason": reason})


def artifact_folder(name: str) -> str:
    return {"checkpoint": "checkpoint", "naming_csv": "naming", "naming_html": "naming"}.get(name, "figures")


def _beta_norm_of(spec: SweepSpec, params: dict[str, Any]) -> float:
    """β_norm of a trial's configs, before its data is loaded (channels from ``DATASET_CHANNELS``)."""
    model_config, train_config = build_configs(spec, params, spec.seed, DATASET_CHANNELS[spec.dataset["name"]])
    return beta_norm(train_config.beta, model_config.latent_size, model_config.num_pixels)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _end_previous_run(tracker: Tracker, attempts: list) -> None:
    """End the run of the attempt this trial retries if it is still RUNNING (its worker could not reach
    MLflow when it failed); KILLED, tagged FAIL. Never raises: a run left open costs nothing but its status."""
    run_id = attempts[0].user_attrs.get(MLFLOW_RUN_ID) if attempts else None
    if not run_id:
        return
    with contextlib.suppress(Exception):
        if tracker.end_run_if_running(run_id, "KILLED"):
            tracker.client.set_tag(run_id, "optuna.state", "FAIL")
