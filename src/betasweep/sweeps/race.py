"""Racing: seeds spent where the answer is undecided.

After a search, the verdict often cannot tell the best configuration from some others. A race adds
seeds one round at a time, only to the configurations not yet distinguishable from the best, drops
those the test separates, and stops when one configuration stands alone, when every remaining one
has ``max_seeds`` seeds, or at a deadline (Maron & Moore 1994, "Hoeffding races"; Birattari et al.
2002, "A racing algorithm for configuring metaheuristics", whose F-race drops candidates by a test
after each round; here the test is the verdict's Welch test against the best,
:func:`betasweep.sweeps.verdict.verdict`). Each round tests again, so the chance of separating two
equal configurations by luck grows with the rounds (about 2-3 times ``alpha`` over 6 rounds, measured
by ``tests/sweeps/test_race.py``); the final verdict states the level per test, not a corrected one.

:func:`run_race` is the race itself, on any source of per-seed values (the tests feed it draws from
known distributions). :func:`race_study` races a study: a round's seeds are Optuna trials queued with
the configuration's params and the user attribute ``race_seeds`` (the next seeds of the
configuration's own ``SeedSequence``: :meth:`~betasweep.sweeps.spec.SweepSpec.seed_at`), which this
process and any ``betasweep worker`` of the study run (PostgreSQL or the gRPC proxy); a killed
worker's trial is retried as any other (heartbeats). The race's state (contenders, rounds) lives in
the study's user attribute ``race``, and the seeds trained or queued are read from the trials, so a
race killed and started again trains no seed twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from betasweep.errors import ConfigError
from betasweep.sweeps.spec import RaceConfig, SweepSpec
from betasweep.sweeps.verdict import MAX_SEEDS_SHOWN, POWER, ConfigResult, Verdict, _pm, seeds_needed, verdict

__all__ = ["RaceRound", "RaceResult", "run_race", "race_study", "check_race", "RACE_ATTR", "race_alive"]

RACE_ATTR = "race"
"""The study user attribute holding the race's state: settings, contenders, rounds, status."""

ALIVE_ATTR = "race_alive"
"""The study user attribute a racing process refreshes (Unix time) while it races: workers wait for its next round."""


@dataclass
class RaceRound:
    """One round's test.

    Attributes:
        number: 0 for the test of the seeds there were before the race, then 1, 2, ...
        verdict: the verdict on the round's contenders (best first).
        kept: keys of the configurations still racing after this round's test.
        dropped: keys separated from the best by this round's test.
        status: ``"continue"``, ``"decided"`` (one configuration left), ``"undecided"`` (no contender
            can get another seed: ``max_seeds`` reached), or ``"stopped"`` (the deadline passed).
    """

    number: int
    verdict: Verdict
    kept: list[str]
    dropped: list[str]
    status: str = "continue"

    def line(self, labels: dict[str, str]) -> str:
        """``round 2: 2 configurations left: trial #1 (beta=4) 0.81 ± 0.01 (4 seeds), ...; dropped ...``."""
        kept = {labels[k] for k in self.kept}
        left = "; ".join(_short(c) for c in self.verdict.configs if c.label in kept)  # best mean first
        text = f"round {self.number}: {len(self.kept)} configuration{'s' if len(self.kept) != 1 else ''} left: {left}"
        if self.dropped:
            text += "; dropped (distinguishably worse than the best): " + ", ".join(labels[k] for k in self.dropped)
        return text


