"""The sweep half of the Python API: :func:`sweep`, :func:`race`, :func:`report`, :func:`create_study` and
:func:`work`, each what the ``betasweep`` command of that name does, returning a result object (a dataclass).

Progress lines go to ``echo`` (by default stderr, as the commands print them); ``echo=None`` is silent.
Bad input raises :class:`betasweep.errors.BetasweepError` (``ConfigError``, ``DataError``, ``StorageError``,
``TrackingError``) with a one-line message naming the input and what was expected.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
from mlflow.exceptions import MlflowException

from betasweep.errors import ConfigError, DataError
from betasweep.scoring import objective_value
from betasweep.sweeps.jobs import local_workers, one_thread, resolve_jobs
from betasweep.sweeps.objective import artifact_folder
from betasweep.sweeps.race import RaceResult, race_study
from betasweep.sweeps.records import (BEST_SEED_CHECKPOINT, BETA_NORM, MLFLOW_RUN_ID, STUDY_PARENT_RUN,
                                      STUDY_TRACKING_URI)
from betasweep.sweeps.report import fetch_pictures, write_report
from betasweep.sweeps.results import (best_trial, configuration_frame, reseed_top, spearman_table, study_verdict,
                                      trials_frame)
from betasweep.sweeps.spec import RaceConfig, SweepSpec, load_spec, load_spec_data, parse_spec
from betasweep.sweeps.storage import (DEFAULT_STORAGE, StorageError, local_storage, make_storage, redact,
                                      storage_failure, warn_if_shared_sqlite)
from betasweep.sweeps.study import create_study as create_optuna_study, load_study
from betasweep.sweeps.worker import run_trials, worker_seed_offset
from betasweep.tracking import DEFAULT_TRACKING_URI, Tracker, TrackingError

__all__ = ["BestTrial", "CreatedStudy", "RaceOutcome", "Report", "SweepResult", "WorkerResult", "create_study", "race",
           "open_study", "race_settings", "report", "resolve_spec", "summary", "sweep", "work"]

Echo = Callable[[str], None]


def stderr_echo(message: str) -> None:
    """The default ``echo``: one progress line on stderr (stdout is left to the caller's results)."""
    print(message, file=sys.stderr, flush=True)


def _echo_of(echo: Echo | None) -> Echo:
    return echo if echo is not None else (lambda message: None)


@dataclass(frozen=True)
class BestTrial:
    """The best trial of a study (:func:`betasweep.sweeps.results.best_trial`: best configuration by its mean over
    seeds, then its best trial).

    Attributes:
        number: the Optuna trial number.
        score: the trial's value: the objective's mean over its seeds (e.g. Higgins accuracy in [0, 1]).
        params: the trial's configuration, fixed fields included (``beta``, ``latent_dim``, ``width``, ...).
        beta_norm: β · latent_dim / pixels (Higgins et al. 2017, Sec. 3), or None.
        mlflow_run_id: the trial's MLflow run, or None.
        checkpoint: ``runs:/RUN_ID/[seed-i/]checkpoint``: the checkpoint of the trial's best seed, for
            :func:`betasweep.api.model.load_model`; None without a run.
    """

    number: int
    score: float
    params: dict[str, Any]
    beta_norm: float | None
    mlflow_run_id: str | None
    checkpoint: str | None

    @classmethod
    def of(cls, study: optuna.Study, spec: SweepSpec) -> BestTrial:
        """The best trial of ``study``. Raises ``ValueError`` without a complete trial."""
        best = best_trial(study)
        run_id = best.user_attrs.get(MLFLOW_RUN_ID)
        path = best.user_attrs.get(BEST_SEED_CHECKPOINT, "checkpoint")
        return cls(number=best.number, score=best.values[0], params={**spec.fixed, **best.params},
                   beta_norm=best.user_attrs.get(BETA_NORM), mlflow_run_id=run_id,
                   checkpoint=f"runs:/{run_id}/{path}" if run_id else None)


def summary(study: optuna.Study, spec: SweepSpec) -> dict[str, Any]:
    """The best trial of ``study`` in a few fields: the JSON that ``betasweep sweep`` and ``report`` print.

    Keys: ``study``, ``best_trial``, ``score``, those of ``beta``, ``latent_dim``, ``width``, ``batch_size``
    the study has, ``beta_norm``, ``mlflow_run_id``. Raises ``ValueError`` without a complete trial.

    >>> from betasweep.api.study import open_study, summary
    >>> summary(*open_study(None, "shapes-quick", storage="sqlite:///betasweep.db")[:2])["score"]  # doctest: +SKIP
    0.839
    """
    best = BestTrial.of(study, spec)
    return {"study": study.study_name, "best_trial": best.number, "score": best.score,
            **{k: best.params.get(k) for k in ("beta", "latent_dim", "width", "batch_size") if k in best.params},
            "beta_norm": best.beta_norm, "mlflow_run_id": best.mlflow_run_id}


def has_complete_trial(study: optuna.Study) -> bool:
    """Whether ``study`` has at least one complete trial."""
    return any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))


