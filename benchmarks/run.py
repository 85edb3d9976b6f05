"""betasweep's benchmarks: one JSON object per line, each a ratio against a same-run baseline.

    python benchmarks/run.py [--quick] [--only NAME ...] [--dsprites PATH] [--list]

Each benchmark is a function ``(ctx: Context) -> dict`` in :data:`BENCHMARKS`; its record has at
least ``name, ours, baseline, unit, ratio, target, met`` (see ``benchmarks/_harness.py`` and
``benchmarks/README.md``). To add one, write the function (here or in a module beside this file)
and add it to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    DEFAULT_DSPRITES,
    BenchmarkSkipped,
    Context,
    Stopwatch,
    interleaved,
    median,
    record,
    rounded,
)
from metric_panel import bench_metric_panel  # noqa: E402
from family_throughput import bench_family_throughput  # noqa: E402
from cpu_options import bench_cpu_options  # noqa: E402
from sweep_overhead import bench_sweep_overhead  # noqa: E402
from dataset_memory import bench_dataset_memory  # noqa: E402
from curve_cost import bench_curve_cost  # noqa: E402
from decide import bench_decide  # noqa: E402
from jobs import bench_jobs  # noqa: E402


# ---------------------------------------------------------------------------------------------
# 1. train_throughput: betasweep's train(...) vs a bare PyTorch loop of the same model
# ---------------------------------------------------------------------------------------------

def bench_train_throughput(ctx: Context) -> dict:
    """Images/s of ``train(...)`` vs a bare loop: same BetaVAE, batch, loss, Adam; warm-up skipped.

    The two loops are interleaved step by step inside one run of ours, so that load from other
    jobs hits both alike: ``train(...)`` runs with ``log_every = chunk`` (1) and a callback that,
    at each record, reads the clock (ours' span = ``chunk`` full steps of the real loop, including
    its sampling, ``.item()``, loss sums and the record itself: a history record every step is
    more bookkeeping than the default of one per 50, so this is conservative), then runs ``chunk``
    steps of the bare loop and times them, then restarts ours' clock. The first ``warmup`` steps
    of each are not timed. The ratio is the median over the pairs of adjacent chunks.

    Baseline: the ideal bare loop: a second model of the same ``ModelConfig`` with its own Adam,
    the loss written inline (BCE-with-logits summed over pixels and averaged over the batch,
    + β·KL averaged over the batch, summed over dimensions), fed from a pool of 8 pre-built batch
    tensors of real dSprites already on the device (no sampling, no ``.item()``, no bookkeeping).
    """
    from betasweep.models import BetaVAE, ModelConfig
    from betasweep.training import TrainConfig, train

    data = ctx.dsprites()
    model_config = ModelConfig(latent_dim=10, width=32, hidden_dim=256)
    batch_size, beta, lr = 64, 4.0, 1e-4
    warmup, chunk, chunks = (10, 1, 60) if ctx.quick else (50, 1, 400)
    device = torch.device(ctx.device)

    pool_rng = np.random.default_rng(12345)
    pool = [torch.from_numpy(data.sample_observations(batch_size, pool_rng)).to(device) for _ in range(8)]
    torch.manual_seed(1)
    bare_model = BetaVAE(model_config).to(device)
    bare_optimizer = torch.optim.Adam(bare_model.parameters(), lr=lr)
    bare_model.train()
    bare_step = 0

    def bare_steps(n: int) -> float:
        nonlocal bare_step
        ctx.sync()
        start = time.perf_counter()
        for _ in range(n):
            x = pool[bare_step % len(pool)]
            logits, mu, logvar, _ = bare_model(x)
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
            kl = (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)).mean(0).sum()
            loss = recon + beta * kl
            bare_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            bare_optimizer.step()
            bare_step += 1
        ctx.sync()
        return time.perf_counter() - start

    ours_values, baseline_values = [], []
    mark = None

    def callback(rec, model):
        nonlocal mark
        ctx.sync()
        now = time.perf_counter()
        if mark is not None:
            ours_values.append(chunk * batch_size / (now - mark))
            baseline_values.append(chunk * batch_size / bare_steps(chunk))
        else:
            bare_steps(warmup)  # the bare loop's warm-up, untimed
        mark = time.perf_counter()

    steps = warmup + chunk * chunks
    # log_every must divide the warm-up so that the first record falls at its end
    assert warmup % chunk == 0
    config = TrainConfig(beta=beta, batch_size=batch_size, train_samples=steps * batch_size,
                         learning_rate=lr, seed=0, log_every=chunk, device=ctx.device)
    train(data, model_config, config, callback=callback, progress=False)
    # drop the records that fell inside the warm-up
    skip = warmup // chunk - 1
    ours_values, baseline_values = ours_values[skip:], baseline_values[skip:]

    pair_ratios = [o / b for o, b in zip(ours_values, baseline_values)]
    ratio = median(pair_ratios)
    return record(
        "train_throughput", ours=round(median(ours_values), 1), baseline=round(median(baseline_values), 1),
        unit="images/s", ratio=round(ratio, 4), target=">= 0.95", met=ratio >= 0.95, ctx=ctx,
        ratio_desc="median over adjacent pairs (one step of ours, then one of the baseline) of ours/baseline images/s",
        ratio_of_medians=round(median(ours_values) / median(baseline_values), 4),
        model=model_config.to_dict(), batch_size=batch_size, beta=beta, learning_rate=lr,
        warmup_steps=warmup, chunk_steps=chunk, chunks=len(pair_ratios),
        pair_ratio_quartiles=rounded([float(q) for q in np.quantile(pair_ratios, [0.25, 0.5, 0.75])], 3),
        data="real dSprites (46,080-image grid)",
        ours_desc=f"train(dsprites, model_config, TrainConfig(log_every={chunk}, device='auto'...), progress=False)",
        baseline_desc="bare PyTorch loop, same ModelConfig/Adam/loss, pool of 8 pre-built batch tensors on the device (ideal)",
    )


# ---------------------------------------------------------------------------------------------
# 2. higgins_speedup: beta_vae_score (one encode per distinct image) vs disentanglement_lib's protocol
# ---------------------------------------------------------------------------------------------

def bench_higgins_speedup(ctx: Context) -> dict:
    """Wall time of ``beta_vae_score_reference`` / ``beta_vae_score`` at disentanglement_lib's defaults.

    Both get the same encoder (the mean of a briefly trained BetaVAE via
    ``representation_function``) and a fresh ``np.random.default_rng(metric_seed)``, so they score
    the same factor pairs. Quick mode keeps the defaults but narrows the encoder so that the
    reference (1.92 M images encoded, 64 at a time) takes about a minute on 2 CPU cores.
    """
    from betasweep.metrics.beta_vae import beta_vae_score, beta_vae_score_reference
    from betasweep.metrics.vae import representation_function
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    data = ctx.dsprites()
    if ctx.quick:
        model_config = ModelConfig(latent_dim=10, width=8, hidden_dim=64)
    else:
        model_config = ModelConfig(latent_dim=10, width=32, hidden_dim=256)
    train_steps, train_batch = 300, 16
    encoder_train = TrainConfig(beta=1.0, batch_size=train_batch, train_samples=train_steps * train_batch,
                                learning_rate=1e-3, seed=0, device=ctx.device)
    trained = train(data, model_config, encoder_train, progress=False)
    represent = representation_function(trained.model)
    metric = dict(batch_size=64, num_train=10_000, num_eval=5_000)
    metric_seed = 0

    ours_times, ours_scores = [], []

    def run_ours():
        with Stopwatch(ctx) as sw:
            scores = beta_vae_score(data, represent, np.random.default_rng(metric_seed), **metric)
        ours_times.append(sw.seconds)
        ours_scores.append(scores)

    # ours, reference, ours, ours: the single (long) reference run sits between runs of ours.
    run_ours()
    with Stopwatch(ctx) as sw:
        reference_scores = beta_vae_score_reference(data, represent, np.random.default_rng(metric_seed), **metric)
    reference_time = sw.seconds
    run_ours()
    run_ours()

    ours_time = median(ours_times)
    ratio = reference_time / ours_time
    score_ours = ours_scores[0]["eval_accuracy"]
    score_reference = reference_scores["eval_accuracy"]
    score_diff = abs(score_ours - score_reference)
    images_reference = (metric["num_train"] + metric["num_eval"]) * 2 * metric["batch_size"]
    return record(
        "higgins_speedup", ours=round(ours_time, 3), baseline=round(reference_time, 3), unit="s", ratio=round(ratio, 2),
        target=">= 20 (speed-up) and |score_diff| <= 0.01", met=ratio >= 20 and score_diff <= 0.01, ctx=ctx,
        met_speedup=ratio >= 20, met_score=score_diff <= 0.01,
        score_ours=score_ours, score_reference=score_reference, score_diff=score_diff,
        train_accuracy_ours=ours_scores[0]["train_accuracy"], train_accuracy_reference=reference_scores["train_accuracy"],
        scores_repeatable=all(s == ours_scores[0] for s in ours_scores),
        encoder=(f"BetaVAE encoder mean, latent_dim {model_config.latent_dim}, width {model_config.width}, "
                 f"hidden {model_config.hidden_dim}" + (" (narrow: quick mode)" if ctx.quick else "")
                 + f"; trained {train_steps} steps at batch {train_batch}, lr 1e-3, beta 1, seed 0"),
        **metric, metric_seed=metric_seed, images_encoded_reference=images_reference,
        data="real dSprites (46,080-image grid)", ours_reps=rounded(ours_times, 3), reference_reps=1,
        ratio_desc="reference_time / ours_time (median of 3 runs of ours around 1 reference run)",
    )


# ---------------------------------------------------------------------------------------------
# 3. shapes_render: Shapes().images_from_factors on 1,024-image batches vs a per-image loop
# ---------------------------------------------------------------------------------------------

def bench_shapes_render(ctx: Context) -> dict:
    """Images/s of the vectorised renderer on batches of 1,024 random factors vs rendering them one by one."""
    from betasweep.data import Shapes

    shapes = Shapes()
    n, reps = 1024, (5 if ctx.quick else 21)
    rng = np.random.default_rng(0)
    batches = [shapes.sample_factors(n, rng) for _ in range(reps)]
    identical = []
    outputs = {}

    def ours(rep: int) -> float:
        start = time.perf_counter()
        images = shapes.images_from_factors(batches[rep])
        seconds = time.perf_counter() - start
        outputs.setdefault(rep, []).append(images)
        return n / seconds

    def baseline(rep: int) -> float:
        factors = batches[rep]
        start = time.perf_counter()
        images = np.concatenate([shapes.images_from_factors(factors[i : i + 1]) for i in range(n)])
        seconds = time.perf_counter() - start
        outputs.setdefault(rep, []).append(images)
        return n / seconds

    shapes.images_from_factors(batches[0][:64])  # warm-up (first-touch allocations)
    ours_values, baseline_values = interleaved(ours, baseline, reps)
    identical = all(np.array_equal(*outputs[rep]) for rep in range(reps))
    o, b = median(ours_values), median(baseline_values)
    return record(
        "shapes_render", ours=round(o, 1), baseline=round(b, 1), unit="images/s", ratio=round(o / b, 3),
        target="ours >= 10000 images/s (absolute, 2 CPU cores)", met=o >= 10_000, ctx=ctx,
        batch=n, repetitions=reps, identical_images=identical,
        ours_reps=rounded(ours_values, 1), baseline_reps=rounded(baseline_values, 1),
        baseline_desc="Shapes().images_from_factors called once per image over the same 1,024 factor rows",
    )


# ---------------------------------------------------------------------------------------------
# 4. storage_latency and 5. trials_per_hour: distributed-sweep figures (benchmarks/storage.py).
#    They start PostgreSQL (and an mlflow server) and take minutes: not part of --quick.
# ---------------------------------------------------------------------------------------------

def _distributed():
    """benchmarks/storage.py, or BenchmarkSkipped where PostgreSQL's server binaries are missing."""
    import storage

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import ServerUnavailable, find_pg_bin

    try:
        find_pg_bin()
    except ServerUnavailable as error:
        raise BenchmarkSkipped(str(error)) from None
    return storage


