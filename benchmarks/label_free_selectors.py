"""Which label-free selector ranks a study's models as the supervised panel does: UDR or ModelCentrality?

Given a finished study (Optuna storage + study name) whose trials kept their per-seed panel values
(``per_seed`` user attribute) and their models (checkpoints found under ``--checkpoints`` or through the
MLflow ``--tracking-uri``), this script

1. loads every model of the study (one per trial and seed, :func:`~betasweep.training.checkpoint.load_checkpoint`);
2. scores each model's UDR across the pool of ALL the study's models, as Duan et al. 2020 (ICLR, Sec. 3)
   do: every model against every other on the same 1,000 held-out images (dlib's Lasso, ``alpha=0.1``),
   a model's score the median of its pairs (:func:`~betasweep.metrics.udr_of_models`);
3. scores each model's ModelCentrality across the same pool, as Lin et al. 2020 (ICML, Sec. 5) do: the mean
   FactorVAE score of the others' encoders on images its own decoder generates with one latent fixed
   (:func:`~betasweep.metrics.model_centrality.model_centrality_of_models`);
4. takes each panel metric of each model from its trial's ``per_seed`` record;
5. prints Spearman's ρ (``scipy.stats.spearmanr``) of each selector with each panel metric over the models,
   with a 95% percentile bootstrap interval over models (``scipy.stats.bootstrap``, paired resamples of the
   models, 9,999 resamples) and, for comparison, the Fisher-z interval (SE ``sqrt(1.06 / (n - 3))``,
   Fieller et al. 1957's variance for Spearman's ρ), plus n; then the same table without the study's collapsed
   models (0 active units), which rank last on every metric and would make ρ positive on their own.

``--scores OUT`` re-tabulates an earlier run's printed per-model scores without loading a model. On the 12 models of
``examples/dsprites-methods.yaml`` the run took 20 min on 2 shared cores (ModelCentrality: 144 generator-encoder pairs
of 50,000 encodings each; UDR 3 s).

Lin et al. (Table 3, dSprites) compare the selectors on the *selected* model's FactorVAE score, not on rank
correlation; the figure here answers the ranking question of issue 23 directly.

    python benchmarks/label_free_selectors.py --storage sqlite:////tmp/methods/sweep/betasweep.db \\
        --study dsprites-methods --checkpoints /tmp/methods/sweep/mlartifacts \\
        --data /work/shared/data/dsprites/dsprites_downsampled.npz
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.stats

DEFAULT_PANEL = ("beta_vae", "factor_vae", "mig", "sap")
KL_THRESHOLD = 0.01
"""Nats of mean KL above which a unit is active (UDR's and ModelCentrality's threshold)."""


def spearman_with_intervals(x: Sequence[float], y: Sequence[float], rng: np.random.Generator, *,
                            n_resamples: int = 9_999, confidence: float = 0.95) -> dict:
    """Spearman's ρ of ``x`` and ``y`` (``n`` paired values, e.g. one per model) with two intervals.

    Args:
        x, y: ``n >= 4`` floats each, paired by position.
        rng: seeds the bootstrap.
        n_resamples, confidence: of the percentile bootstrap (``scipy.stats.bootstrap``, ``paired=True``:
            models resampled with replacement). A resample in which either side is constant has ρ = NaN, and
            SciPy then returns a NaN bound (likely only at very small ``n`` or with many ties).

    Returns:
        ``{"rho", "p", "n", "bootstrap_ci": [lo, hi], "fisher_ci": [lo, hi]}``; ``rho`` is NaN when either
        side is constant (its intervals too). The Fisher-z interval is ``tanh(atanh(ρ) ± z·sqrt(1.06/(n-3)))``
        (Fieller, Hartley & Pearson 1957), ``[±1, ±1]`` when ``|ρ| = 1``.

    Raises:
        ValueError: lengths differ or ``n < 4``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of the same length, got shapes {x.shape} and {y.shape}")
    n = len(x)
    if n < 4:
        raise ValueError(f"Spearman's ρ with an interval needs n >= 4 pairs, got {n}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.ConstantInputWarning)  # rho NaN, returned as such
        result = scipy.stats.spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    out = {"rho": rho, "p": p, "n": n, "bootstrap_ci": [math.nan, math.nan], "fisher_ci": [math.nan, math.nan]}
    if not np.isfinite(rho):
        return out

    def statistic(a, b):
        return scipy.stats.spearmanr(a, b).statistic

    with np.errstate(invalid="ignore", divide="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant resamples: ConstantInputWarning, NaN statistics
            boot = scipy.stats.bootstrap((x, y), statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                                         confidence_level=confidence, method="percentile", random_state=rng)
    out["bootstrap_ci"] = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
    z = scipy.stats.norm.ppf(0.5 + confidence / 2)
    if abs(rho) >= 1.0:
        out["fisher_ci"] = [rho, rho]
    else:
        half = z * math.sqrt(1.06 / (n - 3))
        out["fisher_ci"] = [math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)]
    return out


def selector_table(selectors: dict[str, Sequence[float]], panel: dict[str, Sequence[float]],
                   rng: np.random.Generator, **kwargs) -> list[dict]:
    """:func:`spearman_with_intervals` of every selector with every panel metric: one row each,
    ``{"selector", "metric", **result}``, selectors outer, metrics inner."""
    return [{"selector": s, "metric": m, **spearman_with_intervals(sv, mv, rng, **kwargs)}
            for s, sv in selectors.items() for m, mv in panel.items()]


def _checkpoint(args, run_id: str, seed_index: int) -> Path:
    relative = f"seed-{seed_index}/checkpoint/checkpoint.pt"
    if args.checkpoints:
        found = sorted(Path(args.checkpoints).glob(f"**/{run_id}/artifacts/{relative}"))
        if not found:
            raise SystemExit(f"--checkpoints: no {run_id}/artifacts/{relative} under {args.checkpoints}")
        return found[0]
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=relative, tracking_uri=args.tracking_uri))