@dataclass
class SweepResult:
    """What :func:`sweep` did.

    Attributes:
        study: the study's name; storage: its URL, password hidden; tracking_uri: the MLflow store.
        spec: the validated spec the study was created with.
        complete_trials: complete trials in the study (all processes, all runs).
        best: the best trial, or None with no complete trial.
        verdict: the verdict in sentences, one per line: the race's (``race:`` in the spec: each
            configuration against the best is *worse*, *equivalent* or *undecided*), else the seeds' verdict.
        configurations: one row per configuration, mean ± SE over seeds (:func:`configuration_frame`);
            empty with no complete trial.
        race: the race's full result, or None without a race.
        summary: the JSON that ``betasweep sweep`` prints (empty with no complete trial).
        tracker: the study's MLflow tracker (links: ``tracker.experiment_link()``, ``tracker.run_link(run_id)``).
    """

    study: str
    storage: str
    tracking_uri: str
    spec: SweepSpec
    complete_trials: int
    best: BestTrial | None
    verdict: list[str]
    configurations: pd.DataFrame
    race: RaceResult | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    tracker: Tracker | None = field(default=None, repr=False)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: dicts key by key, None removes the key, any other value replaces it."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_spec(spec: SweepSpec | dict | str | os.PathLike | None = None,
                 overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A validated spec from ``spec``: None (the embedded default), a YAML path, a dict (the YAML's form) or a
    :class:`SweepSpec`, with ``overrides`` (the YAML's form) merged in key by key (a None value removes the key).

    >>> resolve_spec(None, {"n_trials": 2}).n_trials
    2

    Raises:
        ConfigError: the file or the merged spec fails validation (one line naming the key).
    """
    if isinstance(spec, dict):
        loaded, base_dir = parse_spec(spec), None
    elif isinstance(spec, SweepSpec):
        loaded, base_dir = spec, None
    else:
        loaded, base_dir = load_spec(spec), (Path(spec).parent if spec is not None else None)
    if not overrides:
        return loaded
    if not isinstance(overrides, dict):
        raise ConfigError(f"overrides: expected a dict in the spec's YAML form, got {type(overrides).__name__}")
    return parse_spec(_merged(loaded.raw, overrides), base_dir=base_dir)


def sweep(spec: SweepSpec | dict | str | os.PathLike | None = None, *, overrides: dict[str, Any] | None = None,
          n_trials: int | None = None, timeout: float | None = None, storage: str = DEFAULT_STORAGE,
          tracking_uri: str = DEFAULT_TRACKING_URI, progress: bool = False, checkpoint_dir: str | os.PathLike | None = None,
          jobs: int | str | None = None, echo: Echo | None = stderr_echo) -> SweepResult:
    """Create (or load) the study of ``spec``, run its trials here (and in ``jobs - 1`` local processes), then
    the spec's race; as ``betasweep sweep``.

    Args:
        spec: None (the embedded default: procedural shapes, 6 trials of 2 seeds, a race to the three words),
            a YAML path, a dict in the YAML's form, or a :class:`SweepSpec`.
        overrides: merged into the spec key by key (YAML form; None removes a key), e.g.
            ``{"n_trials": 2, "metric": {"intermediate": None}}``.
        n_trials, timeout: trials to run here (default the spec's) and seconds after which none starts.
        storage: Optuna storage URL; tracking_uri: MLflow store.
        jobs: processes of one torch thread each (``"auto"``: one per core); default 1 with a spec, auto without.
        checkpoint_dir: a shared folder for the seeds' training checkpoints (default: the runs' artifacts).

    Returns:
        :class:`SweepResult`: the verdict's lines, the configurations and the best checkpoint.

    Raises:
        ConfigError, DataError: a bad spec or dataset (before any study or run is made).
        StorageError, TrackingError: the study's database or the tracking server failed.

    >>> import betasweep as bs
    >>> result = bs.sweep(overrides={"n_trials": 2}, jobs=1)  # doctest: +SKIP
    >>> result.best.checkpoint  # doctest: +SKIP
    'runs:/0f3.../seed-1/checkpoint'
    """
    say = _echo_of(echo)
    jobs = resolve_jobs(jobs if jobs is not None else ("auto" if spec is None else 1))
    storage = local_storage(storage, jobs)
    the_spec = resolve_spec(spec, overrides)
    if the_spec.dataset["name"] != "celeba":  # a missing or malformed data file: nothing made
        load_spec_data(the_spec)
    tracker = Tracker(tracking_uri, the_spec.study)
    the_study = create_optuna_study(the_spec, make_storage(storage, tracking_uri=tracking_uri), tracker, load_if_exists=True)
    warn_if_shared_sqlite(storage, the_study, worker=False, echo=say)
    say(f"study {the_spec.study!r}: {len(the_study.trials)} trial(s) so far; storage {redact(storage)}, "
        f"tracking {tracking_uri}")
    workers = dict(storage=storage, study_name=the_spec.study, tracking_uri=tracking_uri, checkpoint_dir=checkpoint_dir,
                   echo=say)
    _run_search(the_study, the_spec, tracker, workers, jobs, n_trials or the_spec.n_trials,
                timeout or the_spec.timeout, progress)
    raced = None
    if the_spec.race is not None and has_complete_trial(the_study):  # seeds where the search's answer is undecided
        with one_thread(jobs > 1), local_workers(jobs - 1, mode="serve", **workers):
            raced = race_study(the_study, the_spec, tracker, the_spec.race, progress=progress, echo=say,
                               checkpoint_dir=checkpoint_dir)
    return _sweep_result(the_study, the_spec, storage, tracker, raced)


def _run_search(the_study, spec, tracker, workers: dict[str, Any], jobs: int, n_trials, timeout, progress) -> None:
    """The search's trials: here alone (``jobs`` 1), or here and in ``jobs - 1`` local worker processes that
    share the study-wide target of complete trials."""
    run = dict(n_trials=n_trials, timeout=timeout, progress=progress, echo=workers["echo"], end_parent=True,
               checkpoint_dir=workers["checkpoint_dir"])
    if jobs == 1:
        run_trials(the_study, spec, tracker, **run)
        return
    complete = sum(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False))
    target = None if n_trials is None else complete + n_trials
    with one_thread(), local_workers(jobs - 1, mode="trials", max_complete=target, n_trials=n_trials, timeout=timeout,
                                     **workers) as processes:
        if not run_trials(the_study, spec, tracker, max_complete=target, **run):
            processes.stop()  # stopped by a signal: so are the workers (their trials are queued again)


def _sweep_result(the_study, spec: SweepSpec, storage: str, tracker: Tracker, raced: RaceResult | None) -> SweepResult:
    complete = sum(t.state.name == "COMPLETE" for t in the_study.get_trials(deepcopy=False))
    result = SweepResult(study=spec.study, storage=redact(storage), tracking_uri=tracker.tracking_uri, spec=spec,
                         complete_trials=complete, best=None, verdict=[], configurations=pd.DataFrame(), race=raced,
                         tracker=tracker)
    if complete:
        result.best = BestTrial.of(the_study, spec)
        result.verdict = list(raced.lines if raced is not None else study_verdict(the_study, spec).lines)
        result.configurations = configuration_frame(the_study, spec)
        result.summary = summary(the_study, spec)
    return result


@dataclass
class RaceOutcome:
    """What :func:`race` did.

    Attributes:
        study: the study's name; settings: the race's settings as used (:class:`RaceConfig`).
        verdict: the race's verdict in sentences: each configuration against the best is *worse*,
            *equivalent* (within ``margin``, TOST) or *undecided*, with its cost in images.
        result: the race's full result (rounds, per-seed values, images trained).
        best: the study's best trial after the race.
    """

    study: str
    settings: RaceConfig
    verdict: list[str]
    result: RaceResult
    best: BestTrial | None


def race_settings(spec: SweepSpec, study_name: str, *, max_seeds: int | None = None, max_images: int | None = None,
                  margin: float | None = None, max_total_images: int | None = None,
                  alpha: float | None = None) -> RaceConfig:
    """The race's settings: each one given, else the spec's ``race:``, else :class:`RaceConfig`'s default.

    Raises:
        ConfigError: ``max_seeds`` < 2, ``margin`` <= 0, ``max_images`` below the study's ``train_samples``,
            ``max_total_images`` < 1 (the message names the command's option).

    >>> from betasweep.api import race_settings, resolve_spec
    >>> race_settings(resolve_spec(None), "shapes-quick", max_seeds=4).margin
    0.05
    """
    defaults = spec.race or RaceConfig()
    max_seeds = defaults.max_seeds if max_seeds is None else max_seeds
    if max_seeds < 2:
        seeds = f"the study's trials have {spec.seeds_per_trial} seed{'s' if spec.seeds_per_trial > 1 else ''} each"
        raise ConfigError(f"--max-seeds {max_seeds}: {seeds} and a Welch test needs 2 a side; give --max-seeds >= 2 "
                          "so that the race can add seeds")
    if margin is not None and not margin > 0:
        raise ConfigError(f"--margin {margin:g}: expected a margin > 0 in the metric's units (e.g. 0.03)")
    if max_images is not None and max_images < spec.train_samples:
        raise ConfigError(f"--max-images {max_images}: below the {spec.train_samples:,} images each seed of study "
                          f"{study_name!r} already trained; give at least {spec.train_samples}")
    if max_total_images is not None and max_total_images < 1:
        raise ConfigError(f"--max-total-images {max_total_images}: expected a number of images >= 1")
    return RaceConfig(max_seeds=max_seeds, alpha=defaults.alpha if alpha is None else alpha,
                      max_images=defaults.max_images if max_images is None else max_images,
                      margin=defaults.margin if margin is None else margin,
                      max_total_images=defaults.max_total_images if max_total_images is None else max_total_images)


def race(study: str, *, storage: str = DEFAULT_STORAGE, tracking_uri: str | None = None, max_seeds: int | None = None,
         max_images: int | None = None, margin: float | None = None, max_total_images: int | None = None,
         alpha: float | None = None, rank_by: str | None = None, timeout: float | None = None, progress: bool = False,
         heartbeat_interval: int = 60, grace_period: int = 180, checkpoint_dir: str | os.PathLike | None = None,
         jobs: int | str = 1, echo: Echo | None = stderr_echo) -> RaceOutcome:
    """Race the configurations of an existing study until each comparison with the best is decided; as
    ``betasweep race`` (its docstring and :func:`betasweep.sweeps.race.race_study` say how).

    Args:
        study: the name of a study with complete trials, in ``storage``.
        tracking_uri: MLflow store (default: the one the study was created with).
        max_seeds, max_images, margin, max_total_images, alpha: the race's settings (:func:`race_settings`);
            images are images seen per seed, ``margin`` is in the metric's units.
        rank_by: the metric raced on (default the study's objective).
        jobs: processes of one torch thread each that train the race's seeds (N > 1: a journal file or PostgreSQL).

    Returns:
        :class:`RaceOutcome`. A ``KeyboardInterrupt`` is passed on; a race started again resumes.

    Raises:
        ConfigError: a bad setting; StorageError: no such study or its database failed.

    >>> import betasweep as bs
    >>> bs.race("shapes-quick", max_seeds=4).verdict  # doctest: +SKIP
    ['Best configuration by beta_vae: ...', ...]
    """
    say = _echo_of(echo)
    jobs = resolve_jobs(jobs)
    storage = local_storage(storage, jobs)
    the_study, spec = load_study(study, make_storage(storage, tracking_uri=tracking_uri,
                                                     heartbeat_interval=heartbeat_interval, grace_period=grace_period))
    settings = race_settings(spec, study, max_seeds=max_seeds, max_images=max_images, margin=margin,
                             max_total_images=max_total_images, alpha=alpha)
    tracking_uri = tracking_uri or the_study.user_attrs.get(STUDY_TRACKING_URI, DEFAULT_TRACKING_URI)
    say(f"race: study {study!r} ({redact(storage)}), at most {settings.max_seeds} seeds and "
        f"{settings.max_images or spec.train_samples:,} images per seed, margin {settings.margin}, alpha {settings.alpha}")
    with one_thread(jobs > 1), local_workers(jobs - 1, storage=storage, study_name=study, tracking_uri=tracking_uri,
                                             mode="serve", heartbeat_interval=heartbeat_interval,
                                             grace_period=grace_period, checkpoint_dir=checkpoint_dir, echo=say):
        result = race_study(the_study, spec, Tracker(tracking_uri, spec.study), settings, rank_by=rank_by,
                            timeout=timeout, progress=progress, echo=say, checkpoint_dir=checkpoint_dir)
    best = BestTrial.of(the_study, spec) if has_complete_trial(the_study) else None
    return RaceOutcome(study=study, settings=settings, verdict=list(result.lines), result=result, best=best)


@dataclass
class Report:
    """What :func:`report` found and wrote.

    Attributes:
        study: the study's name; spec: its spec; rank_by: the metric ranked by; tracking_uri: its MLflow store.
        verdict: the seeds' verdict in sentences (best configuration, ties, what would decide each comparison).
        configurations: one row per configuration, mean ± SE over seeds, ranked by ``rank_by``.
        spearman: Spearman rank correlations between the panel's metrics over trials (a DataFrame), or the
            reason there are none (a str).
        trials: one row per trial (:func:`betasweep.sweeps.results.trials_frame`), best first.
        best: the best trial; summary: the JSON fields ``betasweep report`` prints (with ``registered_model``
            when the best model was registered).
        reseeded: with ``reseed``: the retrained configurations, best mean first; else None.
        path: the HTML report written; tracker: the study's MLflow tracker (for links).
    """

    study: str
    spec: SweepSpec
    rank_by: str
    tracking_uri: str
    verdict: list[str]
    configurations: pd.DataFrame
    spearman: pd.DataFrame | str
    trials: pd.DataFrame
    best: BestTrial
    summary: dict[str, Any]
    reseeded: pd.DataFrame | None
    path: Path
    tracker: Tracker | None = field(default=None, repr=False)


def report(study: str, *, storage: str = DEFAULT_STORAGE, tracking_uri: str | None = None,
           out: str | os.PathLike | None = None, reseed: int = 0, reseed_top_n: int = 3, gallery: int = 8,
           register: bool = True, rank_by: str | None = None, echo: Echo | None = stderr_echo) -> Report:
    """The verdict, the configurations and the best trial of a study; writes the HTML report (logged to the study's
    MLflow run) and registers the best model as ``betasweep-STUDY@best``; as ``betasweep report``.

    Args:
        study: the name of a study in ``storage``; tracking_uri: default the one it was created with.
        out: the HTML report's path (default ``betasweep-report-STUDY.html``).
        reseed: retrain the ``reseed_top_n`` best configurations with this many more seeds (0: none).
        gallery: embed the traversals of this many top trials (0: numbers only).
        register: register the best trial's checkpoint in the MLflow Model Registry under the alias ``best``.
        rank_by: the panel value to rank by (default the study's objective).

    Raises:
        ConfigError: the study has no complete trial, or ``rank_by`` is not a value the study records.
        StorageError: no such study.

    >>> import betasweep as bs
    >>> found = bs.report("shapes-quick", gallery=0, register=False)  # doctest: +SKIP
    >>> found.configurations[["beta", "beta_vae", "beta_vae_se"]]  # doctest: +SKIP
    """
    the_study, spec = load_study(study, make_storage(storage, tracking_uri=tracking_uri))
    tracking_uri = tracking_uri or the_study.user_attrs.get(STUDY_TRACKING_URI, DEFAULT_TRACKING_URI)
    if not has_complete_trial(the_study):
        raise ConfigError(f"study {study!r} has no complete trial yet")
    rank_by = rank_by or spec.objective
    the_verdict = study_verdict(the_study, spec, rank_by)  # refuses an unknown rank_by before any work
    tracker = Tracker(tracking_uri, spec.study)
    parent = the_study.user_attrs.get(STUDY_PARENT_RUN) or tracker.find_parent_run()
    reseeded = None
    if reseed:
        reseeded = reseed_top(the_study, spec, reseed, top=reseed_top_n, echo=_echo_of(echo),
                              log_run=_reseed_logger(tracker, parent, the_study, spec))
    path = Path(out) if out is not None else Path(f"betasweep-report-{study}.html")
    pictures = fetch_pictures(the_study, spec, tracker, gallery=gallery) if gallery else None
    write_report(the_study, spec, path, reseed=reseeded, rank_by=rank_by, pictures=pictures)
    if parent:
        tracker.client.log_artifact(parent, str(path), "report")
    best = BestTrial.of(the_study, spec)
    fields = summary(the_study, spec)
    if register and best.mlflow_run_id:
        name = f"betasweep-{spec.study}"
        version = tracker.register_best(best.mlflow_run_id, name, artifact_path=best.checkpoint.split("/", 2)[2])
        fields["registered_model"] = {"name": name, "alias": "best", "version": version}
    trials = trials_frame(the_study, spec)
    return Report(study=study, spec=spec, rank_by=rank_by, tracking_uri=tracking_uri, verdict=list(the_verdict.lines),
                  configurations=configuration_frame(the_study, spec, rank_by), spearman=spearman_table(the_study, spec),
                  trials=trials, best=best, summary=fields, reseeded=reseeded, path=path,
                  tracker=tracker)


def _reseed_logger(tracker: Tracker, parent: str | None, the_study: optuna.Study, spec: SweepSpec):
    """``log_run`` of :func:`reseed_top`: each retraining as a child run of the study's run, tagged ``betasweep.reseed``."""
    def log_run(trial_number, seed, metrics, files):
        run = tracker.start_trial_run(parent, trial_number, tags={"betasweep.reseed": seed})
        run.log_params({**spec.fixed, **the_study.trials[trial_number].params, "seed": seed})
        run.log_metrics({**metrics, "score": objective_value(metrics, spec.objective)}, step=spec.train_samples)
        for name, path in files.items():
            run.log_artifact(path, artifact_folder(name))
        run.end("FINISHED")

    return log_run


@dataclass(frozen=True)
class CreatedStudy:
    """A study made by :func:`create_study`: its name, storage URL (password hidden), MLflow store and parent run."""

    study: str
    storage: str
    tracking_uri: str
    mlflow_parent_run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (the JSON ``betasweep study create`` prints)."""
        return {"study": self.study, "storage": self.storage, "tracking_uri": self.tracking_uri,
                "mlflow_parent_run_id": self.mlflow_parent_run_id}


def create_study(spec: SweepSpec | dict | str | os.PathLike, *, storage: str | None = None,
                 tracking_uri: str | None = None, exist_ok: bool = False,
                 overrides: dict[str, Any] | None = None) -> CreatedStudy:
    """Create the study of ``spec`` once, for workers (:func:`work`) to share; as ``betasweep study create``.

    The spec and its dataset are checked first (opened as a worker opens it), then the tracking server, so
    bad input writes nothing. A study left without its MLflow parent run is completed by calling again.

    Raises:
        ConfigError, DataError: a bad spec or dataset; StorageError: the study exists (without ``exist_ok``)
        with another spec, or the database failed; TrackingError: the tracking server failed.

    >>> import betasweep as bs
    >>> bs.create_study("examples/shapes-quick.yaml", storage="postgresql+psycopg://db/betasweep")  # doctest: +SKIP
    CreatedStudy(study='shapes-quick', storage='postgresql+psycopg://db/betasweep', ...)
    """
    the_spec = resolve_spec(spec, overrides)
    if the_spec.dataset["name"] != "celeba":  # a worker would fail each trial on a dataset that does not open
        load_spec_data(the_spec)
    elif not Path(the_spec.dataset.get("path") or "").is_dir():
        raise DataError(f"dataset.path {the_spec.dataset.get('path')}: expected the CelebA folder "
                        "(list_attr_celeba.txt, img_align_celeba/)")
    storage_url = storage or DEFAULT_STORAGE
    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    tracker = Tracker(tracking_uri, the_spec.study)
    created = create_optuna_study(the_spec, make_storage(storage_url, tracking_uri=tracking_uri), tracker,
                                  load_if_exists=exist_ok)
    return CreatedStudy(study=created.study_name, storage=redact(storage_url), tracking_uri=tracking_uri,
                        mlflow_parent_run_id=created.user_attrs.get(STUDY_PARENT_RUN))


def open_study(spec: SweepSpec | None, study: str | None = None, *, storage: str, tracking_uri: str | None = None,
               heartbeat_interval: int = 60, grace_period: int = 180) -> tuple[optuna.Study, SweepSpec, Tracker]:
    """The study of ``spec`` (created if missing), else the existing study named ``study``; with its spec and its
    MLflow tracker (``tracking_uri``, default the one the study was created with). What ``betasweep submit``
    opens before it starts workers: it checks that both servers answer.

    Raises:
        StorageError: no such study, or the database failed; TrackingError: the tracking server failed.

    >>> from betasweep.api.study import open_study
    >>> the_study, spec, tracker = open_study(None, "shapes-quick", storage="sqlite:///betasweep.db")  # doctest: +SKIP
    """
    the_storage = make_storage(storage, tracking_uri=tracking_uri, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    if spec is not None:
        tracker = Tracker(tracking_uri or DEFAULT_TRACKING_URI, spec.study)
        return create_optuna_study(spec, the_storage, tracker, load_if_exists=True), spec, tracker
    the_study, spec = load_study(study, the_storage)
    tracker = Tracker(tracking_uri or the_study.user_attrs.get(STUDY_TRACKING_URI, DEFAULT_TRACKING_URI), spec.study)
    return the_study, spec, tracker


@dataclass(frozen=True)
class WorkerResult:
    """What :func:`work` did: ``finished`` (the study reached its target or this worker its limits; False:
    stopped by a signal), the study's MLflow ``tracker`` and its best trial's run (None without one)."""

    finished: bool
    tracker: Tracker
    best_run_id: str | None


def work(study: str, *, storage: str, tracking_uri: str | None = None, max_complete_trials: int | None = None,
         n_trials: int | None = None, timeout: float | None = None, progress: bool = False,
         heartbeat_interval: int = 60, grace_period: int = 180, checkpoint_dir: str | os.PathLike | None = None,
         echo: Echo | None = stderr_echo) -> WorkerResult:
    """Join an existing study and run its trials until the study-wide target; as ``betasweep worker``.

    Args:
        max_complete_trials: the study-wide target of complete trials shared by every worker (0: none;
            default the spec's ``n_trials``).
        n_trials, timeout: this worker's own limits (trials; seconds after which it starts none).
        heartbeat_interval, grace_period: seconds between heartbeats; seconds without one after which a
            trial counts as dead and is retried.

    Raises:
        StorageError: the study's database failed or went away (its running trial is retried elsewhere).
        TrackingError: the tracking server failed or went away.

    >>> import betasweep as bs
    >>> bs.work("shapes-quick", storage="postgresql+psycopg://db/betasweep").finished  # doctest: +SKIP
    True
    """
    the_storage = make_storage(storage, tracking_uri=tracking_uri, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    try:
        the_study, spec = load_study(study, the_storage, seed_offset=worker_seed_offset())
        warn_if_shared_sqlite(storage, the_study, worker=True, echo=_echo_of(echo))
        tracking_uri = tracking_uri or the_study.user_attrs.get(STUDY_TRACKING_URI, DEFAULT_TRACKING_URI)
        tracker = Tracker(tracking_uri, spec.study)
        target = spec.n_trials if max_complete_trials is None else (max_complete_trials or None)
        finished = run_trials(the_study, spec, tracker, n_trials=n_trials, timeout=timeout, max_complete=target,
                              progress=progress, echo=_echo_of(echo), checkpoint_dir=checkpoint_dir)
    except Exception as error:
        lost = storage_failure(error)
        if lost is not None:
            raise StorageError(f"worker lost the study's database {redact(storage)} ({root_cause(lost)}); its running "
                               f"trial is retried by another worker after the grace period; restart this worker "
                               f"when the database is back") from None
        if isinstance(error, MlflowException):
            raise TrackingError(f"worker lost the tracking server {tracking_uri} ({root_cause(error)})") from None
        raise
    best = BestTrial.of(the_study, spec).mlflow_run_id if has_complete_trial(the_study) else None
    return WorkerResult(finished=bool(finished), tracker=tracker, best_run_id=best)


def root_cause(error: BaseException) -> str:
    """The root of an exception chain, one line (at most 300 characters)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
