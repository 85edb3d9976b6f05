"""The verdict of a sweep: which configuration is best, which cannot be told apart from it, and whether
β > 1 beats β <= 1, each with how sure the seeds let us be.

Pure statistics on per-seed values (no Optuna, no MLflow): a configuration is a list of per-seed
scores; configurations are compared with Welch's unequal-variance t-test (Welch 1947), two-sided at
5% (``scipy.stats.ttest_ind(equal_var=False)``), and a difference of means gets its 95% interval
with the Welch–Satterthwaite degrees of freedom. Seeds matter as much as hyperparameters in
disentanglement (Locatello et al. 2019, "Challenging Common Assumptions...", ICML, Sec. 5), so a
sweep's winner is named together with the configurations the seeds cannot separate from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.stats

__all__ = ["ALPHA", "ConfigResult", "Comparison", "Verdict", "welch", "verdict"]

ALPHA = 0.05
"""Significance level of every test in the verdict (two-sided); intervals are at ``1 - ALPHA``."""


@dataclass(frozen=True)
class ConfigResult:
    """One configuration's per-seed scores of one metric.

    Attributes:
        label: how the verdict names it, e.g. ``"trial #3 (beta=4)"``.
        values: the metric's value of each seed's model (higher is better).
        beta: the configuration's β (None when the spec sets none: the β comparison skips it).
        collapsed: names of its models with no active unit (``"trial #3 seed 1"``).
        trials: the trial numbers that trained it.
    """

    label: str
    values: tuple[float, ...]
    beta: float | None = None
    collapsed: tuple[str, ...] = ()
    trials: tuple[int, ...] = ()

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
    """

    a: ConfigResult
    b: ConfigResult
    difference: float
    se: float
    df: float
    low: float
    high: float
    p_value: float

    @property
    def distinguishable(self) -> bool:
        return self.p_value < ALPHA


def welch(a: ConfigResult, b: ConfigResult) -> Comparison | None:
    """Welch's t-test and the 95% interval of ``mean(a) - mean(b)``; None if either has fewer than 2 seeds.

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
        return Comparison(a, b, difference, 0.0, math.nan, difference, difference, 1.0 if difference == 0 else 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = float(scipy.stats.t.ppf(1 - ALPHA / 2, df)) * se
    p_value = float(scipy.stats.ttest_ind(x, y, equal_var=False).pvalue)
    return Comparison(a, b, difference, se, float(df), difference - half, difference + half, p_value)


@dataclass
class Verdict:
    """What a sweep's seeds say; :attr:`lines` is the verdict in words.

    Attributes:
        metric: the metric ranked by.
        configs: every configuration, best mean first.
        ties: configurations not distinguishable from the best, with their comparison.
        apart: configurations distinguishable from the best (worse at 5%).
        untestable: configurations with fewer than 2 seeds (or a best with fewer than 2).
        beta_comparison: best β > 1 minus best β <= 1, or None (one side empty, or too few seeds).
        collapsed: every collapsed model's name.
    """

    metric: str
    configs: list[ConfigResult]
    ties: list[Comparison] = field(default_factory=list)
    apart: list[Comparison] = field(default_factory=list)
    untestable: list[ConfigResult] = field(default_factory=list)
    beta_comparison: Comparison | None = None
    beta_sides: tuple[ConfigResult | None, ConfigResult | None] = (None, None)
    collapsed: list[str] = field(default_factory=list)

    @property
    def best(self) -> ConfigResult:
        return self.configs[0]

    @property
    def lines(self) -> list[str]:
        """The verdict as sentences, one per line: best, ties, β > 1 vs β <= 1, collapsed models."""
        metric, best = self.metric, self.best
        lines = [f"Best configuration by {metric}: {best.label}, {_pm(best)}."]
        if best.n < 2:
            lines.append(f"It has {best.n} seed: no configuration can be told apart from it "
                         "(set seeds_per_trial >= 2 to get an answer that says how sure it is).")
        elif len(self.configs) > 1:
            test = f"Welch's t-test, two-sided, {ALPHA:.0%}"
            if self.ties:
                lines.append(f"Not distinguishable from it ({test}): "
                             + "; ".join(f"{c.a.label} {_pm(c.a)}, p = {c.p_value:.2g}" for c in self.ties) + ".")
            else:
                lines.append(f"Every other configuration is distinguishably worse ({test}).")
            if self.untestable:
                lines.append("Not testable (fewer than 2 seeds): " + ", ".join(c.label for c in self.untestable) + ".")
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
                f"{c.difference:+.4f} {metric}, {1 - ALPHA:.0%} interval [{c.low:+.4f}, {c.high:+.4f}] "
                f"(Welch–Satterthwaite, {c.df:.1f} df), p = {c.p_value:.2g}: {answer}.")
        if self.collapsed:
            lines.append(f"Collapsed models (0 active units; their scores are those of a constant code): "
                         + ", ".join(self.collapsed) + ".")
        else:
            lines.append("No model collapsed (every model has at least one active unit).")
        return lines


def verdict(configs: Sequence[ConfigResult], metric: str) -> Verdict:
    """Compare configurations by ``metric`` (higher is better).

    The best is the highest mean over seeds; every other configuration is tested against it with
    Welch's t-test at 5% (:func:`welch`). For β: the best configuration with β > 1 against the best
    with β <= 1 (each side's best by mean: picking the best of a side flatters it, the more so the
    more configurations it has, so a side that wins narrowly has not won).

    Raises:
        ValueError: no configuration with at least one value.
    """
    ranked = sorted((c for c in configs if c.n), key=lambda c: (-c.mean, c.label))
    if not ranked:
        raise ValueError(f"no configuration has a value of {metric!r}")
    result = Verdict(metric=metric, configs=ranked)
    best = ranked[0]
    for config in ranked[1:]:
        comparison = welch(config, best)
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
        result.beta_comparison = welch(high, low)
    result.collapsed = [name for c in ranked for name in c.collapsed]
    return result


def _pm(config: ConfigResult) -> str:
    if config.n >= 2:
        return f"{config.mean:.4f} ± {config.se:.4f} (mean ± SE over {config.n} seeds)"
    return f"{config.mean:.4f} (1 seed)"
