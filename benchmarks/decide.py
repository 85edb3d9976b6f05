"""Benchmark ``decide``: how many images a decision takes, and how often it is wrong, on simulated studies.

Each simulated study has four configurations whose per-seed learning curves follow a parametric form
set from what this platform logged on real dSprites (README, ``examples/dsprites-race.yaml``: β = 1 at
24,000 images 0.819 ± 0.011 over 6 seeds, SD 0.027; β = 16 0.690; β = 4 gaining on β = 1 between 6,000 and
24,000 images). The per-seed curves were not kept, so the form is set from those summaries, not fitted
point by point: seed ``s`` of configuration ``c`` scores ``m_c(images) + u_{c,s} + e`` at each rung, with
a persistent seed effect ``u ~ N(0, SEED_SD)`` (``SEED_SD = 0.027``, β = 1's spread) and a fresh
evaluation noise ``e ~ N(0, EVAL_SD)`` per rung (0.006: a Higgins accuracy on 5,000 points). Truth:

- ``plain``: 0.82 at every budget (β = 1's plateau);
- ``late``: ``plain`` + 0.05 that appears only between 2x and 4x the first budget (logistic in log2 images);
- ``twin``: ``late`` again: equivalent to the best (within any margin);
- ``worse``: 0.70 (β = 16's mean).

At ``max_images`` (16x the first budget) the right verdict is: ``late`` and ``twin`` co-winners
(equivalent), ``plain`` worse by 0.05, ``worse`` worse. Three designs on the same studies:

- fixed: every configuration at ``max_seeds`` seeds and ``max_images`` images, one round of tests
  (paired t-tests against the best, Holm, TOST at the margin);
- seeds-only race (issue 16's): at the first budget, Welch's test at 5% each round, one seed more per
  round to every configuration not separated from the best;
- the race (:mod:`betasweep.sweeps.race`): extension or seeds, paired, Holm, alpha spent, TOST.

Figures: mean images to a decision per study, against the fixed design's; false separations (``late``
or ``twin`` called worse than the other); the equivalent pair called equivalent; ``plain`` found worse.
A second noise level (``SEED_SD = 0.01``, as if the plateau fix halved the spread) is run beside it.
The curve-trend test's power (the rule's "is the gap still changing" test: the per-seed change over the
last doubling, ``late`` against ``plain``, 3 seeds, between 2x and 4x) is measured here too.
Pure simulation: no training, seconds to a minute.
"""

from __future__ import annotations

import math
import time

import numpy as np

from _harness import Context, record
from betasweep.sweeps.race import ConfigRungs, run_race, rungs_of
from betasweep.sweeps.spec import RaceConfig
from betasweep.sweeps.verdict import ConfigResult, compare, equivalence_p, holm, welch

R0, MAX_IMAGES, MAX_SEEDS, MARGIN, ALPHA = 24_000, 384_000, 6, 0.03, 0.05
SEED_SD, EVAL_SD = 0.027, 0.006
CONFIGS = ("plain", "late", "twin", "worse")

# The noise fitted to the per-seed curves of the real race (examples/dsprites-decide.yaml: beta 1, 4, 16, 3
# seeds each, paired, 37 values at 24,000-384,000 images; its study as it stood at 20:30 UTC 2026-12-06) by
# `python3 benchmarks/decide.py --fit sqlite:////PATH/study.db`: a quadratic in log2(images) per beta, then
# the residuals split into a persistent seed effect (SD FIT_SEED_SD) and a per-rung one (FIT_EVAL_SD); the
# seeds' effects correlate across beta (0.73 over 3 seeds: too few to build in, so the simulation keeps
# them independent, which overstates the paired difference's spread if the correlation is real).
FIT_SEED_SD, FIT_EVAL_SD = 0.026, 0.039


