"""The race's rules: seeds and images spent where the answer is undecided, until each comparison is decided.

After a search, the verdict often cannot tell the best configuration from some others. A race spends
compute round by round only on the configurations not yet decided (Maron & Moore 1994, "Hoeffding
races"; Birattari et al. 2002, F-race), in the currency that decides: more seeds, or more images.

Rungs. Every seed is scored with the full panel at rungs of images seen: the trials' ``train_samples``
(rung 0), then doubling up to ``race.max_images`` per seed (e.g. 24,000, 48,000, ..., 384,000). A round
works at one rung: every contender's seeds have a value there. It either *extends* every seed of every
contender to the next rung (each continued from its checkpoint: no image trained twice, the weights those
of a seed trained to that budget straight through) or *adds seeds* at this rung (new seeds trained to
it, scored at every rung on the way).

Tests (:func:`decide`). Configurations trained on the same seeds (``seed.policy: fixed``: same
initialisation and data order) are compared paired (``scipy.stats.ttest_rel``), otherwise by Welch's
test, each against the best. Below the last rung a ranking is not yet one at ``max_images`` (seeds
still on the mean-image plateau, factors not yet learnt), so each comparison is tested twice, both
must agree: on the values at this rung, and on each seed's value *projected* to ``max_images``
(its value here plus its change over the last doubling times the doublings left, linear in log2
images: for a saturating curve it overstates what is left to change). At rung 0 (no change seen yet)
nothing below ``max_images`` is decided.

- *worse*: the two-sided test separates it from the best (both tests), at the round's level after
  Holm's correction over the round's comparisons (``statsmodels.stats.multitest``). The round's level
  is an increment of an alpha-spending function (:func:`~betasweep.sweeps.verdict.spent_alpha`,
  Pocock-type, Lan & DeMets 1983) of the information used, ``n·(k + 1) / (max_seeds·rungs)`` (``n``
  the fewest seeds of a contender, ``k`` the rung's index): the levels of all rounds add up to at most
  ``alpha``, so the race's chance of ever separating two equal configurations is at most ``alpha``
  (union bound). No alpha is spent before every contender has 3 seeds (:data:`MIN_TEST_SEEDS`).
- *equivalent*: with ``race.margin``, two one-sided tests (TOST: ``ttost_paired`` / ``ttost_ind``) put
  the difference within ±margin at ``1 - 2·alpha`` (both tests); it leaves the race as a co-winner.
  Equivalence is tested at ``alpha`` each round (not spent: the level bounds false *separation*).
- *undecided*: neither; it stays, with the seeds or images that would decide it.

Extend or add seeds (:func:`next_step`), for the undecided comparisons, comparing the images each way
is expected to take to a decision:

1. below ``max_images``, at rung 0 (no change of the gap seen yet): extend;
2. fewer than 3 seeds a side (:data:`MIN_TEST_SEEDS`): add seeds up to 3;
3. if the rungs say a gap is still changing (the paired change of some undecided gap over the last
   doubling has a 95% interval that excludes 0: its power is measured by ``benchmarks/decide.py``): extend;
4. otherwise, with ``n*`` the seeds each at which the cheapest undecided comparison would be decided with
   80% power at this rung (both its tests, here and projected; :func:`~betasweep.sweeps.verdict.seeds_to_decide`,
   none above ``max_seeds``) and ``n_here`` the same for the test here alone: adding seeds costs
   ``E_seeds = Σ (n* - n) · rung`` images, extending ``E_extend = Σ n · (next - rung) + Σ (n_here - n) · next``
   (the next rung, then the seeds its test alone would still need there). Add seeds when ``E_seeds <
   E_extend``, else extend;
5. at ``max_images``: add seeds (up to ``n*``, at least one more each) until ``max_seeds``; then the race
   stops undecided.

The race stops *decided* when no comparison is undecided, at ``max_seeds`` and ``max_images``
(undecided), at ``race.max_total_images`` images trained by the race (``budget``), or at a deadline.

Costs. Each configuration's images trained and CPU/GPU seconds (its complete trials') are read with
its values, printed each round, and given in the final verdict beside the fixed design's images
(every configuration at ``max_seeds`` seeds and ``max_images`` images).

:func:`run_race` is the race itself, on any source of per-seed values (tests and
``benchmarks/decide.py`` feed it simulated learning curves); nothing here reads a study.
:func:`betasweep.sweeps.race.race_study` races a study: its
tasks are Optuna trials (a seed trained to rung 0: user attributes ``race_seeds``, ``race_images``; an
extension: also ``race_from`` = the trial and seed index whose checkpoint it continues), which this
process and any ``betasweep worker`` of the study run (PostgreSQL, the gRPC proxy, a Slurm array); a
killed worker's task is retried from its own latest checkpoint (heartbeats; sweeps/resume.py). The
race's state lives in the study's user attribute ``race``; a task already done or queued (user
attribute ``race_task``) is never queued again, so a race killed and started again trains no image twice
(up to the last checkpoint of a task killed mid-way).
"""