@dataclass
class RaceResult:
    """What a race found; :attr:`lines` says it in words.

    Attributes:
        rounds: every round's test, in order.
        max_seeds, alpha: the race's settings.
        labels: configuration key -> its label in the last round.
    """

    rounds: list[RaceRound]
    max_seeds: int
    alpha: float
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.rounds[-1].status

    @property
    def final(self) -> Verdict:
        return self.rounds[-1].verdict

    @property
    def winner(self) -> ConfigResult | None:
        """The configuration left alone, or None when the race did not decide."""
        return self.final.best if self.status == "decided" else None

    @property
    def lines(self) -> list[str]:
        """The race's final verdict: the winner, or that ``max_seeds`` (or the deadline) did not decide it,
        with the seeds each undecided comparison would need."""
        final, rounds = self.final, len(self.rounds) - 1
        settings = f"at most {self.max_seeds} seeds per configuration, Welch's t-test two-sided {self.alpha:.0%} each round"
        if self.status == "decided":
            return [f"Race ({settings}): {final.best.label} wins after {rounds} round{'s' if rounds != 1 else ''}, "
                    f"{_pm(final.best)}: every other configuration was separated from the best."]
        why = (f"max_seeds = {self.max_seeds} did not decide it" if self.status == "undecided"
               else f"stopped at its deadline after {rounds} round{'s' if rounds != 1 else ''}, undecided")
        lines = [f"Race ({settings}): {why}: {final.best.label} {_pm(final.best)} is still not distinguishable from "
                 + "; ".join(f"{c.a.label} {_pm(c.a)} (p = {c.p_value:.2g})" for c in final.ties) + "."]
        for c in final.ties:
            n = seeds_needed(c)
            lines.append(f"To tell {c.a.label} from {final.best.label} you would need "
                         + (f"about {n} seeds each" if n is not None else f"more than {MAX_SEEDS_SHOWN} seeds each")
                         + f" ({POWER:.0%} power at the observed difference and spread).")
        return lines


def run_race(
    get_configs: Callable[[], dict[str, ConfigResult]],
    add_seeds: Callable[[int, dict[str, ConfigResult]], int | None],
    race: RaceConfig,
    metric: str,
    *,
    contenders: list[str] | None = None,
    first_round: int = 0,
    deadline: float | None = None,
    on_round: Callable[[RaceRound, dict[str, str]], None] | None = None,
) -> RaceResult:
    """Race configurations until one stands alone, ``race.max_seeds`` is reached, or ``deadline``.

    Each round tests the contenders with :func:`~betasweep.sweeps.verdict.verdict` at ``race.alpha``:
    those distinguishably worse than the best are dropped, the best, its ties and the untestable
    (fewer than 2 seeds) stay; then every one left with fewer than ``max_seeds`` seeds gets one more.

    Args:
        get_configs: the per-seed values now, by configuration key (each call re-reads them).
        add_seeds: ``add_seeds(round, needing)`` trains one more seed of each configuration in
            ``needing`` and returns once they are trained: the number of seeds it added (0: none could
            be added), or None when it stopped at the deadline.
        race: ``max_seeds`` and ``alpha``.
        metric: the metric the values are of (higher is better).
        contenders: keys still racing (a resumed race); default every configuration.
        first_round: the number of the first round (a resumed race continues its numbering).
        deadline: ``time.monotonic()`` after which no round starts.
        on_round: called after each round's test with the round and the labels by key.

    Raises:
        ConfigError: a contender already has more than ``max_seeds`` seeds.
    """
    configs = get_configs()
    contenders = [k for k in (contenders or list(configs)) if k in configs]
    check_race(configs, contenders, race)
    rounds: list[RaceRound] = []

    def test(number: int, keys: list[str], status: str | None = None) -> RaceRound:
        """Round ``number``'s verdict on ``keys``: the best, its ties and the untestable stay, the rest drop."""
        current = {k: configs[k] for k in keys}
        labels.clear()
        labels.update({k: c.label for k, c in current.items()})
        result = verdict(list(current.values()), metric, alpha=race.alpha)
        key_of = {c.label: k for k, c in current.items()}
        dropped = [] if status else [key_of[c.a.label] for c in result.apart]
        round_ = RaceRound(number, result, [k for k in keys if k not in dropped], dropped, status or "continue")
        rounds.append(round_)
        return round_

    labels: dict[str, str] = {}
    number = first_round
    while True:
        configs = get_configs()
        round_ = test(number, contenders)
        needing = {k: configs[k] for k in round_.kept if configs[k].n < race.max_seeds}
        if len(round_.kept) == 1:
            round_.status = "decided"
        elif not needing:
            round_.status = "undecided"
        elif deadline is not None and time.monotonic() >= deadline:
            round_.status = "stopped"
        if on_round is not None:
            on_round(round_, labels)
        if round_.status != "continue":
            return RaceResult(rounds, race.max_seeds, race.alpha, dict(labels))
        contenders, number = round_.kept, number + 1
        added = add_seeds(number, needing)
        if not added:  # stopped at the deadline (None) or no seed left to add (0): what was trained still counts
            configs = get_configs()
            final = test(number, contenders, "stopped" if added is None else "undecided")
            if on_round is not None:
                on_round(final, labels)
            return RaceResult(rounds, race.max_seeds, race.alpha, dict(labels))