def fit_noise(storage: str, study_name: str = "dsprites-decide", metric: str = "beta_vae") -> dict:
    """Fit this benchmark's noise model to a real race study's per-seed learning curves.

    Model (per configuration ``c``, seed ``s``, ``x = log2(images / first budget)``):
    ``y = a_c + b_c x + q_c x^2 + u_{c,s} + e_{c,s,x}``; the quadratic by least squares per configuration,
    then a one-way random-effects split of the residuals by seed: ``eval_sd`` from the spread within a seed's
    own curve (pooled, degrees of freedom corrected), ``seed_sd`` from the spread of the seeds' mean
    residuals less what ``eval_sd`` explains. Also the correlation of the seeds' mean residuals between
    configurations (how much pairing by seed removes).

    Returns:
        ``{"seed_sd", "eval_sd", "seed_corr", "curves": {label: {images: [per-seed values]}}, "n_values"}``.
    """
    import optuna

    from betasweep.sweeps.records import group_by_configuration, per_seed, rung_of, seeds_of

    study = optuna.load_study(study_name=study_name, storage=storage)
    rungs = (study.user_attrs.get("race") or {}).get("rungs")
    if not rungs:
        raise SystemExit(f"study {study_name!r} has no race state: fit_noise reads a raced study's rungs")
    first = int(rungs[0])
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    curves: dict[str, dict[int, dict[int, float]]] = {}
    for params, trials in group_by_configuration(complete).values():
        label = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        table = curves.setdefault(label, {})
        for t in trials:
            for seed, values in zip(seeds_of(t), per_seed(t, metric)):
                table.setdefault(int(seed), {})[rung_of(t, first)] = float(values[metric])
    within, within_df, seed_means, n_values = 0.0, 0, {}, 0
    for label, table in curves.items():
        rows = [(math.log2(images / first), y, seed) for seed, by in table.items() for images, y in by.items()]
        x = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        coef = np.polyfit(x, y, 2) if len(set(x)) >= 3 else np.polyfit(x, y, 1)
        residual = y - np.polyval(coef, x)
        n_values += len(rows)
        for seed in table:
            mine = residual[[r[2] == seed for r in rows]]
            seed_means[(label, seed)] = (float(mine.mean()), len(mine))
            within += float(((mine - mine.mean()) ** 2).sum())
            within_df += len(mine) - 1
        within_df -= len(coef)  # the fitted curve took its parameters from the same values
    eval_var = within / max(within_df, 1)
    means = np.array([m for m, _ in seed_means.values()])
    per_seed_n = np.mean([n for _, n in seed_means.values()])
    seed_var = max(float(means.var(ddof=1)) - eval_var / per_seed_n, 0.0)
    labels = list(curves)
    seeds = sorted(set.intersection(*(set(curves[c]) for c in labels))) if labels else []
    pairs = [np.corrcoef([seed_means[(a, s)][0] for s in seeds], [seed_means[(b, s)][0] for s in seeds])[0, 1]
             for i, a in enumerate(labels) for b in labels[i + 1:] if len(seeds) >= 3]
    return {"seed_sd": round(math.sqrt(seed_var), 4), "eval_sd": round(math.sqrt(eval_var), 4),
            "seed_corr": round(float(np.mean(pairs)), 2) if pairs else None, "n_values": n_values,
            "curves": {c: {str(images): [curves[c][s].get(images) for s in sorted(curves[c])]
                           for images in sorted({i for by in curves[c].values() for i in by})} for c in labels}}


def tost_seeds_needed(sd_difference: float, margin: float = MARGIN, alpha: float = ALPHA, power: float = 0.8) -> int:
    """Paired seeds for two one-sided tests (each at ``alpha``) to call two equal configurations equivalent
    within ``margin`` with probability ``power``; ``sd_difference`` is the SD of one seed's paired difference.
    The usual approximation for a true difference of 0: power = 2 F_t(margin / SE - t_(1-alpha), n - 1) - 1,
    SE = sd_difference / sqrt(n). The smallest n up to 1,000 (1,001: more)."""
    from scipy import stats

    for n in range(2, 1001):
        df = n - 1
        reach = margin / (sd_difference / math.sqrt(n)) - stats.t.ppf(1 - alpha, df)
        if 2 * stats.t.cdf(reach, df) - 1 >= power:
            return n
    return 1001


