"""The verdict of a sweep: which configuration is best, which cannot be told apart from it, and whether
β > 1 beats β <= 1, each with how sure the seeds let us be.

Pure statistics on per-seed values (no Optuna, no MLflow): a configuration is a list of per-seed
scores; configurations are compared with Welch's unequal-variance t-test (Welch 1947), two-sided at
5% (``scipy.stats.ttest_ind(equal_var=False)``), and a difference of means gets its 95% interval
with the Welch–Satterthwaite degrees of freedom. Seeds matter as much as hyperparameters in
disentanglement (Locatello et al. 2019, "Challenging Common Assumptions...", ICML, Sec. 5), so a
sweep's winner is named together with the configurations the seeds cannot separate from it.

What would decide it. For each comparison the verdict also says how many seeds per configuration a
two-sided test at 5% would need for 80% power at the observed difference and spread
(:func:`seeds_needed`: ``statsmodels.stats.power.TTestIndPower``, Cohen's d with the pooled SD), and,
where the seeds carry learning curves (the panel scored at a few budgets of images seen), whether
the gap is still growing over the last budgets (:func:`gap_trend`: each seed's least-squares slope
of the metric against log2(images), compared between the two configurations by Welch's test), i.e.
whether training longer is likely to separate them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.optimize
import scipy.stats

__all__ = ["ALPHA", "POWER", "MAX_SEEDS_SHOWN", "TREND_BUDGETS", "ConfigResult", "Comparison", "Verdict", "welch",
           "verdict", "seeds_needed", "gap_trend", "paired", "compare", "equivalence_p", "holm", "spent_alpha",
           "seeds_to_decide"]

ALPHA = 0.05
"""Significance level of every test in the verdict (two-sided); intervals are at ``1 - ALPHA``."""

POWER = 0.8
"""Power at which :func:`seeds_needed` sizes a comparison (the conventional 80%)."""

MAX_SEEDS_SHOWN = 100
"""Above this many seeds per configuration the verdict says "more than 100": the difference is negligible."""

TREND_BUDGETS = 3
"""The last this many budgets of a learning curve give the slope of :func:`gap_trend`."""


@dataclass(frozen=True)
class ConfigResult:
    """One configuration's per-seed scores of one metric.

    Attributes:
        label: how the verdict names it, e.g. ``"trial #3 (beta=4)"``.
        values: the metric's value of each seed's model (higher is better).
        beta: the configuration's β (None when the spec sets none: the β comparison skips it).
        collapsed: names of its models with no active unit (``"trial #3 seed 1"``).
        trials: the trial numbers that trained it.
        budgets: images seen (nominal, as the spec's ``metric.curve.budgets``) at which every seed's
            learning curve was scored; empty when its seeds have no (common) curve.
        curves: per seed, the metric at each of ``budgets`` (cheap settings), ``len(budgets)`` values each.
        seeds: the training seed of each value (same order); empty when unknown. Two configurations
            trained on the same seeds (``seed.policy: fixed``) are compared paired (:func:`compare`).
    """

    label: str
    values: tuple[float, ...]
    beta: float | None = None
    collapsed: tuple[str, ...] = ()
    trials: tuple[int, ...] = ()
    budgets: tuple[int, ...] = ()
    curves: tuple[tuple[float, ...], ...] = ()
    seeds: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def se(self) -> float:
        """Standard error of the mean, ``std(ddof=1) / sqrt(n)``; NaN with fewer than 2 seeds."""
        return float(np.std(self.values, ddof=1) / math.sqrt(self.n)) if self.n >= 2 else math.nan


@dataclass(frozen=True)
class Comparison:
    """``a - b`` of two configurations' means with its Welch interval and test.

    Attributes:
        difference: ``mean(a) - mean(b)``.
        se: ``sqrt(var_a / n_a + var_b / n_b)`` (sample variances, ddof 1).
        df: Welch–Satterthwaite degrees of freedom
            ``se⁴ / ((var_a/n_a)² / (n_a-1) + (var_b/n_b)² / (n_b-1))``.
        low, high: the ``1 - ALPHA`` interval ``difference ± t_{1-ALPHA/2, df} · se``.
        p_value: two-sided p of Welch's t-test (``scipy.stats.ttest_ind(a, b, equal_var=False)``).
        alpha: the test's level; the interval is at ``1 - alpha``.
        test: ``"welch"`` (:func:`welch`) or ``"paired"`` (:func:`paired`: ``df = n - 1`` over the seeds both share).
    """

    a: ConfigResult
    b: ConfigResult
    difference: float
    se: float
    df: float
    low: float
    high: float
    p_value: float
    alpha: float = ALPHA
    test: str = "welch"

    @property
    def distinguishable(self) -> bool:
        return self.p_value < self.alpha


def welch(a: ConfigResult, b: ConfigResult, alpha: float = ALPHA) -> Comparison | None:
    """Welch's t-test and the ``1 - alpha`` interval of ``mean(a) - mean(b)``; None if either has fewer than 2 seeds.

    When both configurations have zero spread (every seed the same value) the test is undefined:
    equal means count as not distinguishable (p = 1), different ones as distinguishable (p = 0),
    with a zero-width interval.
    """
    if a.n < 2 or b.n < 2:
        return None
    x, y = np.asarray(a.values, dtype=float), np.asarray(b.values, dtype=float)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    difference = float(x.mean() - y.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return Comparison(a, b, difference, 0.0, math.nan, difference, difference, 1.0 if difference == 0 else 0.0, alpha)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(scipy.stats.t.ppf(1 - alpha / 2, df)) * se
    p_value = float(scipy.stats.ttest_ind(x, y, equal_var=False).pvalue)
    return Comparison(a, b, difference, se, float(df), difference - half, difference + half, p_value, alpha)


def paired(a: ConfigResult, b: ConfigResult, alpha: float = ALPHA) -> Comparison | None:
    """The paired t-test of ``a - b`` over the seeds both were trained with (``scipy.stats.ttest_rel``; Student
    1908), with its ``1 - alpha`` interval ``mean(d) ± t_{1-alpha/2, n-1} · sd(d) / sqrt(n)`` of the per-seed
    differences ``d``; None when they share fewer than 2 seeds. The pair's common seed removes the part of
    the seed-to-seed spread both configurations share (same initialisation and data order), so with
    ``seed.policy: fixed`` this is the test that fits the design. Zero spread of ``d``: p = 1 for a zero
    mean, 0 otherwise (zero-width interval), as :func:`welch`."""
    common = [s for s in a.seeds if s in set(b.seeds)]
    if len(common) < 2:
        return None
    at_a, at_b = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
    x = np.array([at_a[s] for s in common], dtype=float)
    y = np.array([at_b[s] for s in common], dtype=float)
    d = x - y
    difference, n = float(d.mean()), len(d)
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return Comparison(a, b, difference, 0.0, float(n - 1), difference, difference,
                          1.0 if difference == 0 else 0.0, alpha, "paired")
    half = float(scipy.stats.t.ppf(1 - alpha / 2, n - 1)) * se
    p_value = float(scipy.stats.ttest_rel(x, y).pvalue)
    return Comparison(a, b, difference, se, float(n - 1), difference - half, difference + half, p_value, alpha, "paired")


def compare(a: ConfigResult, b: ConfigResult, alpha: float = ALPHA, *, pair: bool = False) -> Comparison | None:
    """:func:`paired` when ``pair`` (the configurations train the same seeds) and they share at least 2 seeds,
    else :func:`welch`."""
    if pair:
        result = paired(a, b, alpha)
        if result is not None:
            return result
    return welch(a, b, alpha)


def equivalence_p(comparison: Comparison, margin: float) -> float:
    """p of the two one-sided tests (TOST; Schuirmann 1987) that ``|mean(a) - mean(b)| < margin``: the larger
    p of ``H0: Δ <= -margin`` and ``H0: Δ >= +margin``; equivalence at level α when it is below α, i.e. when
    the ``1 - 2α`` interval of Δ lies inside ``±margin``. ``statsmodels.stats.weightstats.ttost_paired`` for a
    paired comparison, ``ttost_ind(usevar="unequal")`` (Welch) otherwise. ``margin`` in the metric's units."""
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    if comparison.se == 0:
        return 0.0 if abs(comparison.difference) < margin else 1.0
    a, b = comparison.a, comparison.b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if comparison.test == "paired":
            common = [s for s in a.seeds if s in set(b.seeds)]
            at_a, at_b = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
            p = ttost_paired(np.array([at_a[s] for s in common]), np.array([at_b[s] for s in common]), -margin, margin)[0]
        else:
            p = ttost_ind(np.asarray(a.values, dtype=float), np.asarray(b.values, dtype=float), -margin, margin,
                          usevar="unequal")[0]
    return float(p)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which of a round's hypotheses Holm's step-down procedure rejects at family-wise level ``alpha`` (Holm 1979):
    sorted ascending, ``p_(i)`` is rejected while ``p_(j) <= alpha / (m - j + 1)`` for every ``j <= i``.
    Equal to ``statsmodels.stats.multitest.multipletests(method="holm")`` (tests/sweeps/test_verdict.py), written
    out because statsmodels 0.15 runs ``gc.collect()`` on every Holm call (0.3 s each; a simulated race makes
    thousands)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def spent_alpha(alpha: float, information: float) -> float:
    """The part of ``alpha`` a race may have spent once it has used ``information`` (in [0, 1]) of its largest
    possible design: the Pocock-type spending function of Lan & DeMets (1983), ``alpha · ln(1 + (e - 1) t)``,
    which spends more of ``alpha`` early than O'Brien-Fleming's (a race should be able to stop early). A round
    tests at the increment over the previous rounds' total; by the union bound the chance that any round
    separates two equal configurations is at most ``alpha`` whatever the correlation between rounds."""
    t = min(max(float(information), 0.0), 1.0)
    return alpha * math.log1p((math.e - 1) * t)


def seeds_to_decide(comparison: Comparison, alpha: float, *, margin: float | None = None, power: float = POWER,
                    limit: int = MAX_SEEDS_SHOWN, equivalence_alpha: float | None = None) -> int | None:
    """Seeds per configuration at which the comparison's observed difference and spread would be decided with
    ``power``: separated by the two-sided test at ``alpha`` (paired: ``statsmodels TTestPower`` on the per-seed
    differences; Welch: ``TTestIndPower`` with the pooled SD), or, when ``margin`` is set and ``|Δ| < margin``,
    called equivalent by TOST at ``alpha`` (approximated by the nearer one-sided test, effect
    ``(margin - |Δ|) / sd``, at ``equivalence_alpha``, default ``alpha``). The smaller of the two; None above ``limit``."""
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if comparison.test == "paired":
        sd, analysis = comparison.se * math.sqrt(comparison.df + 1), TTestPower()
    else:
        x, y = np.asarray(comparison.a.values, dtype=float), np.asarray(comparison.b.values, dtype=float)
        sd, analysis = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2), TTestIndPower()
    difference = abs(comparison.difference)
    if sd == 0:
        return 2
    candidates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in range(2, limit + 1):
            if difference > 0 and float(analysis.power(difference / sd, n, alpha, alternative="two-sided")) >= power:
                candidates.append(n)
                break
            if margin is not None and difference < margin and float(
                    analysis.power((margin - difference) / sd, n, equivalence_alpha or alpha, alternative="larger")) >= power:
                candidates.append(n)
                break
    return min(candidates) if candidates else None