from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from betasweep.errors import ConfigError
from betasweep.sweeps.spec import RaceConfig
from betasweep.sweeps.verdict import (Comparison, ConfigResult, compare, equivalence_p, holm, seeds_to_decide,
                                      spent_alpha)

__all__ = ["ConfigRungs", "Decision", "RaceRound", "RaceResult", "run_race", "check_race", "rungs_of", "decide",
           "next_step", "MIN_TEST_SEEDS", "WORDS"]


WORDS = ("worse", "equivalent", "undecided")

MIN_TEST_SEEDS = 3
"""Seeds a side before a round spends any alpha: a paired test on 2 seeds (1 df) at a spent level of a few
thousandths has next to no power, so testing there would only waste the level later rounds need."""


def rungs_of(first: int, max_images: int | None) -> tuple[int, ...]:
    """Images seen per seed at each rung: ``first``, then doubling up to ``max_images`` (the last may be less
    than a doubling); ``(first,)`` when ``max_images`` is None or ``first``."""
    rungs = [int(first)]
    while max_images is not None and rungs[-1] < max_images:
        rungs.append(min(2 * rungs[-1], int(max_images)))
    return tuple(rungs)


@dataclass
class ConfigRungs:
    """One configuration's per-seed values at each rung, and what it cost so far.

    Attributes:
        label: e.g. ``"trial #1 (beta=4)"``.
        values: ``{seed: {images seen: value}}`` (seeds in the order they were trained).
        beta: its β, or None.
        images: training images it consumed (every complete trial of it, the race's and the search's).
        cpu_s, gpu_s: CPU seconds (process time) and seconds on a GPU its trials spent.
    """

    label: str
    values: dict[int, dict[int, float]] = field(default_factory=dict)
    beta: float | None = None
    images: int = 0
    cpu_s: float = 0.0
    gpu_s: float = 0.0

    def seeds_at(self, images: int) -> list[int]:
        return [s for s, at in self.values.items() if images in at]

    def at(self, images: int) -> ConfigResult:
        """Its values at rung ``images`` (seeds scored there), as a :class:`ConfigResult` with their seeds."""
        seeds = self.seeds_at(images)
        return ConfigResult(self.label, tuple(self.values[s][images] for s in seeds), beta=self.beta, seeds=tuple(seeds))

    def projected(self, rungs: tuple[int, ...], k: int) -> ConfigResult | None:
        """Each seed's value at rung ``k`` plus its change since rung ``k - 1`` times the doublings left to
        the last rung (per doubling: the change divided by ``log2(rung_k / rung_{k-1})``); its value at the
        last rung itself; None at rung 0 below the last (no change seen)."""
        if k == len(rungs) - 1:
            return self.at(rungs[k])
        if k == 0:
            return None
        here, before = rungs[k], rungs[k - 1]
        left = math.log2(rungs[-1] / here) / math.log2(here / before)
        seeds = [s for s in self.seeds_at(here) if before in self.values[s]]
        values = tuple(self.values[s][here] + left * (self.values[s][here] - self.values[s][before]) for s in seeds)
        return ConfigResult(self.label, values, beta=self.beta, seeds=tuple(seeds))

    def change(self, rungs: tuple[int, ...], k: int) -> ConfigResult | None:
        """Each seed's change of value over the last doubling, from rung ``k - 1`` to ``k``; None at rung 0."""
        if k == 0:
            return None
        here, before = rungs[k], rungs[k - 1]
        seeds = [s for s in self.seeds_at(here) if before in self.values[s]]
        per = math.log2(here / before)
        return ConfigResult(self.label, tuple((self.values[s][here] - self.values[s][before]) / per for s in seeds),
                            seeds=tuple(seeds))


