"""Training images/s of each CPU training option against today's fp32 loop, measured in the same run.

Ours: ``train(dsprites, ModelConfig(width=W, latent_dim=m), TrainConfig(batch_size=B, device="cpu",
<option>))`` for each option of :data:`OPTIONS` (bfloat16 autocast, channels-last, both, both with
``torch.compile``, two intra-op threads instead of one). Baseline: the same ``train`` with every
option off (``cpu_bf16=False``): the fp32 loop as it was before the options existed. Repetitions of
each option and of the baseline alternate (``interleaved``), so load from other jobs hits both alike;
each rep times a fixed number of steps after a warm-up (``torch.compile``'s compilation falls in the
warm-up and is reported apart, ``compile_s``). Shapes: the default sweep's models (batch 16,
width 16 and 32) and disentanglement_lib's (Burgess, width 32, batch 64). The headline is
bf16 + channels-last at the default sweep's width 32; ``ratios`` has every option at every shape.
"""

from __future__ import annotations

import time

import torch

from _harness import BenchmarkSkipped, Context, interleaved, median, record

OPTIONS = {
    "bf16": {"cpu_bf16": True},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"cpu_bf16": True, "channels_last": True},
    "bf16+channels_last+compile": {"cpu_bf16": True, "channels_last": True, "compile": True},
    "threads=2": {"threads": 2},
}
SHAPES = {  # name -> (width, latent_dim, batch_size)
    "sweep-w16-b16": (16, 6, 16),
    "sweep-w32-b16": (32, 10, 16),
    "burgess-w32-b64": (32, 10, 64),
}
HEADLINE = ("sweep-w32-b16", "bf16+channels_last")


def bench_cpu_options(ctx: Context) -> dict:
    """images/s of ``train`` with each CPU option over the fp32 loop's (see the module docstring)."""
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train
    from betasweep.training.speed import cpu_has_bf16

    if ctx.device != "cpu":
        raise BenchmarkSkipped("CPU options: run on a machine without CUDA (or CUDA_VISIBLE_DEVICES=)")
    data = ctx.dsprites()
    warmup, steps, reps = (4, 12, 3) if ctx.quick else (10, 40, 5)
    compile_s: dict[str, float] = {}

    def run_of(shape: str, options: dict):
        width, latent, batch = SHAPES[shape]
        model = ModelConfig(latent_dim=latent, width=width, hidden_dim=256)

        def run(rep: int) -> float:
            marks = []
            started = time.perf_counter()

            def callback(rec, model):
                marks.append(time.perf_counter())

            config = TrainConfig(batch_size=batch, train_samples=(warmup + steps) * batch, learning_rate=1e-4,
                                 seed=rep, log_every=1, device="cpu", **{"cpu_bf16": False, **options})
            train(data, model, config, callback=callback, progress=False)
            if options.get("compile"):
                compile_s[shape] = round(marks[0] - started, 1)
            return steps * batch / (marks[-1] - marks[warmup - 1])
        return run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the options are compared one thread each (threads=2 sets its own)
    try:
        ratios: dict[str, dict[str, float]] = {}
        images: dict[str, dict[str, float]] = {}
        for shape in SHAPES:
            baselines = []
            ratios[shape], images[shape] = {}, {}
            for name, options in OPTIONS.items():
                ours, base = interleaved(run_of(shape, options), run_of(shape, {}), reps)
                baselines += base
                ratios[shape][name] = round(median([o / b for o, b in zip(ours, base)]), 3)
                images[shape][name] = round(median(ours), 1)
            images[shape]["fp32"] = round(median(baselines), 1)
    finally:
        torch.set_num_threads(threads)
    shape, option = HEADLINE
    ratio = ratios[shape][option]
    return record(
        "cpu_options", ours=images[shape][option], baseline=images[shape]["fp32"], unit="images/s", ratio=ratio,
        target="> 1.1 for an option to be on by default (and the parity test passing)", met=ratio > 1.1, ctx=ctx,
        ratio_desc=f"{option} over fp32 at {shape} (median over alternating repetitions of per-pair ratios)",
        ratios=ratios, images_per_s=images, compile_s=compile_s, cpu_has_bf16=cpu_has_bf16(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(), shapes=SHAPES, warmup_steps=warmup,
        timed_steps=steps, reps=reps, data="real dSprites (46,080-image grid)",
        ours_desc="train(..., TrainConfig(device='cpu', <option>, log_every=1)), one torch thread unless threads=2",
        baseline_desc="the same train(...) with cpu_bf16=False and no other option: the fp32 loop",
    )