def mean_curve(name: str, images: int) -> float:
    gain = 0.05 / (1 + math.exp(-(math.log2(images / R0) - 1.5) / 0.4))
    return {"plain": 0.82, "late": 0.82 + gain, "twin": 0.82 + gain, "worse": 0.70}[name]


class Study:
    """One simulated study: seed effects drawn once, so every design sees the same seeds."""

    def __init__(self, rng: np.random.Generator, seed_sd: float, eval_sd: float = EVAL_SD):
        self.effect = {(c, s): rng.normal(0, seed_sd) for c in CONFIGS for s in range(64)}
        self.noise = {(c, s, r): rng.normal(0, eval_sd) for c in CONFIGS for s in range(64)
                      for r in rungs_of(R0, MAX_IMAGES)}

    def value(self, config: str, seed: int, images: int) -> float:
        return mean_curve(config, images) + self.effect[(config, seed)] + self.noise[(config, seed, images)]


def new_race(study: Study) -> tuple[dict[str, str], int]:
    rungs = rungs_of(R0, MAX_IMAGES)
    table = {c: ConfigRungs(c) for c in CONFIGS}

    def train(number, plan):
        for key, (seeds, images) in plan.items():
            for seed in range(seeds):
                at = table[key].values.setdefault(seed, {})
                for rung in rungs:
                    if rung <= images and rung not in at:
                        table[key].images += rung - max([r for r in at if r < rung], default=0)
                        at[rung] = study.value(key, seed, rung)
        return True

    train(-1, {c: (2, R0) for c in CONFIGS})
    result = run_race(lambda: table, train, RaceConfig(max_seeds=MAX_SEEDS, max_images=MAX_IMAGES, margin=MARGIN, alpha=ALPHA),
                      "score", rungs=rungs, pair=True)
    return result.words(), result.images


def fixed_design(study: Study) -> tuple[dict[str, str], int]:
    results = {c: ConfigResult(c, tuple(study.value(c, s, MAX_IMAGES) for s in range(MAX_SEEDS)), seeds=tuple(range(MAX_SEEDS)))
               for c in CONFIGS}
    best = max(CONFIGS, key=lambda c: results[c].mean)
    others = [c for c in CONFIGS if c != best]
    comparisons = {c: compare(results[c], results[best], ALPHA, pair=True) for c in others}
    rejected = holm([comparisons[c].p_value for c in others], ALPHA)
    words = {best: "best"}
    for c, reject in zip(others, rejected):
        words[c] = "worse" if reject else "equivalent" if equivalence_p(comparisons[c], MARGIN) < ALPHA else "undecided"
    return words, len(CONFIGS) * MAX_SEEDS * MAX_IMAGES


def seeds_only_race(study: Study) -> tuple[dict[str, str], int]:
    """Issue 16's race: at the first budget, Welch at 5% each round, one more seed to every one not separated."""
    seeds = {c: 2 for c in CONFIGS}
    racing, words = list(CONFIGS), {}
    while True:
        results = {c: ConfigResult(c, tuple(study.value(c, s, R0) for s in range(seeds[c]))) for c in racing}
        best = max(racing, key=lambda c: results[c].mean)
        kept = [best]
        for c in racing:
            if c != best:
                if welch(results[c], results[best]).distinguishable:
                    words[c] = "worse"
                else:
                    kept.append(c)
        racing = kept
        if len(racing) == 1 or all(seeds[c] >= MAX_SEEDS for c in racing):
            words[best] = "best"
            words.update({c: "undecided" for c in racing if c != best})
            return words, sum(seeds.values()) * R0
        for c in racing:
            seeds[c] += 1