@dataclass
class Decision:
    """One configuration against the best in one round.

    Attributes:
        key: the configuration's key.
        word: ``"worse"``, ``"equivalent"`` or ``"undecided"``.
        comparison: the test on the values at the round's rung (``a``: it, ``b``: the best), interval at
            ``1 - level``; None when either has fewer than 2 seeds.
        projected: the same on the values projected to the last rung (None at rung 0 below it).
        p_worse: the larger p of the rung's and the projected two-sided test (before Holm).
        p_equivalent: the larger TOST p of the two (1.0 without a margin).
        images: the rung.
        need: for an undecided one, what would decide it (``"about 5 seeds each at 96,000 images"``,
            ``"extending to 192,000 images"``).
    """

    key: str
    word: str
    comparison: Comparison | None
    p_worse: float = 1.0
    p_equivalent: float = 1.0
    images: int = 0
    need: str = ""
    projected: Comparison | None = None

    def text(self, labels: dict[str, str], margin: float | None) -> str:
        c = self.comparison
        name = labels.get(self.key, self.key)
        if c is None:
            return f"{name}: undecided (fewer than 2 seeds at {self.images:,} images)"
        if self.word == "worse":
            return (f"{name}: worse by {c.difference:+.4f}, {1 - c.alpha:.1%} interval [{c.low:+.4f}, {c.high:+.4f}] "
                    f"({c.test}, {c.df + 1 if c.test == 'paired' else c.a.n:.0f} seeds, at {self.images:,} images)")
        if self.word == "equivalent":
            return (f"{name}: equivalent (within ±{margin:g}: Δ {c.difference:+.4f}, TOST p = {self.p_equivalent:.2g}, "
                    f"{c.test}, at {self.images:,} images)")
        return (f"{name}: undecided (Δ {c.difference:+.4f}, p = {self.p_worse:.2g}"
                + (f", TOST p = {self.p_equivalent:.2g}" if margin else "") + f", at {self.images:,} images)"
                + (f": {self.need} would decide it" if self.need else ""))


@dataclass
class RaceRound:
    """One round: its test and what it did next.

    Attributes:
        number: 0 for the first test, then 1, 2, ...
        images: the rung (images seen per seed) it tested at.
        level: the two-sided level its separation tests used (its increment of the spent alpha), 0 when
            nothing was testable.
        configs: the contenders at the rung, best (by projected mean) first.
        decisions: key -> :class:`Decision` for every contender but the best.
        best: the best's key.
        kept: keys still racing after it.
        action: ``"extend"`` (to ``next_images``), ``"seeds"`` (to ``next_seeds`` each) or None.
        status: ``"continue"``, ``"decided"``, ``"undecided"`` (``max_seeds`` and ``max_images`` reached),
            ``"budget"`` (``max_total_images``) or ``"stopped"`` (deadline).
        cost: {"images", "cpu_s", "gpu_s"} in all, after the round's test.
    """

    number: int
    images: int
    level: float
    configs: list[ConfigResult]
    decisions: dict[str, Decision]
    best: str
    kept: list[str]
    action: str | None = None
    next_images: int | None = None
    next_seeds: int | None = None
    status: str = "continue"
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def dropped(self) -> list[str]:
        return [k for k, d in self.decisions.items() if d.word == "worse"]

    @property
    def equivalent(self) -> list[str]:
        return [k for k, d in self.decisions.items() if d.word == "equivalent"]

    def line(self, labels: dict[str, str], margin: float | None = None) -> str:
        """``round 2 at 48,000 images (level 0.0031): best ...; <each decision>; next: ...; cost ...``."""
        by_label = {c.label: c for c in self.configs}
        best = by_label.get(labels.get(self.best, self.best))
        text = (f"round {self.number} at {self.images:,} images (level {self.level:.2g}): best {labels.get(self.best, self.best)}"
                + (f" {best.mean:.4f}" + (f" ± {best.se:.4f}" if best.n >= 2 else "") + f" ({best.n} seeds)" if best else ""))
        for decision in self.decisions.values():
            text += "; " + decision.text(labels, margin)
        if self.action == "extend":
            text += f"; next: every seed of {len(self.kept)} configurations extended to {self.next_images:,} images"
        elif self.action == "seeds":
            text += f"; next: {self.next_seeds} seeds each at {self.images:,} images"
        elif self.status != "continue":
            text += f"; {self.status}"
        if self.cost:
            text += (f"; spent so far {self.cost['images']:,.0f} images, {self.cost['cpu_s']:,.0f} CPU s, "
                     f"{self.cost['gpu_s']:,.0f} GPU s")
        return text