def seeds_needed(comparison: Comparison, power: float = POWER, limit: int = MAX_SEEDS_SHOWN) -> int | None:
    """Seeds per configuration a two-sided test at ``comparison.alpha`` needs for ``power`` at the observed
    difference and spread: ``ceil(TTestIndPower().solve_power(effect_size=d, alpha, power, ratio=1))``
    (``statsmodels.stats.power``; Cohen 1988, Ch. 2), with Cohen's ``d = |mean_a - mean_b| / s`` and the
    pooled SD ``s = sqrt((s_a² + s_b²) / 2)`` (sample variances, ddof 1).

    statsmodels sizes Student's pooled t-test; with equal seeds per configuration (as this sizes them)
    Welch's test has nearly the same power, so the figure is the one to plan with, not an exact bound.

    Returns:
        The seeds per configuration (at least 2), or None when more than ``limit`` would be needed: the
        observed difference is negligible against the spread (or zero).
    """
    x, y = np.asarray(comparison.a.values, dtype=float), np.asarray(comparison.b.values, dtype=float)
    difference = abs(float(x.mean() - y.mean()))
    spread = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    if difference == 0:
        return None
    if spread == 0:  # every seed the same value on both sides, the means differ: any 2 seeds tell them apart
        return 2
    from statsmodels.stats.power import TTestIndPower

    analysis, d = TTestIndPower(), difference / spread
    def power_at(n: float) -> float:
        return float(analysis.power(effect_size=d, nobs1=n, alpha=comparison.alpha, ratio=1.0, alternative="two-sided"))

    # Bracket first: statsmodels' root finder does not converge for effects sized below 2 or above `limit` seeds.
    at_two = power_at(2)
    # SciPy's noncentral t returns NaN for some very large effects; from d = 10 on, 2 seeds give > 99% power.
    if at_two >= power or (math.isnan(at_two) and d >= 10):
        return 2
    if power_at(limit) < power:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: then the bracketed root below
        n = float(analysis.solve_power(effect_size=d, alpha=comparison.alpha, power=power, ratio=1.0,
                                       alternative="two-sided"))
    if not math.isfinite(n):  # statsmodels' own solver gave up near the bracket's ends: the same root, bracketed
        n = float(scipy.optimize.brentq(lambda m: power_at(m) - power, 2, limit))
    return max(2, math.ceil(n))


