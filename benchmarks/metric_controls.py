"""Not a timing benchmark: the panel's control figures on the real dSprites grid (README, "The metric panel").

    python benchmarks/metric_controls.py [NUM_TRAIN NUM_EVAL] [--no-dci] [--dsprites PATH]

Scores five control representations (codes of every grid image: the factor class indices as
floats, a random one, the factor values without shape, posX/posY rotated by 45°, the factor values
permuted and rescaled) with every metric of the panel at disentanglement_lib's defaults (10,000 /
5,000 points) and metric seed 0; one JSON line per representation. With DCI it takes about 15-20
minutes of one core (DCI on the random codes alone about 5).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _harness import DEFAULT_DSPRITES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("num_train", type=int, nargs="?", default=10_000)
    parser.add_argument("num_eval", type=int, nargs="?", default=5_000)
    parser.add_argument("--no-dci", action="store_true")
    parser.add_argument("--dsprites", default=str(DEFAULT_DSPRITES))
    args = parser.parse_args()

    from betasweep.data import DSprites
    from betasweep.metrics import GridEncoding, beta_vae_score, dci, factor_vae_score, mig, sap_score

    data = DSprites(args.dsprites)
    nt, ne = args.num_train, args.num_eval
    factors = data.factors_from_flat_index(np.arange(data.num_images)).astype(np.float64)
    mixed = factors.copy()
    mixed[:, 3] = (factors[:, 3] + factors[:, 4]) / np.sqrt(2)
    mixed[:, 4] = (factors[:, 3] - factors[:, 4]) / np.sqrt(2)
    controls = {
        "factor_values": factors,
        "random": np.random.default_rng(123).normal(size=(data.num_images, 10)),
        "no_shape": factors[:, 1:],
        "mix_posx_posy": mixed,
        "permuted_rescaled": factors[:, [3, 0, 4, 2, 1]] * np.array([2.5, 0.3, 7.0, 1.0, 0.5]),
    }
    metrics = [("beta_vae", beta_vae_score, dict(num_train=nt, num_eval=ne)),
               ("factor_vae", factor_vae_score, dict(num_train=nt, num_eval=ne, num_variance_estimate=nt)),
               ("mig", mig, dict(num_train=nt)),
               ("sap", sap_score, dict(num_train=nt, num_eval=ne))]
    if not args.no_dci:
        metrics.append(("dci", dci, dict(num_train=nt, num_eval=ne)))
    for name, codes in controls.items():
        encoding = GridEncoding.from_codes(data, codes)
        out = {"representation": name}
        for metric, fn, kwargs in metrics:
            start = time.perf_counter()
            result = fn(data, encoding, np.random.default_rng(0), **kwargs)
            out[metric] = {key: round(value, 4) for key, value in result.items()}
            out[metric]["wall_s"] = round(time.perf_counter() - start, 2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