def _print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'selector':<17} {'metric':<11} {'rho':>6}  {'bootstrap 95%':>16}  {'Fisher-z 95%':>16}  {'p':>6}")
    for r in rows:
        print(f"{r['selector']:<17} {r['metric']:<11} {r['rho']:>6.2f}  [{r['bootstrap_ci'][0]:>6.2f}, "
              f"{r['bootstrap_ci'][1]:>5.2f}]  [{r['fisher_ci'][0]:>6.2f}, {r['fisher_ci'][1]:>5.2f}]  {r['p']:>6.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="Optuna storage URL of the study")
    parser.add_argument("--study", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", help="folder holding <run_id>/artifacts/seed-<k>/checkpoint/checkpoint.pt")
    source.add_argument("--tracking-uri", help="MLflow tracking URI the study logged to")
    source.add_argument("--scores", help="an earlier run's output: re-tabulate its per-model UDR and ModelCentrality "
                                         "lines (no model loaded, no score recomputed)")
    parser.add_argument("--data", help="dsprites_downsampled.npz (required unless --scores)")
    parser.add_argument("--dataset", default="dsprites")
    parser.add_argument("--panel", default=",".join(DEFAULT_PANEL))
    parser.add_argument("--udr-images", type=int, default=1000)
    parser.add_argument("--mc-batch-size", type=int, default=64)
    parser.add_argument("--mc-num-train", type=int, default=500)
    parser.add_argument("--mc-num-eval", type=int, default=250)
    parser.add_argument("--mc-num-variance", type=int, default=2000)
    parser.add_argument("--n-resamples", type=int, default=9_999, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.scores and not args.data:
        parser.error("--data is required unless --scores is given")

    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    metrics = [m for m in args.panel.split(",") if m]
    names, models, kl_per_dims, active, panel = [], [], [], [], {m: [] for m in metrics}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        per_seed = trial.user_attrs.get("per_seed") or []
        for k, record in enumerate(per_seed):
            if args.scores:
                family = trial.params.get("model", "beta_vae")
            else:
                from betasweep.training.checkpoint import load_checkpoint

                path = _checkpoint(args, trial.user_attrs["mlflow_run_id"], k)
                model, state = load_checkpoint(path)
                if state.get("train_config", {}).get("seed") not in (None, record.get("seed")):
                    raise SystemExit(f"{path}: its seed {state['train_config']['seed']} is not per_seed[{k}]'s "
                                     f"{record.get('seed')}")
                family = state["model_config"].get("model", "beta_vae")
                models.append(model)
            names.append(f"{trial.number}:{family}:{k}")
            # the study's own count (the trial's collapsed_seeds are those with 0), else units above 0.01 nats of KL
            active.append(int(record.get("active_units", np.sum(np.asarray(record["kl_per_dim"]) > KL_THRESHOLD))))
            kl_per_dims.append(np.asarray(record["kl_per_dim"], dtype=np.float64))
            for m in metrics:
                panel[m].append(float(record[m]))
    if len(names) < 4:
        raise SystemExit(f"study {args.study}: {len(names)} models with per_seed records, need >= 4")
    loaded = time.perf_counter()
    images_seq, udr_seq, mc_seq, boot_seq = np.random.SeedSequence(args.seed).spawn(4)

    if args.scores:
        earlier = {}
        for line in Path(args.scores).read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                earlier[record["model"]] = record
        missing = [n for n in names if n not in earlier]
        if missing:
            raise SystemExit(f"--scores {args.scores}: no line for model {missing[0]}")
        udr = [earlier[n]["udr"] for n in names]
        mc = [earlier[n]["model_centrality"] for n in names]
        udr_done = mc_done = time.perf_counter()
    else:
        from betasweep.data import load_dataset
        from betasweep.metrics import representation_function, udr_images, udr_of_models
        from betasweep.metrics.model_centrality import model_centrality_of_models

        data = load_dataset(args.dataset, path=args.data)
        images = udr_images(data, np.random.default_rng(images_seq), args.udr_images)
        udr = udr_of_models([representation_function(m) for m in models], kl_per_dims, images,
                            np.random.default_rng(udr_seq))["udr_per_model"]
        udr_done = time.perf_counter()
        mc = model_centrality_of_models(models, kl_per_dims, np.random.default_rng(mc_seq),
                                        batch_size=args.mc_batch_size, num_train=args.mc_num_train,
                                        num_eval=args.mc_num_eval,
                                        num_variance_estimate=args.mc_num_variance)["model_centrality_per_model"]
        mc_done = time.perf_counter()

    for name, u, c, a, *values in zip(names, udr, mc, active, *panel.values()):
        print(json.dumps({"model": name, "udr": round(u, 4), "model_centrality": round(c, 4), "active_units": a,
                          **{m: round(v, 4) for m, v in zip(metrics, values)}}))
    rows = selector_table({"udr": udr, "model_centrality": mc}, panel, np.random.default_rng(boot_seq),
                          n_resamples=args.n_resamples)
    _print_table(rows, f"n = {len(names)} models; 95% intervals: percentile bootstrap over models "
                       f"({args.n_resamples:,} resamples) | Fisher z")
    # collapsed models (0 active units: the trial's collapsed_seeds) rank last on the supervised metrics, and on the
    # selectors too if these work: the same table without them says whether the agreement is more than that
    keep = [i for i, a in enumerate(active) if a > 0]
    if 4 <= len(keep) < len(names):
        pick = lambda values: [values[i] for i in keep]  # noqa: E731
        rows = selector_table({"udr": pick(udr), "model_centrality": pick(mc)},
                              {m: pick(v) for m, v in panel.items()}, np.random.default_rng(boot_seq),
                              n_resamples=args.n_resamples)
        _print_table(rows, f"without the {len(names) - len(keep)} collapsed models (0 active units): "
                           f"n = {len(keep)}, same scores")
    print(f"\nsettings: UDR {args.udr_images} images (Lasso alpha 0.1); ModelCentrality batch {args.mc_batch_size}, "
          f"{args.mc_num_train} train / {args.mc_num_eval} eval points, {args.mc_num_variance} variance images; "
          f"seconds: load {loaded - start:.0f}, UDR {udr_done - loaded:.0f}, MC {mc_done - udr_done:.0f}, "
          f"total {time.perf_counter() - start:.0f}" + (f" (re-tabulated from {args.scores})" if args.scores else ""),
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