def bench_storage_latency(ctx: Context) -> dict:
    """Per-trial storage latency (ask + 4 suggestions + tell) on PostgreSQL vs SQLite, 4 concurrent workers.

    Ours: PostgreSQL (default, durable settings, started here); baseline: SQLite on local disk, the
    embedded default. The ratio is SQLite's median over PostgreSQL's (> 1: PostgreSQL is faster per
    trial). The 1-worker figures and SQLite's "database is locked" errors ride along.
    """
    storage = _distributed()
    rows = storage.storage_latencies([1, 4], 200)
    by = {(row["storage"], row["n_workers"]): row for row in rows}
    pg, lite = by[("postgresql", 4)], by[("sqlite", 4)]
    ratio = lite["median_ms"] / pg["median_ms"]
    return record(
        "storage_latency", ours=pg["median_ms"], baseline=lite["median_ms"], unit="ms/trial (median, 4 workers)",
        ratio=round(ratio, 3), target="PostgreSQL with 4 concurrent workers: no errors (latency: informational)",
        met=pg["errors"] == 0, ctx=ctx, rows=rows,
        ratio_desc="SQLite median / PostgreSQL median per-trial storage latency, 4 concurrent worker processes",
        ours_desc="PostgreSQL 15, default settings, 127.0.0.1, 4 spawned processes, 200 timed trials in all",
        baseline_desc="SQLite file in a temporary directory, same load",
    )