def gap_trend(a: ConfigResult, b: ConfigResult, *, last: int = TREND_BUDGETS, alpha: float = ALPHA) -> Comparison | None:
    """Is the gap between ``a`` and ``b`` still growing? Each seed's least-squares slope of its learning curve
    against ``log2(images seen)`` over the last ``last`` common budgets (``scipy.stats.linregress``), ``a``'s
    slopes against ``b``'s by :func:`welch`: ``difference`` is the change of the gap ``a - b`` per doubling
    of the images seen, with its ``1 - alpha`` interval.

    Returns:
        The comparison of slopes, or None when either lacks curves, they share fewer than 2 budgets, or
        either has fewer than 2 seeds.
    """
    common = [budget for budget in a.budgets if budget in b.budgets][-last:]
    if len(common) < 2 or len(a.curves) < 2 or len(b.curves) < 2:
        return None
    x = np.log2(np.asarray(common, dtype=float))

    def slopes(config: ConfigResult) -> tuple[float, ...]:
        at = [config.budgets.index(budget) for budget in common]
        return tuple(float(scipy.stats.linregress(x, [curve[i] for i in at]).slope) for curve in config.curves)

    return welch(ConfigResult(a.label, slopes(a)), ConfigResult(b.label, slopes(b)), alpha)


