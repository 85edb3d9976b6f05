"""What scoring with fresh nuisance draws (disentanglement_lib's protocol) costs and moves, against one cached
code per grid point, on real colour and noisy dSprites.

For each set: a β-VAE trained briefly on it (width 16, 600 steps of 32), then the panel (Higgins, FactorVAE,
MIG, SAP; ``--num-train``/``--num-eval`` points) at metric seeds 0 and 1, cached
(:class:`~betasweep.metrics.encoding.GridEncoding`) and fresh (``panel_scores(..., fresh_nuisance=True)``).
Prints one JSON line per set: wall seconds of each, their ratio, and each metric's values.

    python benchmarks/fresh_nuisance.py --data PATH/dsprites_downsampled.npz
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-eval", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from betasweep.data import load_dataset
    from betasweep.metrics import MetricConfig, panel_scores, representation_function
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    for name in ("color_dsprites", "noisy_dsprites"):
        data = load_dataset(name, path=args.data)
        result = train(data, ModelConfig(latent_dim=10, width=16, num_channels=3),
                       TrainConfig(beta=1.0, batch_size=32, train_samples=32 * args.steps, learning_rate=1e-3, seed=0,
                                   device="cpu"))
        represent = representation_function(result.model)
        config = MetricConfig(num_train=args.num_train, num_eval=args.num_eval, panel=("beta_vae", "factor_vae", "mig", "sap"))
        out = {"dataset": name, "steps": args.steps, "num_train": args.num_train, "num_eval": args.num_eval}
        for fresh in (False, True):
            key = "fresh" if fresh else "cached"
            start = time.perf_counter()
            scores = [panel_scores(data, represent, np.random.default_rng(seed), config=config, fresh_nuisance=fresh)
                      for seed in (0, 1)]
            out[f"{key}_s"] = round(time.perf_counter() - start, 1)
            out[key] = {k: [round(s[k], 4) for s in scores] for k in ("beta_vae", "factor_vae", "mig", "sap")}
        out["cost_ratio"] = round(out["fresh_s"] / out["cached_s"], 2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
