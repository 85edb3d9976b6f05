"""The race and the power figure on controls with known answers: per-seed learning curves drawn from known
distributions (equal, 3 SD apart, a gap that appears only at 4x the first budget)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import TTestIndPower

from betasweep.errors import ConfigError
from betasweep.sweeps.race import ConfigRungs, run_race, rungs_of
from betasweep.sweeps.spec import RaceConfig, parse_spec
from betasweep.sweeps.verdict import ConfigResult, gap_trend, seeds_needed, spent_alpha, verdict, welch

RACES = 300
R0 = 24_000


def simulate(curves: dict, sd: float, race: RaceConfig, rng: np.random.Generator, *, start: int = 2,
             noise: float = 0.0, pair: bool = True):
    """A race on simulated learning curves: seed ``s`` of configuration ``k`` scores ``curves[k](images) + u_s + e``
    at each rung, its own persistent effect ``u_s ~ N(0, sd)`` and a fresh ``e ~ N(0, noise)`` per rung; ``start``
    seeds each at the first rung before the race. Returns the result and the table."""
    rungs = rungs_of(R0, race.max_images)
    table = {k: ConfigRungs(f"config {k}") for k in curves}
    effect: dict = {}

    def train(number, plan):
        for key, (seeds, images) in plan.items():
            config = table[key]
            for seed in range(seeds):
                at = config.values.setdefault(seed, {})
                for rung in rungs:
                    if rung <= images and rung not in at:
                        u = effect.setdefault((key, seed), rng.normal(0, sd))
                        at[rung] = curves[key](rung) + u + rng.normal(0, noise)
                        config.images += rung - max([r for r in at if r < rung], default=0)
        return True

    train(-1, {k: (start, R0) for k in curves})
    return run_race(lambda: table, train, race, "score", rungs=rungs, pair=pair), table


def constant(value: float):
    return lambda images: value


def late(base: float, gain: float):
    """``base``, then ``+gain`` that appears between 2x and 4x the first budget (logistic in log2 images)."""
    return lambda images: base + gain / (1 + math.exp(-(math.log2(images / R0) - 1.5) / 0.4))


def test_configurations_three_sd_apart_are_separated():
    rng = np.random.default_rng(0)
    for max_images in (None, 4 * R0):  # seeds only, and with rungs
        results = [simulate({"good": constant(3.0), "bad": constant(0.0)}, 1.0, RaceConfig(max_seeds=8, max_images=max_images),
                            rng)[0] for _ in range(100)]
        # The level is spent over the rounds (about 0.005 a round here): 8 paired seeds at 3 SD (d = 2.1 on the
        # differences) have about 95% power, and a race never calls the better one worse.
        assert sum(r.words() == {"good": "best", "bad": "worse"} for r in results) >= 90
        assert not any(r.words().get("good") == "worse" for r in results)
    result = next(r for r in results if r.status == "decided")
    assert result.lines[0].startswith("Race (at most 8 seeds and 96,000 images per seed") and "best: config good" in result.lines[0]
    assert result.lines[1].startswith("config bad: worse by -")
    assert result.lines[-1].startswith("Cost: ") and "The fixed design (2 configurations × 8 seeds × 96,000 images)" in result.lines[-1]


def test_equal_configurations_are_called_equivalent_in_at_least_80_percent_of_300_races():
    rng = np.random.default_rng(1)
    race = RaceConfig(max_seeds=8, max_images=8 * R0, margin=0.03)
    results = [simulate({"a": constant(0.8), "b": constant(0.8)}, 0.01, race, rng, noise=0.005)[0] for _ in range(RACES)]
    equivalent = sum(sorted(r.words().values()) == ["best", "equivalent"] for r in results)
    assert equivalent >= 0.8 * RACES, equivalent
    assert sum("worse" in r.words().values() for r in results) <= 0.05 * RACES  # false separations: within alpha
    done = next(r for r in results if "equivalent" in r.words().values())
    assert any(": equivalent (within ±0.03: Δ" in line for line in done.lines)


def test_overall_false_separation_of_equal_configurations_is_at_most_alpha_over_1000_races():
    rng = np.random.default_rng(2)
    races = 1000
    race = RaceConfig(max_seeds=4, max_images=2 * R0, alpha=0.05)  # no margin: every race runs to its end
    separated = sum("worse" in simulate({"a": constant(0.8), "b": constant(0.8)}, 0.02, race, rng, noise=0.01)[0].words().values()
                    for _ in range(races))
    error = 2 * math.sqrt(0.05 * 0.95 / races)  # two simulation standard errors
    assert separated / races <= 0.05 + error, separated


def test_a_gap_appearing_only_at_4x_the_first_budget_is_found_by_extending_not_by_seeds():
    rng = np.random.default_rng(3)
    curves = {"plain": constant(0.82), "late": late(0.82, 0.05)}
    extended = [simulate(curves, 0.01, RaceConfig(max_seeds=6, max_images=16 * R0, margin=0.03), rng, noise=0.005)[0]
                for _ in range(100)]
    found = [r for r in extended if r.words() == {"late": "best", "plain": "worse"}]
    assert len(found) >= 90, len(found)
    late_found = [r for r in found if [round_.action for round_ in r.rounds].count("extend") >= 2
                  and r.outcome["plain"].images >= 4 * R0]
    assert len(late_found) >= 0.8 * len(found)  # found at 4x or later, after extending twice
    seeds_only = [simulate(curves, 0.01, RaceConfig(max_seeds=6, margin=0.03), rng, noise=0.005)[0] for _ in range(100)]
    assert not any(r.words().get("plain") == "worse" for r in seeds_only)  # at the first budget it is not there to find
    assert sum(r.words().get("late") == "equivalent" or r.words().get("plain") == "equivalent" for r in seeds_only) >= 80


def test_rounds_print_the_three_words_the_level_and_the_cost():
    rng = np.random.default_rng(4)
    result, _ = simulate({"a": constant(0.9), "b": constant(0.9), "c": constant(0.5)}, 0.01,
                         RaceConfig(max_seeds=6, max_images=2 * R0, margin=0.03), rng)
    first = result.rounds[0].line(result.labels, 0.03)
    assert first.startswith("round 0 at 24,000 images (level 0)") and "undecided" in first
    assert "next: every seed of 3 configurations extended to 48,000 images" in first
    assert "spent so far 144,000 images" in first
    assert result.words()["c"] == "worse" and "equivalent" in result.words().values()
    levels = [round_.level for round_ in result.rounds]
    assert sum(levels) <= 0.05 + 1e-12 and all(level >= 0 for level in levels)


def test_the_spending_function_and_the_rungs():
    assert spent_alpha(0.05, 0) == 0 and spent_alpha(0.05, 1) == pytest.approx(0.05)
    assert spent_alpha(0.05, 0.5) == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 2))
    assert rungs_of(24_000, 384_000) == (24_000, 48_000, 96_000, 192_000, 384_000)
    assert rungs_of(24_000, 100_000) == (24_000, 48_000, 96_000, 100_000) and rungs_of(24_000, None) == (24_000,)


def test_max_seeds_below_the_seeds_trained_is_refused():
    rng = np.random.default_rng(5)
    with pytest.raises(ConfigError, match="--max-seeds 2: fewer than the 3 seeds config a already has"):
        simulate({"a": constant(0.0), "b": constant(1.0)}, 1.0, RaceConfig(max_seeds=2), rng, start=3)


def test_race_settings_are_validated_in_the_spec():
    base = {"study": "r", "dataset": "shapes", "search_space": {"beta": [1.0, 4.0]}, "seeds_per_trial": 3}
    assert parse_spec({**base, "race": {"max_seeds": 6}}).race == RaceConfig(max_seeds=6, alpha=0.05)
    assert parse_spec({**base, "race": {"max_seeds": 6, "max_images": 96_000, "margin": 0.03}}).race == RaceConfig(
        max_seeds=6, max_images=96_000, margin=0.03)
    with pytest.raises(ConfigError, match=r"race.margin: expected a margin > 0 in the metric's units"):
        parse_spec({**base, "race": {"margin": 0}})
    with pytest.raises(ConfigError, match="race.max_images: 1000 is below the 24000 images each trial already trains"):
        parse_spec({**base, "race": {"max_images": 1000}})
    with pytest.raises(ConfigError, match="race.max_seeds: 2 is fewer than the 3 seeds"):
        parse_spec({**base, "race": {"max_seeds": 2}})
    with pytest.raises(ConfigError, match=r"race.alpha: expected a level in \(0, 0.5\]"):
        parse_spec({**base, "race": {"alpha": 0.9}})
    with pytest.raises(ConfigError, match="race: unknown key 'rounds'"):
        parse_spec({**base, "race": {"rounds": 3}})
    with pytest.raises(ConfigError, match="race: the objective udr"):
        parse_spec({**base, "metric": {"objective": "udr"}, "race": {}})


def test_race_seeds_continue_the_configurations_own_seed_sequence():
    spec = parse_spec({"study": "r", "dataset": "shapes", "search_space": {"beta": [1.0, 4.0]}, "seeds_per_trial": 2})
    assert [spec.seed_at(0, i) for i in range(2)] == spec.seeds_for(0)
    assert spec.seed_at(0, 5) == int(np.random.SeedSequence(0).spawn(6)[5].generate_state(1)[0])
    one = parse_spec({"study": "r", "dataset": "shapes", "search_space": {"beta": [1.0, 4.0]}})
    assert one.seed_at(0, 0) == one.seeds_for(0)[0] == 0 and one.seed_at(0, 1) != 0


def test_seeds_needed_is_statsmodels_for_a_hand_computed_case():
    a, b = ConfigResult("a", (0.80, 0.84, 0.82, 0.86)), ConfigResult("b", (0.78, 0.80, 0.79, 0.83))
    # by hand: means 0.83 and 0.80; sample variances 0.000667 and 0.0004667; pooled SD sqrt(0.000567) = 0.02380
    d = 0.03 / math.sqrt((np.var(a.values, ddof=1) + np.var(b.values, ddof=1)) / 2)
    assert d == pytest.approx(1.2603, abs=1e-4)
    expected = math.ceil(TTestIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8, ratio=1.0))
    assert expected == 11
    assert seeds_needed(welch(a, b)) == expected
    assert seeds_needed(welch(a, b, alpha=0.01)) == math.ceil(TTestIndPower().solve_power(effect_size=d, alpha=0.01, power=0.8))


def test_a_negligible_difference_needs_more_than_100_seeds_and_the_verdict_says_so():
    a, b = ConfigResult("a", (0.800, 0.900, 0.850)), ConfigResult("b", (0.851, 0.799, 0.899))
    assert seeds_needed(welch(a, b)) is None
    lines = verdict([ConfigResult("trial #0 (beta=4)", a.values, beta=4.0), ConfigResult("trial #1 (beta=1)", b.values, beta=1.0)],
                    "beta_vae").lines
    assert any("To tell β = 4 from β = 1 at this budget you would need more than 100 seeds each" in line for line in lines)


def test_the_verdict_gives_seeds_needed_for_the_beta_comparison():
    high, low = ConfigResult("trial #0 (beta=4)", (0.86, 0.80, 0.84), beta=4.0), ConfigResult("trial #1 (beta=1)", (0.80, 0.84, 0.78), beta=1.0)
    n = seeds_needed(welch(high, low))
    assert n is not None and 3 < n < 100
    assert f"To tell β = 4 from β = 1 at this budget you would need about {n} seeds each" in "\n".join(
        verdict([high, low], "beta_vae").lines)


def curves(start: float, slope: float, offsets: tuple[float, ...], budgets=(1000, 2000, 4000, 8000)) -> tuple:
    """Per-seed learning curves rising by ``slope`` per doubling of images, each seed shifted by its offset."""
    return tuple(tuple(start + o + slope * i + 0.002 * ((i * 7 + k) % 3) for i in range(len(budgets))) for k, o in enumerate(offsets))


def test_a_gap_that_grows_per_doubling_is_called_still_growing():
    budgets = (1000, 2000, 4000, 8000)
    best_curves, other_curves = curves(0.6, 0.05, (0.0, 0.01, -0.01)), curves(0.6, 0.0, (0.0, 0.02, -0.02))
    best = ConfigResult("trial #0 (beta=4)", tuple(c[-1] for c in best_curves), 4.0, budgets=budgets, curves=best_curves)
    other = ConfigResult("trial #1 (beta=2)", tuple(c[-1] for c in other_curves), 2.0, budgets=budgets, curves=other_curves)
    trend = gap_trend(best, other)
    assert trend.difference == pytest.approx(0.05, abs=0.003) and trend.low > 0
    text = "\n".join(verdict([best, other], "beta_vae").lines)
    assert "the best's lead changes by +0.05" in text and "still growing: training longer is likely to separate them" in text


def test_a_flat_gap_is_not_called_growing_and_no_curve_gives_no_trend():
    budgets = (1000, 2000, 4000)
    flat_a, flat_b = curves(0.7, 0.01, (0.0, 0.03, -0.03), budgets), curves(0.69, 0.01, (0.01, -0.02, 0.02), budgets)
    a = ConfigResult("a", tuple(c[-1] for c in flat_a), budgets=budgets, curves=flat_a)
    b = ConfigResult("b", tuple(c[-1] for c in flat_b), budgets=budgets, curves=flat_b)
    trend = gap_trend(a, b)
    assert trend.low < 0 < trend.high
    assert gap_trend(ConfigResult("a", a.values), b) is None
    assert "not clearly changing" in "\n".join(verdict([a, b], "x").lines)
