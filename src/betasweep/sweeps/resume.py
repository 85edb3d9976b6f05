"""A retried trial continues from its failed attempt: finished seeds are kept, the interrupted one resumes.

Every seed of a trial checkpoints as it trains (``checkpoint_every`` steps, ``checkpoint_minutes``
of wall time, and at its end) to a place every worker can read:

- the trial's MLflow run (default): artifact ``<prefix>checkpoint/checkpoint.pt`` (``prefix`` is
  ``seed-i/`` with several seeds), uploaded after each checkpoint and overwritten by the next, so a
  tracking server that proxies artifacts makes it readable from any machine;
- or ``--checkpoint-dir DIR`` on a filesystem the workers share:
  ``DIR/<study>/trial-<number>/seed-<i>/checkpoint.pt``, written in place (atomically).

After each seed finishes, its metrics go into the trial's user attribute ``seeds_done``
(``{"<i>": {"metrics": ..., "run_id": ..., "intermediate": {fraction: score}}}``), and after each
checkpoint its step into ``checkpoint_steps`` (``{"<i>": step}``).

A retry (a trial re-queued by a graceful stop, user attribute ``retried_from``, or by Optuna's
heartbeat retry, system attribute ``retry_history``) trains the seeds of the attempt it retries
(``seeds``); for each seed, newest attempt first along the chain of attempts, it takes a finished
seed's metrics and artifacts (re-logged to its own run; not retrained), else the latest
checkpoint that loads and fits the seed's configs. A checkpoint that does not load is skipped with
one logged line (the seed restarts from step 0 if none is left). The chain is recorded: user
attributes ``attempt_of`` (the previous attempt's number) and ``resumed`` (``{"<i>": {"attempt":
n, "step": s, "finished": bool}}``), and MLflow tags ``betasweep.attempt_of_trial`` and
``betasweep.attempt_of_run`` on the retry's run.

Pruning: the cheap scores of finished seeds are carried over; a seed resumed at step ``s`` scores
the fractions of its budget it passed before ``s`` at its first record after ``s`` (with the
resumed model), not at the step they fell on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import optuna

from betasweep.errors import BetasweepError, DataError
from betasweep.models import resolve_conditioning
from betasweep.sweeps.spec import build_configs
from betasweep.training import load_checkpoint, read_checkpoint
from betasweep.sweeps.records import (ATTEMPT_OF, CHECKPOINT_STEPS, MLFLOW_RUN_ID, RESUMED, RETRIED_FROM, SEEDS, SEEDS_DONE)

__all__ = ["Resume", "previous_attempt", "SEEDS_DONE_ATTR", "CHECKPOINT_STEPS_ATTR", "RESUMED_ATTR", "ATTEMPT_ATTR"]

SEEDS_DONE_ATTR, CHECKPOINT_STEPS_ATTR, RESUMED_ATTR, ATTEMPT_ATTR = SEEDS_DONE, CHECKPOINT_STEPS, RESUMED, ATTEMPT_OF
ATTEMPT_TRIAL_TAG, ATTEMPT_RUN_TAG = "betasweep.attempt_of_trial", "betasweep.attempt_of_run"
MAX_CHAIN = 50

_log = logging.getLogger(__name__)


def previous_attempt(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the attempt ``trial`` retries, or None.

    Optuna's heartbeat retry copies the dead trial's attributes and appends its number to the
    system attribute ``retry_history`` (its last entry is the attempt right before); a graceful
    stop re-queues with the user attribute ``retried_from`` only (no ``retry_history``). So
    ``retry_history`` decides where present, ``retried_from`` otherwise.
    """
    history = trial.system_attrs.get("retry_history") or []
    if history:
        return int(history[-1])
    number = trial.user_attrs.get(RETRIED_FROM)
    return None if number is None else int(number)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready Python (numpy scalars unwrapped, tuples as lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class Resume:
    """What one trial takes over from its earlier attempts, and how it checkpoints for its own retries.

    Build with :meth:`of`. With no earlier attempt every method is a cheap no-op (``attempts`` is empty).

    Attributes:
        attempts: earlier attempts, newest first (FrozenTrials).
        checkpoint_dir: the shared checkpoint folder, or None (the run's artifacts).
    """

    study_name: str
    number: int
    attempts: list = field(default_factory=list)
    checkpoint_dir: Path | None = None
    tracker: Any = None
    echo: Callable[[str], None] = lambda message: None
    trial: Any = None
    run: Any = None
    resumed: dict[str, dict] = field(default_factory=dict)
    done: dict[str, dict] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, trial, study_name: str, *, checkpoint_dir: str | Path | None = None, tracker=None,
           echo: Callable[[str], None] | None = None) -> "Resume":
        """The resume plan of ``trial`` (an ``optuna.Trial``; a ``FixedTrial`` has no study and no attempts)."""
        attempts = []
        study = getattr(trial, "study", None)
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            by_number = {t.number: t for t in trials}
            previous = previous_attempt(by_number[trial.number]) if trial.number in by_number else None
            while previous is not None and previous in by_number and len(attempts) < MAX_CHAIN:
                if any(a.number == previous for a in attempts):
                    break
                attempts.append(by_number[previous])
                previous = previous_attempt(by_number[previous])
        return cls(study_name, trial.number, attempts, Path(checkpoint_dir) if checkpoint_dir else None, tracker,
                   echo or (lambda message: None))

    # -- what the retry trains ----------------------------------------------------------------------

    def seeds(self, default: list[int]) -> list[int]:
        """The seeds of the attempt this one retries (so its checkpoints fit), else ``default``."""
        for attempt in self.attempts:
            if attempt.user_attrs.get(SEEDS):
                return [int(s) for s in attempt.user_attrs[SEEDS]]
        return default

    def start(self, trial, run) -> None:
        """This attempt's trial and MLflow run; the chain recorded: user attribute ``attempt_of``, the run's
        tags naming the previous attempt (trial number, run id)."""
        self.trial, self.run = trial, run
        if not self.attempts:
            return
        last = self.attempts[0]
        trial.set_user_attr(ATTEMPT_ATTR, last.number)
        tags = {ATTEMPT_TRIAL_TAG: last.number}
        if last.user_attrs.get(MLFLOW_RUN_ID):
            tags[ATTEMPT_RUN_TAG] = last.user_attrs[MLFLOW_RUN_ID]
        run.set_tags(tags)
        self.echo(f"trial {self.number}: attempt {len(self.attempts) + 1} of trial {self.attempts[-1].number} "
                  f"(previous: trial {last.number}, run {tags.get(ATTEMPT_RUN_TAG, '?')})")

    def checkpoint_path(self, index: int, workdir: Path) -> Path:
        """Where seed ``index`` of this attempt checkpoints: the shared folder, else beside its figures."""
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir / self.study_name / f"trial-{self.number}" / f"seed-{index}" / "checkpoint.pt"
        return Path(workdir) / "checkpoint.pt"

    def finished_seed(self, index: int, prefix: str, workdir: Path, intermediate: dict[float, list[float]],
                      *, load_model: bool = False, device: str = "cpu"):
        """A seed an earlier attempt finished: ``(metrics, files, model)`` with its artifacts fetched into
        ``workdir`` (to be logged to this attempt's run), its cheap scores appended to ``intermediate``;
        None if no attempt finished it (or its artifacts cannot be fetched)."""
        for attempt in self.attempts:
            record = (attempt.user_attrs.get(SEEDS_DONE_ATTR) or {}).get(str(index))
            if not record:
                continue
            try:
                files = self._fetch_artifacts(record["run_id"], prefix, Path(workdir))
            except Exception as error:  # noqa: BLE001 (MlflowException, OSError, TrackingError): train it again
                self.echo(f"trial {self.number}: seed {index}: finished in trial {attempt.number} but its artifacts "
                          f"cannot be fetched ({str(error).splitlines()[0][:200]}); training it again")
                return None
            model = None
            if load_model:
                model, _ = load_checkpoint(files["checkpoint"], map_location=device)
            for fraction, score in (record.get("intermediate") or {}).items():
                intermediate.setdefault(float(fraction), []).append(float(score))
            self._resumed(index, {"attempt": attempt.number, "step": record.get("step"), "finished": True})
            if record.get("step") is not None:
                self.steps[str(index)] = int(record["step"])
            self.echo(f"trial {self.number}: seed {index}: finished in trial {attempt.number}; not retrained")
            return dict(record["metrics"]), files, model
        return None

    def _fetch_artifacts(self, run_id: str, prefix: str, workdir: Path) -> dict[str, Path]:
        """The finished seed's checkpoint, figures and naming files from run ``run_id``, keyed as ``train_seed``'s."""
        workdir.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        listed = self.tracker.list_artifacts(run_id, prefix.rstrip("/") or None)
        for folder in ("checkpoint", "figures", "naming"):
            if f"{prefix}{folder}" not in listed:
                continue
            local = self.tracker.download(run_id, f"{prefix}{folder}", workdir)
            for path in sorted(Path(local).iterdir()):
                key = {"checkpoint.pt": "checkpoint", "dimension_names.csv": "naming_csv",
                       "dimension_names.html": "naming_html", "kl_per_dim.png": "kl_chart"}.get(path.name, path.stem)
                files[key] = path
        if "checkpoint" not in files or not {"traversal", "reconstruction"} <= set(files):
            raise BetasweepError(f"run {run_id} lacks {prefix}checkpoint/ or {prefix}figures/")
        return files

    def prepare_checkpoint(self, index: int, prefix: str, path: Path, expected: Callable[[dict], str | None]) -> int:
        """Put the latest usable checkpoint of seed ``index`` from an earlier attempt at ``path``; its step (0: none).

        Args:
            expected: ``expected(state) -> None`` if the checkpoint fits this seed's configs, else why not.
        """
        for attempt in self.attempts:
            with tempfile.TemporaryDirectory(prefix="betasweep-resume-") as tmp:
                try:
                    found = self._fetch_checkpoint(attempt, index, prefix, Path(tmp))
                except Exception as error:  # noqa: BLE001 (the server or folder went away): try an older attempt
                    self.echo(f"trial {self.number}: seed {index}: the checkpoint of trial {attempt.number} cannot be "
                              f"fetched ({str(error).splitlines()[0][:200]}); skipped")
                    continue
                if found is None:
                    continue
                try:
                    state = read_checkpoint(found)
                    why = expected(state)
                except DataError as error:
                    why = f"unreadable ({str(error)[-200:]})"
                if why:
                    self.echo(f"trial {self.number}: seed {index}: skipping the checkpoint of trial {attempt.number}: {why}")
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if Path(found).resolve() != path.resolve():
                    shutil.copyfile(found, path)
                step = int(state["step"])
                self._resumed(index, {"attempt": attempt.number, "step": step, "finished": False})
                self.echo(f"trial {self.number}: seed {index}: resuming at step {step} from the checkpoint of "
                          f"trial {attempt.number}")
                return step
        if self.attempts:
            self._resumed(index, {"attempt": None, "step": 0, "finished": False})
        return 0

    def continue_from(self, source: dict[str, Any], path: Path, expected: Callable[[dict], str | None]) -> int:
        """A race's extension (sweeps/race.py): put the checkpoint of seed ``source["index"]`` of trial
        ``source["trial"]`` (its run ``source["run_id"]``, artifact prefix ``source["prefix"]``), trained to a
        lower rung, at ``path``; its step. The trial then continues it to its own budget.

        Raises:
            BetasweepError: that checkpoint cannot be fetched or does not fit this seed's configs.
        """
        number, index = int(source["trial"]), int(source["index"])
        attempt = SimpleNamespace(number=number, user_attrs={MLFLOW_RUN_ID: source.get("run_id")})
        with tempfile.TemporaryDirectory(prefix="betasweep-extend-") as tmp:
            found = self._fetch_checkpoint(attempt, index, source.get("prefix", ""), Path(tmp))
            if found is None:
                raise BetasweepError(f"trial {number}: seed {index} kept no checkpoint to extend")
            state = read_checkpoint(found)
            why = expected(state)
            if why:
                raise BetasweepError(f"trial {number}: seed {index}: its checkpoint cannot be extended: {why}")
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, path)
        step = int(state["step"])
        self.echo(f"trial {self.number}: extending seed {index} of trial {number} from step {step}")
        return step

    def _resumed(self, index: int, how: dict) -> None:
        self.resumed[str(index)] = how
        self.trial.set_user_attr(RESUMED_ATTR, dict(self.resumed))

    def _fetch_checkpoint(self, attempt, index: int, prefix: str, tmp: Path) -> Path | None:
        if self.checkpoint_dir is not None:
            path = self.checkpoint_dir / self.study_name / f"trial-{attempt.number}" / f"seed-{index}" / "checkpoint.pt"
            if path.is_file():
                return path
        run_id = attempt.user_attrs.get(MLFLOW_RUN_ID)
        if run_id is None or self.tracker is None:
            return None
        listed = self.tracker.list_artifacts(run_id, f"{prefix}checkpoint")
        if f"{prefix}checkpoint/checkpoint.pt" not in listed:
            return None
        return self.tracker.download(run_id, f"{prefix}checkpoint/checkpoint.pt", tmp)

    # -- what this attempt leaves for its own retry ---------------------------------------------------

    def on_checkpoint(self, index: int, prefix: str) -> Callable[[Path, int], None]:
        """The training's ``on_checkpoint``: upload to the run (no shared folder), record the step in the trial."""

        def saved(path: Path, step: int) -> None:
            if self.checkpoint_dir is None:
                self.run.log_artifact(path, prefix + "checkpoint")
            self.steps[str(index)] = int(step)
            self.trial.set_user_attr(CHECKPOINT_STEPS_ATTR, dict(self.steps))

        return saved

    def seed_finished(self, index: int, metrics: dict[str, Any], intermediate: dict[float, list[float]]) -> None:
        """Record seed ``index``'s metrics (and cheap scores) in the trial, so a retry need not train it again;
        its artifacts are in this attempt's run (logged, or re-logged for a seed an earlier attempt finished)."""
        scores = {str(f): float(v[index]) for f, v in intermediate.items() if len(v) > index}
        self.done[str(index)] = {"metrics": _plain(metrics), "run_id": self.run.run_id, "intermediate": scores,
                                 "step": self.steps.get(str(index))}
        self.trial.set_user_attr(SEEDS_DONE_ATTR, dict(self.done))


def fits_configs(spec, params: dict[str, Any], seed: int, data) -> Callable[[dict], str | None]:
    """``expected(state)`` for :meth:`Resume.prepare_checkpoint`: None when the checkpoint was written by a
    run of this seed and these configs, else why not."""
    model_config, train_config = build_configs(spec, params, seed, data.num_channels)
    model_config = resolve_conditioning(model_config, data)

    def expected(state: dict) -> str | None:
        if state.get("model_config") != model_config.to_dict():
            return "its model_config differs from this seed's"
        stored = state.get("train_config") or {}
        for key in ("seed", "batch_size", "beta", "objective", "learning_rate"):
            if key in stored and stored[key] != getattr(train_config, key):
                return f"its train_config {key} {stored[key]!r} differs from this seed's {getattr(train_config, key)!r}"
        if int(state.get("step", 0)) > train_config.num_steps:
            return f"its step {state['step']} is past this seed's budget ({train_config.num_steps} steps)"
        return None

    return expected