@dataclass
class RaceResult:
    """What a race found; :attr:`lines` says it in words.

    Attributes:
        rounds: every round's test, in order.
        race: the race's settings; rungs: its rungs.
        labels: configuration key -> its label.
        outcome: key -> the last :class:`Decision` on it (the best has none).
        winner: the best's key in the last round.
        table: the per-seed values and costs at the end.
        race_images: images the race itself trained (its rounds).
    """

    rounds: list[RaceRound]
    race: RaceConfig
    rungs: tuple[int, ...]
    labels: dict[str, str] = field(default_factory=dict)
    outcome: dict[str, Decision] = field(default_factory=dict)
    winner: str | None = None
    table: dict[str, ConfigRungs] = field(default_factory=dict)
    race_images: int = 0

    @property
    def status(self) -> str:
        return self.rounds[-1].status

    @property
    def max_seeds(self) -> int:
        return self.race.max_seeds

    @property
    def alpha(self) -> float:
        return self.race.alpha

    @property
    def images(self) -> int:
        return int(sum(c.images for c in self.table.values()))

    @property
    def fixed_design_images(self) -> int:
        """Images of the fixed design: every configuration at ``max_seeds`` seeds and the last rung."""
        return len(self.table) * self.race.max_seeds * self.rungs[-1]

    def words(self) -> dict[str, str]:
        """key -> ``"best"``, ``"worse"``, ``"equivalent"`` or ``"undecided"``."""
        return {k: ("best" if k == self.winner else self.outcome[k].word if k in self.outcome else "undecided")
                for k in self.table}

    @property
    def lines(self) -> list[str]:
        """The race's verdict: settings, the best, one of the three words for every other configuration, and the cost."""
        race, labels = self.race, self.labels
        settings = (f"at most {race.max_seeds} seeds and {self.rungs[-1]:,} images per seed"
                    + (f", margin ±{race.margin:g}" if race.margin else "")
                    + f"; overall level {race.alpha:.0%} spent over the rounds, Holm within a round"
                    + (", TOST for equivalence" if race.margin else ""))
        rounds = self.rounds[-1].number  # rounds after the first test, a resumed race's earlier ones included
        how = {"decided": f"decided after {rounds} round{'s' if rounds != 1 else ''}",
               "undecided": "max_seeds and max_images reached, not every comparison decided",
               "budget": "stopped at its image budget (max_total_images)",
               "stopped": f"stopped at its deadline after {rounds} round{'s' if rounds != 1 else ''}",
               "running": "interrupted"}.get(self.status, self.status)
        best = self.rounds[-1].configs[0] if self.rounds[-1].configs else None
        lines = [f"Race ({settings}): {how}; best: {labels.get(self.winner, self.winner)}"
                 + (f", {best.mean:.4f}" + (f" ± {best.se:.4f}" if best.n >= 2 else "")
                    + f" ({best.n} seeds at {self.rounds[-1].images:,} images)" if best else "") + "."]
        for key in self.table:
            if key == self.winner:
                continue
            decision = self.outcome.get(key)
            lines.append(decision.text(labels, race.margin) + "." if decision else f"{labels.get(key, key)}: undecided.")
        total = {"images": sum(c.images for c in self.table.values()), "cpu_s": sum(c.cpu_s for c in self.table.values()),
                 "gpu_s": sum(c.gpu_s for c in self.table.values())}
        lines.append(f"Cost: {total['images']:,} images trained, {total['cpu_s']:,.0f} CPU s, {total['gpu_s']:,.0f} GPU s "
                     f"in all ({self.race_images:,} images by the race); by configuration: "
                     + "; ".join(f"{labels.get(k, k)} {c.images:,} images, {c.cpu_s:,.0f} CPU s" for k, c in self.table.items())
                     + f". The fixed design ({len(self.table)} configurations × {race.max_seeds} seeds × "
                       f"{self.rungs[-1]:,} images) would train {self.fixed_design_images:,} images "
                       f"({total['images'] / max(self.fixed_design_images, 1):.2f}x of it here).")
        return lines