def score(outcomes: list[tuple[dict[str, str], int]]) -> dict[str, float]:
    fixed_images = len(CONFIGS) * MAX_SEEDS * MAX_IMAGES
    n = len(outcomes)
    false = sum(w.get("late") == "worse" or w.get("twin") == "worse" for w, _ in outcomes)
    equivalent = sum(sorted((w.get("late"), w.get("twin"))) == ["best", "equivalent"] for w, _ in outcomes)
    plain = sum(w.get("plain") == "worse" for w, _ in outcomes)
    worse = sum(w.get("worse") == "worse" for w, _ in outcomes)
    return {"images_ratio": float(np.mean([i for _, i in outcomes]) / fixed_images), "false_separation": false / n,
            "pair_equivalent": equivalent / n, "late_gap_found": plain / n, "worse_found": worse / n}


def trend_power(rng: np.random.Generator, seed_sd: float, studies: int, eval_sd: float = EVAL_SD) -> float:
    """How often the race's trend test (the per-seed change over the doubling 2x -> 4x, ``late`` against ``plain``,
    3 paired seeds, interval at 95%) says the gap is changing; the true change there is +0.027."""
    hits = 0
    for _ in range(studies):
        study = Study(rng, seed_sd, eval_sd)
        change = {c: ConfigResult(c, tuple(study.value(c, s, 4 * R0) - study.value(c, s, 2 * R0) for s in range(3)),
                                  seeds=(0, 1, 2)) for c in ("late", "plain")}
        trend = compare(change["late"], change["plain"], ALPHA, pair=True)
        hits += trend.low > 0 or trend.high < 0
    return hits / studies


def bench_decide(ctx: Context) -> dict:
    studies = 60 if ctx.quick else 200
    start = time.perf_counter()
    figures = {}
    for label, seed_sd, eval_sd in (("dsprites_sd", SEED_SD, EVAL_SD), ("half_sd", SEED_SD / 2.7, EVAL_SD),
                                    ("fitted", FIT_SEED_SD, FIT_EVAL_SD)):
        rng = np.random.default_rng(21)
        drawn = [Study(rng, seed_sd, eval_sd) for _ in range(studies)]
        figures[label] = {design: score([run(study) for study in drawn])
                          for design, run in (("fixed", fixed_design), ("seeds_only", seeds_only_race), ("race", new_race))}
        figures[label]["trend_power"] = trend_power(np.random.default_rng(22), seed_sd, studies, eval_sd)
        # what the equivalence target needs at this noise: paired seeds for 80% TOST power at the margin
        figures[label]["tost_seeds_80"] = tost_seeds_needed(math.sqrt(2 * (seed_sd ** 2 + eval_sd ** 2)))
    main = figures["dsprites_sd"]["race"]
    fixed_images = len(CONFIGS) * MAX_SEEDS * MAX_IMAGES
    met = main["images_ratio"] <= 1 / 3 and main["false_separation"] <= ALPHA and main["pair_equivalent"] >= 0.8
    return record("decide", ours=main["images_ratio"] * fixed_images, baseline=float(fixed_images), unit="images per study",
                  ratio=main["images_ratio"],
                  target="<= 1/3 of the fixed design's images, false separation <= 0.05, equivalent pair >= 80%",
                  met=met, ctx=ctx, studies=studies, seconds=round(time.perf_counter() - start, 1),
                  **{f"{label}_{design}_{k}": round(v, 3) if isinstance(v, float) else v
                     for label, by in figures.items() for design, values in by.items()
                     for k, v in (values.items() if isinstance(values, dict) else [("", values)])})


if __name__ == "__main__":
    import json
    import sys

    if "--fit" in sys.argv:  # the noise model fitted to a real race study: --fit STORAGE [STUDY]
        at = sys.argv.index("--fit")
        print(json.dumps(fit_noise(*sys.argv[at + 1:at + 3])))
    else:
        print(json.dumps(bench_decide(Context(quick="--quick" in sys.argv, dsprites_path=None))))
