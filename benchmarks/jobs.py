"""Training images/s of N processes of one torch thread each against one process of N threads (``--jobs``).

Ours: N spawned processes (N = the usable cores, at least 2), each training its own model
(``train(dsprites, ModelConfig(...), TrainConfig(threads=1, ...))``, seeds 0..N-1) at the same time,
as ``betasweep sweep --jobs N`` does. Baseline: one spawned process with ``threads=N`` training the
same N models one after the other, as ``--jobs 1`` does on N cores. Each process builds its data and
takes ``warmup`` untimed steps first; the N processes of ours then start their timed steps together
(a barrier), and ours' images/s is all their timed images over the span from that start to the last
one's end. The repetitions of ours and of the baseline alternate (``interleaved``), so that load from
other jobs hits both alike. Shape: the race example's and the default sweep's model at width 16
(latent 10, batch 16, hidden 256).
"""

from __future__ import annotations

import multiprocessing
import time

from _harness import Context, interleaved, median, record, rounded

SHAPE = {"width": 16, "latent_dim": 10, "hidden_dim": 256, "batch_size": 16}


def _train_timed(dsprites_path: str, seeds: list[int], threads: int, warmup: int, steps: int, barrier, out) -> None:
    """In a spawned process: train one model per seed (one after the other), each ``warmup`` untimed steps,
    then ``steps`` timed ones; put ``(start, end)`` of the timed span (all seeds together) on ``out``."""
    import torch

    torch.set_num_threads(threads)
    from betasweep.data import DSprites
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    data = DSprites(dsprites_path)
    batch = SHAPE["batch_size"]
    model = ModelConfig(latent_dim=SHAPE["latent_dim"], width=SHAPE["width"], hidden_dim=SHAPE["hidden_dim"])
    timed = 0.0
    first_start = None
    for i, seed in enumerate(seeds):
        marks = []

        def callback(rec, model, marks=marks, i=i):
            if len(marks) == 0 and rec["step"] == warmup and i == 0 and barrier is not None:
                barrier.wait()  # ours: every process starts its timed steps together
            marks.append(time.perf_counter())

        config = TrainConfig(batch_size=batch, train_samples=(warmup + steps) * batch, learning_rate=5e-4, seed=seed,
                             log_every=warmup, device="cpu", threads=threads, checkpoint_minutes=0)
        # log_every = warmup: a record at the end of the warm-up, then every warmup steps; steps % warmup == 0
        train(data, model, config, progress=False, callback=callback)
        timed += marks[-1] - marks[0]
        first_start = marks[0] if first_start is None else first_start
    out.put((first_start, first_start + timed, len(seeds) * steps * batch))


def bench_jobs(ctx: Context) -> dict:
    """images/s of N 1-thread processes over 1 process of N threads (see the module docstring)."""
    from betasweep.sweeps.jobs import usable_cores

    data = ctx.dsprites()  # BenchmarkSkipped without the file
    del data
    n = max(2, usable_cores())
    warmup, steps, reps = (10, 40, 2) if ctx.quick else (20, 200, 3)
    spawn = multiprocessing.get_context("spawn")

    def ours(rep: int) -> float:
        barrier, out = spawn.Barrier(n), spawn.Queue()
        procs = [spawn.Process(target=_train_timed, args=(str(ctx.dsprites_path), [i], 1, warmup, steps, barrier, out))
                 for i in range(n)]
        for p in procs:
            p.start()
        spans = [out.get() for _ in procs]
        for p in procs:
            p.join()
        start, end = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
        return sum(images for _, _, images in spans) / (end - start)

    def baseline(rep: int) -> float:
        out = spawn.Queue()
        proc = spawn.Process(target=_train_timed, args=(str(ctx.dsprites_path), list(range(n)), n, warmup, steps, None, out))
        proc.start()
        start, end, images = out.get()
        proc.join()
        return images / (end - start)

    ours_values, baseline_values = interleaved(ours, baseline, reps)
    o, b = median(ours_values), median(baseline_values)
    ratio = o / b
    return record(
        "jobs", ours=round(o, 1), baseline=round(b, 1), unit="images/s (training, all processes)", ratio=round(ratio, 3),
        target=">= 1.0: N processes of one thread at least as fast as one of N threads (then --jobs auto is the default)",
        met=ratio >= 1.0, ctx=ctx, processes=n, warmup_steps=warmup, timed_steps_per_model=steps, repetitions=reps,
        ours_reps=rounded(ours_values, 1), baseline_reps=rounded(baseline_values, 1), shape=SHAPE,
        data="real dSprites (46,080-image grid)",
        ratio_desc="median images/s of ours / median images/s of the baseline, repetitions interleaved",
        ours_desc=f"{n} spawned processes, torch 1 thread each, one model each, timed steps started together",
        baseline_desc=f"1 spawned process, torch {n} threads, the same {n} models one after the other",
    )