def decide(contenders: dict[str, ConfigRungs], rungs: tuple[int, ...], k: int, race: RaceConfig, level: float,
           *, pair: bool = False) -> tuple[str, dict[str, Decision], list[ConfigResult]]:
    """Round tests at rung ``k`` (see the module docstring): the best by projected mean, and for each other
    contender its :class:`Decision`.

    Returns:
        ``(best key, {key: Decision}, contenders' values at the rung, best first)``.
    """
    images = rungs[k]
    here = {key: c.at(images) for key, c in contenders.items()}
    ahead = {key: c.projected(rungs, k) for key, c in contenders.items()}
    score = {key: (ahead[key].mean if ahead[key] is not None and ahead[key].n else here[key].mean) for key in contenders}
    order = sorted(contenders, key=lambda key: (-score[key], contenders[key].label))
    best = order[0]
    decisions: dict[str, Decision] = {}
    p_values: list[float] = []
    testable: list[str] = []
    for key in order[1:]:
        comparison = compare(here[key], here[best], level if level > 0 else race.alpha, pair=pair)
        decision = Decision(key, "undecided", comparison, images=images)
        decisions[key] = decision
        if comparison is None or ahead[key] is None or ahead[best] is None:
            continue
        projected = compare(ahead[key], ahead[best], race.alpha, pair=pair)
        decision.projected = projected
        if projected is None:
            continue
        same_sign = comparison.difference < 0 and projected.difference < 0
        decision.p_worse = max(comparison.p_value, projected.p_value) if same_sign else 1.0
        if race.margin:
            decision.p_equivalent = max(equivalence_p(compare(here[key], here[best], race.alpha, pair=pair), race.margin),
                                        equivalence_p(projected, race.margin))
        p_values.append(decision.p_worse)
        testable.append(key)
    rejected = holm(p_values, level) if level > 0 else [False] * len(p_values)
    for key, reject in zip(testable, rejected):
        decision = decisions[key]
        if reject:
            decision.word = "worse"
        elif race.margin and decision.p_equivalent < race.alpha:
            decision.word = "equivalent"
    return best, decisions, [here[key] for key in order]


