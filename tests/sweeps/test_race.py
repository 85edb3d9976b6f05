"""The race and the power figure on controls with known answers: per-seed values drawn from fixed distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import TTestIndPower

from betasweep.errors import ConfigError
from betasweep.sweeps.race import run_race
from betasweep.sweeps.spec import RaceConfig, parse_spec
from betasweep.sweeps.verdict import ConfigResult, gap_trend, seeds_needed, verdict, welch

RACES = 300


def race_of(means: dict[str, float], sd: float, max_seeds: int, rng: np.random.Generator, start: int = 2):
    """A race whose seeds are draws from N(means[k], sd): ``start`` seeds each before it, one more per round."""
    values = {k: list(rng.normal(m, sd, start)) for k, m in means.items()}
    added: list[int] = []

    def get_configs():
        return {k: ConfigResult(f"config {k}", tuple(v)) for k, v in values.items()}

    def add_seeds(number, needing):
        for key in needing:
            values[key].append(float(rng.normal(means[key], sd)))
        added.append(len(needing))
        return len(needing)

    return run_race(get_configs, add_seeds, RaceConfig(max_seeds=max_seeds), "score"), values


def test_configurations_three_sd_apart_are_separated_within_max_seeds():
    rng = np.random.default_rng(0)
    results = [race_of({"good": 3.0, "bad": 0.0}, 1.0, 8, rng) for _ in range(RACES)]
    decided = [r for r, _ in results if r.status == "decided"]
    assert len(decided) == RACES  # 3 SD: Welch separates them by 3-4 seeds a side, far inside 8
    assert all(r.winner.label == "config good" for r in decided)
    assert all(len(v["good"]) <= 8 for _, v in results)
    result, values = results[0]
    assert result.lines[0].startswith("Race (at most 8 seeds per configuration") and "config good wins after" in result.lines[0]
    assert result.rounds[-1].kept == ["good"] and "bad" in result.rounds[-1].dropped


def test_equal_configurations_are_not_separated_and_the_race_stops_at_max_seeds():
    rng = np.random.default_rng(1)
    results = [race_of({"a": 0.5, "b": 0.5}, 0.1, 6, rng) for _ in range(RACES)]
    undecided = [(r, v) for r, v in results if r.status == "undecided"]
    # Five tests at 5% one after the other: false separations stay a small multiple of 5% (measured 10%).
    assert len(undecided) >= 0.8 * RACES
    for result, values in undecided:
        assert [len(v) for v in values.values()] == [6, 6]  # stopped at max_seeds, not before
        assert "max_seeds = 6 did not decide it" in result.lines[0]
        assert "you would need" in result.lines[1]
    # A race that separates equal configurations does so by a test at 5%, never with a seed past max_seeds.
    assert all(len(v) <= 6 for _, v in results for v in v.values())


def test_a_race_starts_by_bringing_single_seeds_to_two():
    rng = np.random.default_rng(2)
    result, values = race_of({"a": 1.0, "b": 0.0, "c": 0.0}, 0.05, 4, rng, start=1)
    assert result.rounds[0].verdict.untestable  # one seed each: nothing is testable before the race adds seeds
    assert result.status == "decided" and result.winner.label == "config a"


def test_max_seeds_below_the_seeds_trained_is_refused():
    rng = np.random.default_rng(3)
    with pytest.raises(ConfigError, match="--max-seeds 2: fewer than the 3 seeds config a already has"):
        race_of({"a": 0.0, "b": 1.0}, 1.0, 2, rng, start=3)


def test_race_settings_are_validated_in_the_spec():
    base = {"study": "r", "dataset": "shapes", "search_space": {"beta": [1.0, 4.0]}, "seeds_per_trial": 3}
    assert parse_spec({**base, "race": {"max_seeds": 6}}).race == RaceConfig(max_seeds=6, alpha=0.05)
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
