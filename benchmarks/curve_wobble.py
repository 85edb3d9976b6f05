"""Is a seed's wobble between rungs high-frequency? The Higgins score every few thousand images.

Run by itself (5-15 min per model on 2 loaded cores; not part of run.py):

    python benchmarks/curve_wobble.py --data PATH/dsprites_downsampled.npz --beta 4 --seed 0
    python benchmarks/curve_wobble.py --data PATH/dsprites_downsampled.npz --metric-seeds 5 --checkpoints 'DIR/*/seed-0/checkpoint.pt'

The first form trains one model with the race example's recipe (``examples/dsprites-decide.yaml``: latent 10,
width 16, batch 16, learning rate 5e-4, one torch thread) to ``--samples`` images and scores the Higgins et al.
metric at disentanglement_lib's settings (10,000 / 5,000 points, batch 64, metric seed 0) every ``--every``
images from ``--start``; it prints each score, the SD of the scores around a quadratic in log2(images) and the
SD of successive differences over sqrt(2). If those are near the per-rung wobble that ``decide.py --fit``
finds between doublings, scoring the mean of a seed's last few checkpoints would remove it; if they are far
smaller, the wobble is the seed's own slow curve (a seed x budget interaction) and only more seeds average it.
The second form scores existing checkpoints at ``--metric-seeds`` metric seeds: the metric's own noise.
"""
import argparse
import glob

import numpy as np
import torch

from betasweep.data import load_dataset
from betasweep.metrics import MetricConfig, labelled_view, panel_scores, representation_function
from betasweep.models import ModelConfig
from betasweep.training import TrainConfig, train

torch.set_num_threads(1)
p = argparse.ArgumentParser()
p.add_argument("--data", required=True, help="dsprites_downsampled.npz")
p.add_argument("--beta", type=float, default=4.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--samples", type=int, default=96000)
p.add_argument("--start", type=int, default=48000)
p.add_argument("--every", type=int, default=4000)
p.add_argument("--checkpoints", default=None, help="a glob of checkpoints: score each at --metric-seeds seeds")
p.add_argument("--metric-seeds", type=int, default=5)
a = p.parse_args()
data = load_dataset("dsprites", path=a.data)
config = MetricConfig(seed=0, panel=("beta_vae",), num_train=10000, num_eval=5000, batch_size=64)


def higgins(model, metric_seed: int = 0) -> float:
    return float(panel_scores(labelled_view(model, data), representation_function(model),
                              np.random.default_rng(metric_seed), config=config)["beta_vae"])


if a.every % 16:
    p.error("--every: a multiple of the batch size, 16")
if a.checkpoints:
    import betasweep as bs

    sds = []
    for path in sorted(glob.glob(a.checkpoints)):
        model = bs.load_model(path).model
        scores = [higgins(model, k) for k in range(a.metric_seeds)]
        sds.append(np.std(scores, ddof=1))
        print(path, np.round(scores, 4), f"SD {sds[-1]:.4f}", flush=True)
    print(f"the metric's own SD on a fixed model: mean {np.mean(sds):.4f} over {len(sds)} checkpoints")
    raise SystemExit
points = []


def score(record, model) -> None:
    if record["samples"] >= a.start and record["samples"] % a.every == 0:
        points.append((record["samples"], higgins(model)))
        print(*points[-1], flush=True)


model_config = ModelConfig(latent_dim=10, width=16, num_channels=data.num_channels)
train(data, model_config, TrainConfig(beta=a.beta, batch_size=16, learning_rate=5e-4, train_samples=a.samples,
                                      seed=a.seed, log_every=max(1, a.every // 16), threads=1, checkpoint_minutes=1e9), callback=score)
x, y = np.log2([s for s, _ in points]), np.array([v for _, v in points])
around = (y - np.polyval(np.polyfit(x, y, 2), x)).std(ddof=3)
print(f"seed {a.seed} beta {a.beta:g}: SD around a quadratic {around:.4f}, "
      f"SD of successive differences / sqrt 2 {np.diff(y).std(ddof=1) / np.sqrt(2):.4f} ({len(points)} points)")