def next_step(contenders: dict[str, ConfigRungs], best: str, decisions: dict[str, Decision], rungs: tuple[int, ...],
              k: int, race: RaceConfig, level: float, *, pair: bool = False) -> tuple[str | None, int | None]:
    """Extend or add seeds (the rule of the module docstring) for the undecided comparisons.

    Returns:
        ``("extend", next rung's images)``, ``("seeds", seeds per configuration)`` or ``(None, None)`` when
        neither is possible (``max_seeds`` and ``max_images`` reached). Each undecided :class:`Decision`
        gets its ``need``.
    """
    undecided = [d for d in decisions.values() if d.word == "undecided"]
    images = rungs[k]
    seeds = {key: len(c.seeds_at(images)) for key, c in contenders.items()}
    fewest, most = min(seeds.values()), max(seeds.values())
    top = k == len(rungs) - 1
    if fewest < 2 or (fewest < MIN_TEST_SEEDS and (top or k > 0)):  # too few seeds a side to test (MIN_TEST_SEEDS)
        target = min(race.max_seeds, MIN_TEST_SEEDS)
        if target > fewest:
            for d in undecided:
                d.need = f"{target} seeds each at {images:,} images"
            return "seeds", target
    def seeds_for(comparison: Comparison | None) -> float:
        if comparison is None:
            return math.inf
        n = seeds_to_decide(comparison, max(level, 1e-4), margin=race.margin, limit=race.max_seeds,
                            equivalence_alpha=race.alpha)
        return math.inf if n is None else n

    # Seeds each that would decide the cheapest undecided comparison: both tests (here and projected), the test here alone.
    needed = needed_here = math.inf
    changing = False
    for d in undecided:
        here = seeds_for(d.comparison)
        needed_here = min(needed_here, here)
        needed = min(needed, max(here, seeds_for(d.projected) if d.projected is not None else (here if top else math.inf)))
        if k > 0 and not top:
            a, b = contenders[d.key].change(rungs, k), contenders[best].change(rungs, k)
            trend = compare(a, b, race.alpha, pair=pair) if a is not None and b is not None else None
            if trend is not None and (trend.low > 0 or trend.high < 0):
                changing = True
    if not top:
        after = rungs[k + 1]
        more = lambda n: sum(max(0, n - have) for have in seeds.values())  # noqa: E731
        cost_seeds = more(needed) * images if math.isfinite(needed) and needed > most else math.inf
        cost_extend = sum(seeds.values()) * (after - images) + (more(needed_here) * after if math.isfinite(needed_here) else 0)
        if k == 0 or changing or cost_extend <= cost_seeds:
            for d in undecided:
                d.need = f"extending to {after:,} images"
            return "extend", after
        target = int(min(race.max_seeds, needed))
        for d in undecided:
            d.need = f"about {target} seeds each at {images:,} images"
        return "seeds", target
    if most >= race.max_seeds and fewest >= race.max_seeds:
        for d in undecided:
            n = None if d.comparison is None else seeds_to_decide(d.comparison, race.alpha, margin=race.margin)
            d.need = (f"about {n} seeds each at {images:,} images" if n is not None
                      else f"more than 100 seeds each at {images:,} images (or more images than {images:,})")
        return None, None
    target = int(min(race.max_seeds, max(most + 1, needed if math.isfinite(needed) else 0)))
    for d in undecided:
        d.need = (f"about {target} seeds each at {images:,} images" if math.isfinite(needed)
                  else f"more than {race.max_seeds} seeds each at {images:,} images")
    return "seeds", target