def check_race(configs: dict[str, ConfigResult], contenders: list[str], race: RaceConfig) -> None:
    """Refuse a race whose ``max_seeds`` is below the seeds a contender already has.

    Raises:
        ConfigError: naming the configuration and its seeds.
    """
    over = [configs[k] for k in contenders if configs[k].n > race.max_seeds]
    if over:
        raise ConfigError(f"--max-seeds {race.max_seeds}: fewer than the {over[0].n} seeds {over[0].label} already "
                          f"has; give at least {max(c.n for c in over)}")


# -- racing a study ------------------------------------------------------------------------------

def config_key(params: dict[str, Any]) -> str:
    """A configuration's key: its searched params, sorted, as text (the report groups trials the same way)."""
    return repr(sorted((k, repr(v)) for k, v in params.items()))


def race_study(
    study: optuna.Study,
    spec: SweepSpec,
    tracker,
    race: RaceConfig,
    *,
    rank_by: str | None = None,
    timeout: float | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    checkpoint_dir: str | None = None,
) -> RaceResult:
    """Race the study's configurations (:func:`run_race`), training each round's seeds as trials.

    A round queues one trial per configuration that needs a seed (its params, user attributes
    ``race_seeds`` = [the configuration's next unused seed of :meth:`SweepSpec.seed_at`] and
    ``race_round``), then runs queued trials in this process until none of the round's trials is
    waiting or running (trials other workers run count the same; a dead worker's trial is failed as
    stale and retried). A seed already trained or queued for the configuration is never queued again,
    so a race started again after a kill resumes where it was. Each round is printed and written to
    the study (user attribute ``race``) and to the study's MLflow run (``race/rounds.txt``, metric
    ``race_configurations_left`` by round).

    Args:
        rank_by: the metric raced on (default the study's objective; any value the study records).
        timeout: seconds after which no trial starts here and no round begins.
        checkpoint_dir: where the trials run here checkpoint their seeds (a filesystem every worker
            shares; default the runs' artifacts), as for ``betasweep worker``.

    Raises:
        ConfigError: the objective is ``udr``, ``rank_by`` is unknown, the study has no complete
            trial, or ``race.max_seeds`` is below the seeds a configuration has.
    """
    from betasweep.sweeps.objective import Objective
    from betasweep.sweeps.report import _groups, configurations, panel_value_keys
    from betasweep.sweeps.study import _requeue_interrupted, _run_one, _start_gate

    echo = echo or (lambda message: None)
    metric = rank_by or spec.objective
    if spec.objective == "udr":
        raise ConfigError("race: the objective udr compares a trial's models with each other; a seed added by the race "
                          "has no UDR of its own")
    keys = panel_value_keys(spec)
    if metric not in keys:
        raise ConfigError(f"--rank-by {metric!r}: this study records {', '.join(keys)}")
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"study {study.study_name!r} has no complete trial to race")

    def groups() -> dict[str, tuple[dict[str, Any], list]]:
        return {config_key(params): (params, trials) for params, trials in _groups(study, spec)}

    def get_configs() -> dict[str, ConfigResult]:
        return {config_key(params): config for (params, _), config in zip(_groups(study, spec),
                                                                            configurations(study, spec, metric))}

    state = study.user_attrs.get(RACE_ATTR) or {}
    resumed = state.get("metric") == metric and state.get("alpha") == race.alpha and state.get("contenders")
    contenders = list(state["contenders"]) if resumed else None
    first_round = int(state["round"]) if resumed else 0
    if resumed:
        echo(f"race: resuming after round {first_round} ({len(contenders)} configurations left)")
    state = {"metric": metric, "alpha": race.alpha, "max_seeds": race.max_seeds, "status": "running",
             "round": first_round, "contenders": contenders, "rounds": list(state.get("rounds", [])) if resumed else []}
    parent = study.user_attrs.get("mlflow_parent_run_id") or tracker.find_parent_run()
    objective = Objective(spec, tracker, parent, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir) if parent else None
    deadline = None if timeout is None else time.monotonic() + timeout

    def on_round(round_: RaceRound, labels: dict[str, str]) -> None:
        line = round_.line(labels)
        echo(f"race {line}")
        state.update(round=round_.number, contenders=round_.kept, status=round_.status)
        state["rounds"].append(line)
        study.set_user_attr(RACE_ATTR, state)
        if parent:
            with contextlib.suppress(Exception):  # the study holds the rounds; the run's copy is a convenience
                tracker.client.log_text(parent, "\n".join(state["rounds"]) + "\n", "race/rounds.txt")
                tracker.client.log_metric(parent, "race_configurations_left", len(round_.kept), step=round_.number)

    def add_seeds(number: int, needing: dict[str, ConfigResult]) -> int | None:
        queued = 0
        by_key = groups()
        for key in needing:
            params, trials = by_key[key]
            seed = _next_seed(study, spec, params, trials, race.max_seeds)
            if seed is None:
                continue
            if seed is not False:
                study.enqueue_trial(params, user_attrs={"race_seeds": [seed], "race_round": number})
                echo(f"race round {number}: queued {needing[key].label} with seed {seed}")
            queued += 1
        if queued and not _drive(number):
            return None
        return queued

    def _drive(number: int) -> bool:
        """Run queued trials here until none of round ``number`` waits or runs; False at the deadline."""
        if objective is None:
            raise ConfigError(f"study {study.study_name!r} has no MLflow parent run; create it with `betasweep study create`")
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's race trial is retried
            trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
            if not any(t.user_attrs.get("race_round") == number for t in trials):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            ran = False
            with _start_gate(study, 0) as gate:  # on PostgreSQL: no other worker pops the trial between look and start
                if any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
                    try:
                        _run_one(study, objective, gate.release, echo)
                    except KeyboardInterrupt:
                        _requeue_interrupted(study, objective.current_trial, echo=echo)
                        raise
                    ran = True
            if not ran:
                time.sleep(_poll_s(study))

    stop = threading.Event()
    alive = threading.Thread(target=_keep_alive, args=(study, stop), daemon=True)
    alive.start()
    try:
        result = run_race(get_configs, add_seeds, race, metric, contenders=contenders, first_round=first_round,
                          deadline=deadline, on_round=on_round)
    finally:
        stop.set()
        alive.join(timeout=5)
        if state["status"] == "running":  # interrupted: a later race resumes from the last round
            state["status"] = "stopped"
            with contextlib.suppress(Exception):
                study.set_user_attr(RACE_ATTR, state)
    for line in result.lines:
        echo(line)
    return result