@dataclass
class Verdict:
    """What a sweep's seeds say; :attr:`lines` is the verdict in words.

    Attributes:
        metric: the metric ranked by.
        configs: every configuration, best mean first.
        ties: configurations not distinguishable from the best, with their comparison.
        apart: configurations distinguishable from the best (worse at ``alpha``).
        untestable: configurations with fewer than 2 seeds (or a best with fewer than 2).
        beta_comparison: best β > 1 minus best β <= 1, or None (one side empty, or too few seeds).
        collapsed: every collapsed model's name.
        alpha: the level of every test (two-sided); intervals at ``1 - alpha``.
    """

    metric: str
    configs: list[ConfigResult]
    ties: list[Comparison] = field(default_factory=list)
    apart: list[Comparison] = field(default_factory=list)
    untestable: list[ConfigResult] = field(default_factory=list)
    beta_comparison: Comparison | None = None
    beta_sides: tuple[ConfigResult | None, ConfigResult | None] = (None, None)
    collapsed: list[str] = field(default_factory=list)
    alpha: float = ALPHA

    @property
    def best(self) -> ConfigResult:
        return self.configs[0]

    @property
    def comparisons(self) -> list[Comparison]:
        """Every testable configuration against the best (``a``: the other one, ``b``: the best), best mean first."""
        return sorted([*self.ties, *self.apart], key=lambda c: (-c.a.mean, c.a.label))

    @property
    def lines(self) -> list[str]:
        """The verdict as sentences, one per line: best, ties, what would decide each comparison (seeds for
        80% power, the learning curves' trend), β > 1 vs β <= 1, collapsed models."""
        metric, best = self.metric, self.best
        lines = [f"Best configuration by {metric}: {best.label}, {_pm(best)}."]
        if best.n < 2:
            lines.append(f"It has {best.n} seed: no configuration can be told apart from it "
                         "(set seeds_per_trial >= 2 to get an answer that says how sure it is).")
        elif len(self.configs) > 1:
            test = f"Welch's t-test, two-sided, {self.alpha:.0%}"
            if self.ties:
                lines.append(f"Not distinguishable from it ({test}): "
                             + "; ".join(f"{c.a.label} {_pm(c.a)}, p = {c.p_value:.2g}" for c in self.ties) + ".")
            else:
                lines.append(f"Every other configuration is distinguishably worse ({test}).")
            if self.untestable:
                lines.append("Not testable (fewer than 2 seeds): " + ", ".join(c.label for c in self.untestable) + ".")
            lines.extend(self._decide_line(c, "the best") for c in self.comparisons)
        high, low = self.beta_sides
        if high is None or low is None:
            side = "β > 1" if high is None else "β <= 1"
            lines.append(f"β > 1 vs β <= 1: cannot say, no configuration with {side} finished.")
        elif self.beta_comparison is None:
            lines.append(f"β > 1 vs β <= 1: cannot say, {high.label} or {low.label} has fewer than 2 seeds.")
        else:
            c = self.beta_comparison
            if c.distinguishable:
                answer = "β > 1 beats β <= 1 at this budget" if c.difference > 0 else "β <= 1 beats β > 1 at this budget"
            else:
                answer = "not distinguishable at this budget"
            lines.append(
                f"β > 1 vs β <= 1: the best β > 1, {high.label}, minus the best β <= 1, {low.label}, is "
                f"{c.difference:+.4f} {metric}, {1 - self.alpha:.0%} interval [{c.low:+.4f}, {c.high:+.4f}] "
                f"(Welch–Satterthwaite, {c.df:.1f} df), p = {c.p_value:.2g}: {answer}.")
            if not c.distinguishable:
                lines.append(self._decide_line(c, None))
        if self.collapsed:
            lines.append("Collapsed models (0 active units; their scores are those of a constant code): "
                         + ", ".join(self.collapsed) + ".")
        else:
            lines.append("No model collapsed (every model has at least one active unit).")
        return lines

    def _decide_line(self, c: Comparison, against: str | None) -> str:
        """What would decide ``c``: the seeds each side needs for 80% power, and whether the gap still grows."""
        if against is None:  # β > 1 vs β <= 1
            first = f"To tell {_beta_name(c.a)} from {_beta_name(c.b)} at this budget you would need"
        else:
            first = f"{c.a.label} vs {against}: {c.difference:+.4f}; to tell them apart at this budget you would need"
        n = seeds_needed(c)
        power = f" ({POWER:.0%} power, two-sided {c.alpha:.0%}; statsmodels TTestIndPower)"
        first += (f" about {n} seeds each{power}" if n is not None else
                  f" more than {MAX_SEEDS_SHOWN} seeds each{power}: the observed difference is negligible against the spread")
        # The gap as the sentence names it: β > 1 minus β <= 1 (a - b), or the best's lead (b - a).
        trend = gap_trend(c.a, c.b, alpha=c.alpha) if against is None else gap_trend(c.b, c.a, alpha=c.alpha)
        if trend is None:
            return first + "."
        budgets = [b for b in c.a.budgets if b in c.b.budgets][-TREND_BUDGETS:]
        span = f"from {budgets[0]:,} to {budgets[-1]:,} images"
        d = trend.difference
        if trend.low > 0:
            outlook = "still growing: training longer is likely to separate them"
        elif trend.high < 0:
            outlook = "shrinking: training longer is likely to bring them closer"
        else:
            outlook = "not clearly changing: training longer is not likely to separate them at this rate"
        gap = "the gap" if against is None else "the best's lead"
        return (f"{first}; {gap} changes by {d:+.4f} per doubling of images seen ({span}, "
                f"{1 - c.alpha:.0%} interval [{trend.low:+.4f}, {trend.high:+.4f}]): {outlook}.")