def run_race(
    get_table: Callable[[], dict[str, ConfigRungs]],
    train: Callable[[int, dict[str, tuple[int, int]]], bool | None],
    race: RaceConfig,
    metric: str,
    *,
    rungs: tuple[int, ...],
    pair: bool = False,
    state: dict[str, Any] | None = None,
    deadline: float | None = None,
    on_round: Callable[[RaceRound, dict[str, str], dict[str, Any]], None] | None = None,
) -> RaceResult:
    """Race the configurations of ``get_table()`` until each comparison with the best is decided (module docstring).

    Args:
        get_table: the per-seed values at each rung and the costs now, by configuration key (re-read each round).
        train: ``train(round, {key: (seeds, images)})`` brings each configuration to at least ``seeds`` seeds,
            each scored at every rung up to ``images`` (new seeds trained through the rungs, existing ones
            extended), and returns True once done, None when stopped at the deadline.
        race: the settings (``max_seeds``, ``alpha``, ``margin``, ``max_total_images``).
        metric: the metric raced on (higher is better).
        rungs: images seen per seed at each rung (:func:`rungs_of`).
        pair: the configurations train the same seeds (``seed.policy: fixed``): paired tests.
        state: a resumed race's state (as ``on_round`` last received it); default a new race. Its ``round`` is
            the last round played, so the resumed race's first round is numbered one more (its pending training
            as well): a race killed and started again prints its rounds 0, 1, 2, ... as one uninterrupted race.
        deadline: ``time.monotonic()`` after which no round starts.
        on_round: called after each round with the round, the labels and the race's state (JSON-ready).

    Raises:
        ConfigError: a contender has more seeds than ``max_seeds`` or has images past the last rung.
    """
    table = get_table()
    state = _start_state(state, table)
    check_race(table, state["contenders"], race)
    labels = {key: c.label for key, c in table.items()}
    outcome = {key: _decision_from(key, d) for key, d in state["outcome"].items()}
    rounds: list[RaceRound] = []
    stopped = False
    if state["pending"]:  # a resumed race: finish the next round's training first (tasks done or queued are not redone)
        pending = {k: tuple(v) for k, v in state["pending"].items()}
        stopped = train(state["round"], pending) is None
        if not stopped:
            state["pending"] = None
    while True:
        table = get_table()
        labels.update({key: c.label for key, c in table.items()})
        round_, plan = _play_round(table, state, outcome, race, rungs, pair=pair,
                                   stopped=stopped or (deadline is not None and time.monotonic() >= deadline))
        rounds.append(round_)
        if on_round is not None:
            on_round(round_, labels, state)
        if round_.status != "continue":
            table_now = get_table()
            return RaceResult(rounds, race, rungs, {k: c.label for k, c in table_now.items()}, outcome, round_.best,
                              table_now, int(sum(c.images for c in table_now.values())) - state["images_at_start"])
        state["round"] += 1
        if train(state["round"], plan) is None:
            stopped = True
        else:
            state["pending"] = None


def _start_state(state: dict[str, Any] | None, table: dict[str, ConfigRungs]) -> dict[str, Any]:
    """The race's state: a resumed race's (a copy), or a new one with every configuration of ``table`` racing."""
    if state is not None and "round" in state:  # resumed: its stored round is the last one played (and printed)
        state = {**state, "round": int(state["round"]) + 1}
    state = dict(state or {})
    state.setdefault("round", 0)
    state.setdefault("rung", 0)
    state.setdefault("contenders", list(table))
    state.setdefault("outcome", {})
    state.setdefault("spent", 0.0)
    state.setdefault("images_at_start", int(sum(c.images for c in table.values())))
    state.setdefault("pending", None)
    return state


