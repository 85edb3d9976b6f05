"""The verdict on constructed studies: per-seed values put in by hand, answers checked against SciPy."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import scipy.stats
from optuna.distributions import FloatDistribution

from betasweep.errors import ConfigError
from betasweep.sweeps.report import configuration_frame, spearman_table, study_verdict, write_report
from betasweep.sweeps.spec import parse_spec
from betasweep.sweeps.verdict import ConfigResult, verdict, welch

SPEC = parse_spec({"study": "v", "dataset": "shapes", "search_space": {"beta": {"low": 0.25, "high": 16, "log": True}},
                   "fixed": {"latent_dim": 6}, "seeds_per_trial": 3, "metric": {"panel": ["beta_vae", "mig"]}})


def constructed_study(configs: dict[float, list[float]], *, mig: dict[float, list[float]] | None = None,
                      collapsed: tuple[float, int] | None = None) -> optuna.Study:
    """A study with one COMPLETE trial per β, its per-seed beta_vae (and mig) values as the objective would record them."""
    study = optuna.create_study(direction="maximize")
    for beta, values in configs.items():
        per_seed = [{"beta_vae": v, "mig": (mig or {}).get(beta, values)[i], "active_units": 3} for i, v in enumerate(values)]
        if collapsed and collapsed[0] == beta:
            per_seed[collapsed[1]]["active_units"] = 0
        attrs = {"per_seed": per_seed, "seeds": [11, 22, 33][: len(values)], "beta_vae": float(np.mean(values)),
                 "mig": float(np.mean([m["mig"] for m in per_seed]))}
        study.add_trial(optuna.trial.create_trial(params={"beta": beta}, distributions={"beta": FloatDistribution(0.25, 16, log=True)},
                                                  value=float(np.mean(values)), user_attrs=attrs))
    return study


def test_welch_interval_and_p_are_scipys():
    a = ConfigResult("a", (0.91, 0.88, 0.93, 0.90))
    b = ConfigResult("b", (0.80, 0.86, 0.79))
    c = welch(a, b)
    result = scipy.stats.ttest_ind(a.values, b.values, equal_var=False)
    interval = result.confidence_interval(0.95)
    assert c.difference == pytest.approx(np.mean(a.values) - np.mean(b.values))
    assert c.p_value == pytest.approx(result.pvalue)
    assert (c.low, c.high) == (pytest.approx(interval.low), pytest.approx(interval.high))
    assert c.df == pytest.approx(result.df)
    assert a.se == pytest.approx(scipy.stats.sem(a.values))


def test_a_large_difference_names_the_winner_and_says_beta_above_one_beats_one():
    study = constructed_study({1.0: [0.70, 0.71, 0.69], 4.0: [0.90, 0.91, 0.92], 16.0: [0.60, 0.62, 0.61]})
    v = study_verdict(study, SPEC)
    text = "\n".join(v.lines)
    assert v.best.label.startswith("trial #1 (beta=4)")
    assert "Every other configuration is distinguishably worse (Welch's t-test" in text
    expected = scipy.stats.ttest_ind([0.90, 0.91, 0.92], [0.70, 0.71, 0.69], equal_var=False).confidence_interval(0.95)
    assert v.beta_comparison.difference == pytest.approx(0.21)
    assert f"[{expected.low:+.4f}, {expected.high:+.4f}]" in text
    assert "β > 1 beats β <= 1 at this budget" in text
    assert "No model collapsed" in text


def test_seed_noise_larger_than_the_beta_effect_is_not_distinguishable():
    # The measurement in small: the seed moves the score more than β does.
    study = constructed_study({1.0: [0.76, 0.85, 0.86], 2.0: [0.85, 0.80, 0.85], 16.0: [0.87, 0.88, 0.69]})
    v = study_verdict(study, SPEC)
    text = "\n".join(v.lines)
    best = max(v.configs, key=lambda c: c.mean)
    assert v.best is best and v.best.beta == 2.0
    for other in v.configs[1:]:  # both ties, by SciPy's own p
        assert scipy.stats.ttest_ind(other.values, best.values, equal_var=False).pvalue >= 0.05
    assert "Not distinguishable from it (Welch's t-test, two-sided, 5%): " in text
    assert "beta=1" in text.split("Not distinguishable from it")[1] and "beta=16" in text.split("Not distinguishable from it")[1]
    assert "not distinguishable at this budget" in text
    assert v.beta_comparison.low < 0 < v.beta_comparison.high


def test_collapsed_models_are_named_and_single_seeds_are_not_tested():
    study = constructed_study({1.0: [0.8, 0.82, 0.81], 8.0: [0.5, 0.7, 0.6]}, collapsed=(8.0, 2))
    text = "\n".join(study_verdict(study, SPEC).lines)
    assert "Collapsed models (0 active units" in text and "trial #1 seed 2 (33)" in text
    single = verdict([ConfigResult("x", (0.9,), beta=1.0), ConfigResult("y", (0.8,), beta=4.0)], "beta_vae")
    single_text = "\n".join(single.lines)
    assert "set seeds_per_trial >= 2" in single_text and "fewer than 2 seeds" in single_text


def test_rank_by_another_metric_changes_the_winner_and_an_unknown_one_is_refused():
    study = constructed_study({1.0: [0.9, 0.91, 0.92], 4.0: [0.7, 0.71, 0.72]},
                              mig={1.0: [0.1, 0.12, 0.11], 4.0: [0.4, 0.42, 0.41]})
    assert study_verdict(study, SPEC).best.beta == 1.0
    assert study_verdict(study, SPEC, "mig").best.beta == 4.0
    frame = configuration_frame(study, SPEC, "mig")
    assert list(frame["beta"]) == [4.0, 1.0]
    assert frame.loc[0, "mig_se"] == pytest.approx(scipy.stats.sem([0.4, 0.42, 0.41]))
    with pytest.raises(ConfigError, match="--rank-by 'sap'"):
        study_verdict(study, SPEC, "sap")


def test_spearman_table_is_scipys_over_trial_means(tmp_path):
    values = {0.5: [0.6] * 3, 1.0: [0.7] * 3, 2.0: [0.8] * 3, 4.0: [0.75] * 3}
    mig = {0.5: [0.3] * 3, 1.0: [0.1] * 3, 2.0: [0.2] * 3, 4.0: [0.4] * 3}
    study = constructed_study(values, mig=mig)
    table = spearman_table(study, SPEC)
    expected = scipy.stats.spearmanr([0.6, 0.7, 0.8, 0.75], [0.3, 0.1, 0.2, 0.4]).statistic
    assert table.loc["beta_vae", "mig"] == pytest.approx(expected) and math.isclose(table.loc["mig", "mig"], 1.0)
    page = write_report(study, SPEC, tmp_path / "r.html").read_text()
    assert page.index("Verdict") < page.index("Configurations: mean ± SE") < page.index("Spearman")
    assert "Score vs β, mean ± SE over seeds" in page and '"error_y"' in page


def test_paired_comparison_is_scipys_ttest_rel_over_the_shared_seeds_and_welch_otherwise():
    import scipy.stats

    from betasweep.sweeps.verdict import compare, paired

    a = ConfigResult("a", (0.81, 0.84, 0.80, 0.86, 0.90), seeds=(1, 2, 3, 4, 9))
    b = ConfigResult("b", (0.78, 0.83, 0.77, 0.84), seeds=(1, 2, 3, 4))
    c = paired(a, b)
    x, y = [0.81, 0.84, 0.80, 0.86], [0.78, 0.83, 0.77, 0.84]  # seed 9 has no partner
    assert c.test == "paired" and c.df == 3
    assert c.p_value == pytest.approx(scipy.stats.ttest_rel(x, y).pvalue)
    assert c.difference == pytest.approx(np.mean(np.subtract(x, y)))
    half = scipy.stats.t.ppf(0.975, 3) * np.std(np.subtract(x, y), ddof=1) / 2
    assert (c.low, c.high) == pytest.approx((c.difference - half, c.difference + half))
    assert compare(a, b, pair=False).test == "welch"
    assert compare(a, ConfigResult("d", (0.8, 0.82), seeds=(7, 8)), pair=True).test == "welch"  # no shared seeds


def test_holm_equals_statsmodels_and_tost_equals_ttost(monkeypatch):
    import gc

    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.weightstats import ttost_ind, ttost_paired

    from betasweep.sweeps.verdict import compare, equivalence_p, holm

    rng = np.random.default_rng(0)
    # statsmodels runs gc.collect() on every Holm call: in a test process holding torch and the session's
    # fixtures that is most of a second a call (40 s for these 50); collecting changes no result.
    monkeypatch.setattr(gc, "collect", lambda *args, **kwargs: 0)
    for _ in range(50):
        p = list(rng.uniform(0, 0.08, rng.integers(1, 6)))
        assert holm(p, 0.05) == list(multipletests(p, alpha=0.05, method="holm")[0])
    x, y = rng.normal(0.8, 0.01, 6), rng.normal(0.8, 0.01, 6)
    a, b = ConfigResult("a", tuple(x), seeds=tuple(range(6))), ConfigResult("b", tuple(y), seeds=tuple(range(6)))
    assert equivalence_p(compare(a, b, pair=True), 0.03) == pytest.approx(ttost_paired(x, y, -0.03, 0.03)[0])
    assert equivalence_p(compare(a, b), 0.03) == pytest.approx(ttost_ind(x, y, -0.03, 0.03, usevar="unequal")[0])
    assert equivalence_p(compare(a, b, pair=True), 0.03) < 0.05  # equal within ±0.03 at SD 0.01: equivalent
    far = ConfigResult("far", tuple(x - 0.1), seeds=tuple(range(6)))
    assert equivalence_p(compare(far, b, pair=True), 0.03) > 0.5
