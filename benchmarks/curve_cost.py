"""``curve_cost``: what the learning curve (``metric.curve``) adds to a default-sweep trial.

Ours: one seed of the embedded default sweep (``betasweep sweep`` with no spec: procedural shapes,
β 2, latent size 10, width 16 (the cheaper width of its search space, so the curve's share is the
larger), batch 16, 36,000 images, then the panel at disentanglement_lib's defaults and the figures),
with the default spec's learning curve scored at its 4 budgets. Baseline: the same seed of the same
trial without the curve. The two alternate (interleaved) and each side's median is taken; the time
spent inside the curve's scoring is also measured within each run of ours (``curve_share``), a
figure that does not depend on the machine's load. Target: the curve costs at most 25% of the trial.
"""

from __future__ import annotations

import tempfile
import time

from _harness import Context, interleaved, median, record, rounded


def bench_curve_cost(ctx: Context) -> dict:
    """Seconds of a default-sweep seed with the curve / without it, alternated."""
    from betasweep.sweeps.objective import curve_callback, load_spec_data, train_seed
    from betasweep.sweeps.spec import DEFAULT_SPEC, parse_spec
    from betasweep.training import TrainConfig

    raw = dict(DEFAULT_SPEC)
    if ctx.quick:  # a quarter of the budget, the curve's budgets scaled alike
        raw = {**raw, "train_samples": 9_000, "metric": {**raw["metric"], "curve": {
            **raw["metric"]["curve"], "budgets": [b // 4 for b in raw["metric"]["curve"]["budgets"]]}}}
    with_curve = parse_spec(raw)
    without = parse_spec({**raw, "metric": {k: v for k, v in raw["metric"].items() if k != "curve"}})
    params = {"beta": 2.0, "latent_dim": 10, "width": 16}
    data = load_spec_data(with_curve)
    log_every = int(with_curve.fixed.get("log_every", TrainConfig.log_every))
    shares: list[float] = []

    def one(spec, timed_curve: bool) -> float:
        spent = [0.0]
        score = curve_callback(spec, data, log_every) if spec.curve is not None else None

        def on_record(record, model):
            if score is not None:
                start = time.perf_counter()
                score(record, model)
                spent[0] += time.perf_counter() - start

        with tempfile.TemporaryDirectory(prefix="betasweep-curve-cost-") as workdir:
            start = time.perf_counter()
            metrics, _, _ = train_seed(spec, params, spec.seeds_for(0)[0], workdir, data=data, on_record=on_record)
            seconds = time.perf_counter() - start
        if timed_curve:
            assert len(metrics["curve"]["budgets"]) == len(spec.curve_budgets)
            shares.append(spent[0] / (seconds - spent[0]))
        return seconds

    reps = 2
    ours, baseline = interleaved(lambda rep: one(with_curve, True), lambda rep: one(without, False), reps)
    ratio = median(ours) / median(baseline)
    return record(
        "curve_cost", ours=round(median(ours), 2), baseline=round(median(baseline), 2), unit="s", ratio=round(ratio, 4),
        target="<= 1.25", met=ratio <= 1.25, ctx=ctx, ours_s=rounded(ours, 2), baseline_s=rounded(baseline, 2),
        curve_share=rounded(shares, 4), curve_share_median=round(median(shares), 4),
        curve=with_curve.raw["metric"]["curve"], train_samples=with_curve.train_samples, params=params,
        ours_desc="train_seed of the default sweep's spec with metric.curve (its 4 budgets) + the full panel + figures",
        baseline_desc="the same seed of the same trial without metric.curve",
    )
