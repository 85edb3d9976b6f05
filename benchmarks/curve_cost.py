"""``curve_cost``: what the learning curve (``metric.curve``) adds to a default-sweep trial.

Ours: one seed of the embedded default sweep's trial (``betasweep sweep`` with no spec: procedural
shapes, β 2, latent size 10, width 16 (the cheaper width of its search space, so the curve's share is
the larger), batch 16, 36,000 images, then the panel at disentanglement_lib's defaults and the
figures), with the default spec's learning curve scored at its 4 budgets. Baseline: the same run
without the curve's scoring, measured inside the same run: its wall time less the time spent in the
curve's callback. The curve changes nothing else (its scoring draws from its own rng and restores the
model's mode, so training is bit-identical with and without it), so this is the trial without the
curve, and the ratio does not depend on the load of the machine, which on 2 shared cores moved two
separate runs of the same trial by 5x. Target: the curve costs at most 25% of the trial.
"""

from __future__ import annotations

import tempfile
import time

from _harness import Context, median, record, rounded


def bench_curve_cost(ctx: Context) -> dict:
    """Seconds of a default-sweep seed with the curve / the same run less the curve's scoring."""
    from betasweep.scoring import curve_callback
    from betasweep.sweeps.objective import train_seed
    from betasweep.sweeps.spec import DEFAULT_SPEC, load_spec_data, parse_spec
    from betasweep.training import TrainConfig

    raw = dict(DEFAULT_SPEC)
    if ctx.quick:  # a quarter of the budget, the curve's budgets scaled alike (the curve's share is then larger)
        raw = {**raw, "train_samples": 9_000, "metric": {**raw["metric"], "curve": {
            **raw["metric"]["curve"], "budgets": [b // 4 for b in raw["metric"]["curve"]["budgets"]]}}}
    spec = parse_spec(raw)
    params = {"beta": 2.0, "latent_dim": 10, "width": 16}
    data = load_spec_data(spec)
    log_every = int(spec.fixed.get("log_every", TrainConfig.log_every))
    totals, curves = [], []
    for rep in range(1 if ctx.quick else 2):
        spent = [0.0]
        score = curve_callback(spec.curve_budgets, spec.curve, data, log_every)

        def on_record(record_, model):
            start = time.perf_counter()
            score(record_, model)
            spent[0] += time.perf_counter() - start

        with tempfile.TemporaryDirectory(prefix="betasweep-curve-cost-") as workdir:
            start = time.perf_counter()
            metrics, _, _ = train_seed(spec, params, spec.seeds_for(0)[0], workdir, data=data, on_record=on_record)
            totals.append(time.perf_counter() - start)
        assert metrics["curve"]["budgets"] == list(spec.curve_budgets)
        curves.append(spent[0])
    ratios = [total / (total - curve) for total, curve in zip(totals, curves)]
    ratio = median(ratios)
    return record(
        "curve_cost", ours=round(median(totals), 2), baseline=round(median([t - c for t, c in zip(totals, curves)]), 2),
        unit="s", ratio=round(ratio, 4), target="<= 1.25", met=ratio <= 1.25, ctx=ctx,
        totals_s=rounded(totals, 2), curve_s=rounded(curves, 2), ratios=rounded(ratios, 4),
        curve=spec.raw["metric"]["curve"], train_samples=spec.train_samples, params=params,
        ours_desc="train_seed of the default sweep's trial with metric.curve (its 4 budgets), the full panel, figures",
        baseline_desc="the same run less the time inside the curve's scoring (same run: training is bit-identical without it)",
    )
