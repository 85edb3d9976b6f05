"""The mean-image plateau: collapsed seeds and seed SD with the grey and the data-mean decoder start.

Run by itself (an hour on 2 loaded cores; not part of run.py):

    python benchmarks/plateau.py --data dsprites --betas 1,4,16 --latent-dim 10 --width 16 --samples 24000 --seeds 0-5
    python benchmarks/plateau.py --summary out.jsonl

Trains every (seed, β) with ``TrainConfig.output_bias_init`` ``default`` (PyTorch's grey start) and
``data_mean`` (the logit of the data's mean pixel) at one torch thread, batch 16, learning rate 5e-4
(the race example's recipe on real dSprites; ``--data shapes`` for the default sweep's data), and
prints one JSON line per model: the Higgins score (disentanglement_lib's defaults: 10,000 / 5,000
points, batch 64), active units (0: collapsed), recon loss and KL. ``--summary`` reads those lines
back: per start, the collapsed models and per β the mean, SD and minimum of the score over the
seeds that have all their models.
"""
import argparse, json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from betasweep.data import load_dataset
from betasweep.models import ModelConfig
from betasweep.training import TrainConfig, train
from betasweep.metrics.evaluate import MetricConfig, evaluate_model

p = argparse.ArgumentParser()
p.add_argument("--data", default="shapes")
p.add_argument("--betas", default="1.67")
p.add_argument("--latent-dim", type=int, default=6)
p.add_argument("--width", type=int, default=16)
p.add_argument("--samples", type=int, default=36000)
p.add_argument("--seeds", default="0-9")
p.add_argument("--inits", default="default,data_mean")
p.add_argument("--num-train", type=int, default=10000)
p.add_argument("--num-eval", type=int, default=5000)
p.add_argument("--summary", default=None, help="a file of this script's output lines: print the summary and exit")
a = p.parse_args()
if a.summary:
    import statistics as st

    rows = [json.loads(line) for line in open(a.summary)]
    count = {}
    for r in rows:
        count[r["seed"]] = count.get(r["seed"], 0) + 1
    most = max(count.values())
    rows = [r for r in rows if count[r["seed"]] == most]
    print("seeds:", sorted({r["seed"] for r in rows}))
    for init in sorted({r["init"] for r in rows}):
        col = [r for r in rows if r["init"] == init]
        print(f"{init}: collapsed (0 active units) {sum(r['active_units'] == 0 for r in col)} of {len(col)}")
        for beta in sorted({r["beta"] for r in col}):
            v = [r["higgins"] for r in col if r["beta"] == beta]
            print(f"  beta {beta:g}: Higgins mean {st.mean(v):.3f} SD {st.stdev(v):.3f} min {min(v):.3f}; active units "
                  f"{[r['active_units'] for r in col if r['beta'] == beta]}")
    sys.exit(0)
if a.data == "shapes":
    data = load_dataset("shapes", subsample=[1, 1, 4, 2, 2])
else:
    data = load_dataset("dsprites", "/work/shared/data/dsprites/dsprites_downsampled.npz")
lo, hi = map(int, a.seeds.split("-"))
mc_metric = MetricConfig(seed=0, num_train=a.num_train, num_eval=a.num_eval, batch_size=64, panel=("beta_vae",))
for seed in range(lo, hi + 1):
    for beta in map(float, a.betas.split(",")):
        for init in a.inits.split(","):
            t = time.time()
            mc = ModelConfig(latent_dim=a.latent_dim, width=a.width, num_channels=data.num_channels)
            tc = TrainConfig(beta=beta, batch_size=16, learning_rate=5e-4, train_samples=a.samples, seed=seed,
                             device="cpu", threads=1, output_bias_init=init, checkpoint_minutes=0)
            r = train(data, mc, tc)
            t_train = time.time() - t
            m = evaluate_model(r.model, data, mc_metric)
            print(json.dumps({"data": a.data, "beta": beta, "m": a.latent_dim, "width": a.width, "samples": a.samples,
                              "seed": seed, "init": init, "higgins": m["eval_accuracy"], "active_units": m["active_units"],
                              "recon": m["recon_loss"], "kl": m["kl"], "train_s": round(t_train, 1),
                              "eval_s": round(time.time() - t - t_train, 1)}), flush=True)