def bench_trials_per_hour(ctx: Context) -> dict:
    """Trials per hour of 1, 2 and 4 real `betasweep worker` processes on one PostgreSQL study, tiny budget.

    The stack is real (PostgreSQL, `mlflow server` with proxied artifacts). Each worker count runs a
    fresh study of 8 tiny trials (real dSprites, 800 training images, small metric); throughput is
    complete trials over the span from the first trial's start to the last one's completion. Ours:
    4 workers; baseline: 1 worker in the same run; ratio: the speed-up.
    """
    storage = _distributed()
    if not ctx.dsprites_path.is_file():
        raise BenchmarkSkipped(f"real dSprites not found at {ctx.dsprites_path} (pass --dsprites PATH)")
    rows = storage.trials_per_hour([1, 2, 4], 8, ctx.dsprites_path)
    one, four = rows[0], rows[-1]
    ratio = four["trials_per_hour"] / one["trials_per_hour"]
    return record(
        "trials_per_hour", ours=four["trials_per_hour"], baseline=one["trials_per_hour"], unit="trials/h",
        ratio=round(ratio, 3), target=">= 1.5 (4 workers vs 1 on the same machine)", met=ratio >= 1.5, ctx=ctx,
        rows=rows, speedup_2_workers=rows[1]["speedup"],
        ratio_desc="trials/h with 4 worker processes / trials/h with 1, same run",
        ours_desc="4 `betasweep worker` processes, cpu_count // 4 torch threads each (at least 1)",
        baseline_desc="1 `betasweep worker` process, cpu_count torch threads",
    )