def verdict(configs: Sequence[ConfigResult], metric: str, *, alpha: float = ALPHA) -> Verdict:
    """Compare configurations by ``metric`` (higher is better).

    The best is the highest mean over seeds; every other configuration is tested against it with
    Welch's t-test at ``alpha`` (:func:`welch`). For β: the best configuration with β > 1 against the best
    with β <= 1 (each side's best by mean: picking the best of a side flatters it, the more so the
    more configurations it has, so a side that wins narrowly has not won).

    Raises:
        ValueError: no configuration with at least one value.
    """
    ranked = sorted((c for c in configs if c.n), key=lambda c: (-c.mean, c.label))
    if not ranked:
        raise ValueError(f"no configuration has a value of {metric!r}")
    result = Verdict(metric=metric, configs=ranked, alpha=alpha)
    best = ranked[0]
    for config in ranked[1:]:
        comparison = welch(config, best, alpha)
        if comparison is None:
            result.untestable.append(config)
        elif comparison.distinguishable:
            result.apart.append(comparison)
        else:
            result.ties.append(comparison)
    high = next((c for c in ranked if c.beta is not None and c.beta > 1), None)
    low = next((c for c in ranked if c.beta is not None and c.beta <= 1), None)
    result.beta_sides = (high, low)
    if high is not None and low is not None:
        result.beta_comparison = welch(high, low, alpha)
    result.collapsed = [name for c in ranked for name in c.collapsed]
    return result


def _beta_name(config: ConfigResult) -> str:
    return f"β = {config.beta:.3g}" if config.beta is not None else config.label


def _pm(config: ConfigResult) -> str:
    if config.n >= 2:
        return f"{config.mean:.4f} ± {config.se:.4f} (mean ± SE over {config.n} seeds)"
    return f"{config.mean:.4f} (1 seed)"
