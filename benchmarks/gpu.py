"""The CUDA path: images/s of ``train`` against a bare PyTorch loop with the data on the device, and
trials per hour with K = 1, 2, 4, 8 workers sharing one GPU.

    python benchmarks/gpu.py [--quick] [--dsprites PATH]

On a machine without CUDA it says so and exits 0 (nothing measured). One JSON object per line, as
``benchmarks/run.py`` prints them:

- ``gpu_throughput``: ours is ``train(dsprites, ModelConfig(width=32, latent_dim=10, hidden_dim=256),
  TrainConfig(batch_size=64, device="cuda", bf16=True, data_on_device=True))`` (the factor grid
  resident on the GPU as uint8, :class:`~betasweep.training.device_data.DeviceImages`), timed over
  fixed steps after a warm-up; baseline: the bare loop of the same model with the same grid on the
  device, indices drawn by ``torch.randint`` on the device, bf16 autocast, the loss inline, no
  bookkeeping (the ideal). Repetitions alternate. Also ours with ``data_on_device=False`` (the host
  path) and with ``compile=True``.
- ``gpu_workers``: K processes (K = 1, 2, 4, 8) each train one model of a fixed budget and score it
  with a small Higgins budget (a trial's work), all at once on the one GPU; trials per hour =
  ``K * 3600 / wall``, and the ratio of each K over K = 1 (what ``betasweep submit --workers-per-gpu K``
  buys).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import DEFAULT_DSPRITES, Context, interleaved, median, record  # noqa: E402

WORKER_COUNTS = (1, 2, 4, 8)


def bench_gpu_throughput(ctx: Context) -> dict:
    import torch.nn.functional as F

    from betasweep.models import BetaVAE, ModelConfig
    from betasweep.training import TrainConfig, train
    from betasweep.training.device_data import DeviceImages

    data = ctx.dsprites()
    batch = 64
    warmup, steps, reps = (20, 200, 3) if ctx.quick else (50, 1000, 5)
    model_config = ModelConfig(latent_dim=10, width=32, hidden_dim=256)
    grid = DeviceImages(data, "cuda").grid
    torch.manual_seed(0)
    bare_model = BetaVAE(model_config).cuda()
    bare_optimizer = torch.optim.Adam(bare_model.parameters(), lr=1e-4)

    def bare(rep: int) -> float:
        for i in range(warmup + steps):
            if i == warmup:
                ctx.sync()
                start = time.perf_counter()
            x = grid.index_select(0, torch.randint(len(grid), (batch,), device="cuda")).float()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits, mu, logvar, _ = bare_model(x)
            recon = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1).mean()
            loss = recon + 4.0 * (0.5 * (mu.float().pow(2) + logvar.float().exp() - logvar.float() - 1.0)).mean(0).sum()
            bare_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            bare_optimizer.step()
        ctx.sync()
        return steps * batch / (time.perf_counter() - start)

    def ours(**options):
        def run(rep: int) -> float:
            marks = []

            def callback(rec, model):
                ctx.sync()
                marks.append(time.perf_counter())

            config = TrainConfig(batch_size=batch, train_samples=(warmup + steps) * batch, seed=rep, log_every=1,
                                 device="cuda", bf16=True, **options)
            train(data, model_config, config, callback=callback)
            return steps * batch / (marks[-1] - marks[warmup - 1])
        return run

    variants = {"data_on_device": {"data_on_device": True}, "host_data": {"data_on_device": False},
                "data_on_device+compile": {"data_on_device": True, "compile": True}}
    images, baselines = {}, []
    for name, options in variants.items():
        values, base = interleaved(ours(**options), bare, reps)
        images[name] = round(median(values), 1)
        baselines += base
    baseline = median(baselines)
    return record("gpu_throughput", ours=images["data_on_device"], baseline=round(baseline, 1), unit="images/s",
                  ratio=round(images["data_on_device"] / baseline, 3), target=">= 0.8 of the bare loop with data on the GPU",
                  met=images["data_on_device"] / baseline >= 0.8, ctx=ctx, images_per_s=images,
                  ratio_per_variant={k: round(v / baseline, 3) for k, v in images.items()},
                  gpu=torch.cuda.get_device_name(0), batch_size=batch, timed_steps=steps, reps=reps)


def _one_trial(args) -> float:
    """A worker's trial in its own process: train a fixed budget on the GPU, score a small Higgins budget."""
    dsprites_path, steps = args
    import numpy as np

    from betasweep.data import DSprites
    from betasweep.metrics import MetricConfig, disentanglement_score
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    data = DSprites(dsprites_path)
    start = time.perf_counter()
    result = train(data, ModelConfig(latent_dim=10, width=32, hidden_dim=256),
                   TrainConfig(batch_size=64, train_samples=64 * steps, device="cuda", bf16=True, data_on_device=True))
    disentanglement_score(result.model, data, MetricConfig(num_train=2000, num_eval=1000), np.random.default_rng(0))
    return time.perf_counter() - start


def bench_gpu_workers(ctx: Context) -> dict:
    steps = 500 if ctx.quick else 3000
    spawn = multiprocessing.get_context("spawn")
    per_hour = {}
    for k in WORKER_COUNTS:
        with spawn.Pool(k) as pool:
            started = time.perf_counter()
            pool.map(_one_trial, [(str(ctx.dsprites_path), steps)] * k)
            wall = time.perf_counter() - started
        per_hour[k] = round(k * 3600 / wall, 1)
    ratios = {k: round(v / per_hour[1], 2) for k, v in per_hour.items()}
    best = max(per_hour, key=per_hour.get)
    return record("gpu_workers", ours=per_hour[best], baseline=per_hour[1], unit="trials/h", ratio=ratios[best],
                  target="> 1 (several workers per GPU beat one)", met=ratios[best] > 1, ctx=ctx,
                  trials_per_hour=per_hour, ratio_per_k=ratios, best_k=best, steps_per_trial=steps,
                  gpu=torch.cuda.get_device_name(0),
                  note="worker start-up (imports, data load) counted in each trial's wall time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dsprites", type=Path, default=DEFAULT_DSPRITES)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing measured")
        return 0
    ctx = Context(quick=args.quick, dsprites_path=args.dsprites, device="cuda")
    for bench in (bench_gpu_throughput, bench_gpu_workers):
        print(json.dumps(bench(ctx)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