def _play_round(table: dict[str, ConfigRungs], state: dict[str, Any], outcome: dict[str, Decision], race: RaceConfig,
                rungs: tuple[int, ...], *, pair: bool, stopped: bool) -> tuple[RaceRound, dict[str, tuple[int, int]] | None]:
    """One round: test the contenders at the state's rung (spending its alpha), decide what comes next (extend,
    add seeds, or a final status) and record it in ``state`` and ``outcome``.

    Returns:
        ``(the round, its training plan {key: (seeds, images)})``; the plan is None unless the round's status
        is ``"continue"``.
    """
    contenders = {key: table[key] for key in state["contenders"] if key in table}
    k = state["rung"]
    images = rungs[k]
    counts = [len(c.seeds_at(images)) for c in contenders.values()]
    information = min(counts) * (k + 1) / (race.max_seeds * len(rungs)) if counts else 1.0
    testable = len(contenders) > 1 and min(counts) >= MIN_TEST_SEEDS and (k > 0 or k == len(rungs) - 1)
    level = max(0.0, spent_alpha(race.alpha, information) - state["spent"]) if testable else 0.0
    best, decisions, configs = decide(contenders, rungs, k, race, level, pair=pair)
    state["spent"] += level
    outcome.update(decisions)
    kept = [best] + [key for key, d in decisions.items() if d.word == "undecided"]
    total = {"images": float(sum(c.images for c in table.values())), "cpu_s": float(sum(c.cpu_s for c in table.values())),
             "gpu_s": float(sum(c.gpu_s for c in table.values()))}
    round_ = RaceRound(state["round"], images, level, configs, decisions, best, kept, cost=total)
    status, action, target, plan = "continue", None, None, None
    if len(kept) == 1:
        status = "decided"
    elif stopped:
        status = "stopped"
        next_step(contenders, best, decisions, rungs, k, race, level, pair=pair)  # what would decide them
    else:
        action, target = next_step(contenders, best, decisions, rungs, k, race, level, pair=pair)
        if action is None:
            status = "undecided"
        else:
            plan = _plan(contenders, kept, rungs, k, action, target)
            planned = _planned_images(contenders, kept, rungs, k, action, target)
            race_images = total["images"] - state["images_at_start"]
            if race.max_total_images is not None and race_images + planned > race.max_total_images:
                status, action = "budget", None
    round_.status, round_.action = status, action
    if action == "extend":
        round_.next_images = target
    elif action == "seeds":
        round_.next_seeds = target
    state.update(contenders=kept, outcome={k_: _decision_state(d) for k_, d in outcome.items()},
                 status="running" if status == "continue" else status, best=best)
    if status != "continue":
        return round_, None
    state["pending"] = {key: list(v) for key, v in plan.items()}
    if action == "extend":
        state["rung"] = k + 1
    return round_, plan


def _plan(contenders: dict[str, ConfigRungs], kept: list[str], rungs, k: int, action: str, target: int) -> dict[str, tuple[int, int]]:
    if action == "extend":
        return {key: (len(contenders[key].seeds_at(rungs[k])), target) for key in kept}
    return {key: (target, rungs[k]) for key in kept}


def _planned_images(contenders: dict[str, ConfigRungs], kept: list[str], rungs, k: int, action: str, target: int) -> int:
    if action == "extend":
        return sum(len(contenders[key].seeds_at(rungs[k])) * (target - rungs[k]) for key in kept)
    return sum(max(0, target - len(contenders[key].seeds_at(rungs[k]))) * rungs[k] for key in kept)


def _decision_state(decision: Decision) -> dict[str, Any]:
    c = decision.comparison
    return {"word": decision.word, "images": decision.images, "need": decision.need, "p_worse": decision.p_worse,
            "p_equivalent": decision.p_equivalent,
            "comparison": None if c is None else {"a": c.a.label, "b": c.b.label, "difference": c.difference, "se": c.se,
                                                  "df": c.df, "low": c.low, "high": c.high, "p_value": c.p_value,
                                                  "alpha": c.alpha, "test": c.test, "n_a": c.a.n, "n_b": c.b.n}}


def _decision_from(key: str, state: dict[str, Any]) -> Decision:
    """A :class:`Decision` from the race's stored state (a resumed race keeps the earlier rounds' outcomes)."""
    c = state.get("comparison")
    comparison = None
    if c:
        comparison = Comparison(ConfigResult(c["a"], (math.nan,) * int(c["n_a"])), ConfigResult(c["b"], (math.nan,) * int(c["n_b"])),
                                c["difference"], c["se"], c["df"], c["low"], c["high"], c["p_value"], c["alpha"], c["test"])
    return Decision(key, state["word"], comparison, state.get("p_worse", 1.0), state.get("p_equivalent", 1.0),
                    state.get("images", 0), state.get("need", ""))


def check_race(table: dict[str, ConfigRungs], contenders: list[str], race: RaceConfig) -> None:
    """Refuse a race whose ``max_seeds`` is below the seeds a contender already has.

    Raises:
        ConfigError: naming the configuration and its seeds.
    """
    over = [table[k] for k in contenders if k in table and len(table[k].values) > race.max_seeds]
    if over:
        most = max(len(c.values) for c in over)
        raise ConfigError(f"--max-seeds {race.max_seeds}: fewer than the {len(over[0].values)} seeds {over[0].label} already "
                          f"has; give at least {most}")