def bench_storage_proxy(ctx: Context) -> dict:
    """32 sleeping-objective clients on one PostgreSQL, directly and through the gRPC storage proxy.

    See benchmarks/storage_proxy.py. Ours: trials/s through the proxy (16 threads); baseline: trials/s
    of the same clients connected directly, same run. The target is about connections: the proxy
    holds at most its thread count however many clients there are.
    """
    _distributed()
    import storage_proxy

    direct, proxy = storage_proxy.measure(32, 10, 0.2)
    return record(
        "storage_proxy", ours=proxy["trials_per_s"], baseline=direct["trials_per_s"], unit="trials/s (32 clients)",
        ratio=round(proxy["trials_per_s"] / direct["trials_per_s"], 3),
        target=f"through the proxy PostgreSQL sees <= {storage_proxy.PROXY_THREADS} connections for 32 clients",
        met=proxy["pg_connections"] <= storage_proxy.PROXY_THREADS, ctx=ctx, rows=[direct, proxy],
        ratio_desc="trials/s through the proxy / trials/s direct, 32 client processes, same run",
        ours_desc="32 processes -> betasweep storage-proxy (16 threads) -> PostgreSQL 15 (defaults)",
        baseline_desc="32 processes -> PostgreSQL 15 (defaults), RDBStorage with heartbeats",
    )


# ---------------------------------------------------------------------------------------------
# The registry. Order here is the order of the output lines.
# ---------------------------------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[Context], dict]] = {
    "train_throughput": bench_train_throughput,
    "higgins_speedup": bench_higgins_speedup,
    "metric_panel": bench_metric_panel,
    "shapes_render": bench_shapes_render,
    "storage_latency": bench_storage_latency,
    "trials_per_hour": bench_trials_per_hour,
    "sweep_overhead": bench_sweep_overhead,
    "storage_proxy": bench_storage_proxy,
    "family_throughput": bench_family_throughput,
    "cpu_options": bench_cpu_options,
    "dataset_memory": bench_dataset_memory,
    "curve_cost": bench_curve_cost,
    "decide": bench_decide,
    "jobs": bench_jobs,
    # Add a benchmark as a function (ctx: Context) -> dict built with _harness.record(...), e.g. in a
    # module benchmarks/<name>.py imported here, and register it in this dict.
}

# Need PostgreSQL (and an mlflow server) and take minutes: run them with --only, or in a full run.
NOT_QUICK = {"storage_latency", "trials_per_hour", "sweep_overhead", "storage_proxy", "cpu_options", "decide"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"small settings; the whole run takes under 2 minutes (skips {', '.join(sorted(NOT_QUICK))})")
    parser.add_argument("--only", nargs="+", action="extend", metavar="NAME", choices=list(BENCHMARKS),
                        help=f"run only these benchmarks (of: {', '.join(BENCHMARKS)})")
    parser.add_argument("--dsprites", type=Path, default=DEFAULT_DSPRITES,
                        help=f"real dSprites .npz (default: {DEFAULT_DSPRITES})")
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0

    ctx = Context(quick=args.quick, dsprites_path=args.dsprites)
    names = args.only or [name for name in BENCHMARKS if not (args.quick and name in NOT_QUICK)]
    failed = 0
    for name in dict.fromkeys(names):
        start = time.perf_counter()
        try:
            rec = BENCHMARKS[name](ctx)
        except BenchmarkSkipped as skip:
            print(f"benchmarks: {name} skipped: {skip}", file=sys.stderr)
            failed += 1
            continue
        except Exception:  # report and go on with the others
            traceback.print_exc()
            print(f"benchmarks: {name} failed", file=sys.stderr)
            failed += 1
            continue
        rec["duration_s"] = round(time.perf_counter() - start, 1)
        assert math.isfinite(rec["ratio"]), rec
        print(json.dumps(rec), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