def _next_seed(study: optuna.Study, spec: SweepSpec, params: dict[str, Any], trials: list, max_seeds: int):
    """The configuration's next seed to queue: ``False`` when one is already queued or running (a resumed
    round), None when none is left (``2 * max_seeds`` seeds tried: its seeds keep failing), else the seed."""
    same = [t for t in study.get_trials(deepcopy=False) if t.params == params]
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) and "race_seeds" in t.user_attrs for t in same):
        return False
    used = {int(s) for t in same for s in (t.user_attrs.get("race_seeds") or t.user_attrs.get("seeds") or [])}
    first = min(t.number for t in trials)
    for index in range(2 * max_seeds):
        seed = spec.seed_at(first, index)
        if seed not in used:
            return seed
    return None


def _poll_s(study: optuna.Study) -> float:
    interval = getattr(study._storage, "get_heartbeat_interval", lambda: None)() or 5.0
    return min(float(interval), 5.0)


def _keep_alive(study: optuna.Study, stop: threading.Event) -> None:
    """Refresh :data:`ALIVE_ATTR` while the race runs, so waiting workers know a next round may come."""
    interval = _poll_s(study)
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a database hiccup: the next refresh is in a few seconds
            study.set_user_attr(ALIVE_ATTR, time.time())
        stop.wait(interval)


def race_alive(study: optuna.Study, grace_period: float) -> bool:
    """Whether a race of ``study`` is running and its process refreshed :data:`ALIVE_ATTR` within ``grace_period``
    seconds: a worker with nothing to run then waits for the race's next round instead of stopping."""
    attrs = study.user_attrs
    state = attrs.get(RACE_ATTR) or {}
    return state.get("status") == "running" and time.time() - float(attrs.get(ALIVE_ATTR, 0)) < grace_period


def _short(config: ConfigResult) -> str:
    return f"{config.label} {config.mean:.4f}" + (f" ± {config.se:.4f}" if config.n >= 2 else "") + f" ({config.n} seeds)"

