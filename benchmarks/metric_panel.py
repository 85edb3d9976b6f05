"""``metric_panel``: the default metric panel (Higgins, FactorVAE, MIG, SAP; no DCI) vs the Higgins score alone.

Both score the same encoder on the real 46,080-image dSprites grid at disentanglement_lib's defaults
(10,000 / 5,000 points, batch 64). Ours is :func:`betasweep.metrics.panel_scores` with
``DEFAULT_PANEL``: one encoding of the grid shared by the four metrics. The baseline is
:func:`betasweep.metrics.beta_vae_score` alone, which encodes every distinct image it draws (at
these defaults, the whole grid). Target: the panel costs at most 2x the Higgins score alone.
"""

from __future__ import annotations

import numpy as np
from _harness import Context, Stopwatch, interleaved, median, record, rounded


def bench_metric_panel(ctx: Context) -> dict:
    """Wall time of ``panel_scores(DEFAULT_PANEL)`` / ``beta_vae_score`` on the same encoder, alternated."""
    from betasweep.metrics import (DEFAULT_PANEL, MetricConfig, beta_vae_score, factor_vae_score, panel_scores,
                                   representation_function)
    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, train

    data = ctx.dsprites()
    if ctx.quick:
        model_config = ModelConfig(latent_dim=10, width=8, hidden_dim=64)
    else:
        model_config = ModelConfig(latent_dim=10, width=32, hidden_dim=256)
    # 1,500 steps escape dSprites' early posterior collapse (tests/conftest.py's trained_small): with
    # 300, every dimension's std stayed below FactorVAE's 0.05 pruning threshold and FactorVAE
    # returned at once, which would leave its cost out of the panel.
    train_steps, train_batch = 1500, 16
    train_config = TrainConfig(beta=1.0, batch_size=train_batch, train_samples=train_steps * train_batch,
                               learning_rate=1e-3, seed=0, device=ctx.device)
    trained = train(data, model_config, train_config, progress=False)
    represent = representation_function(trained.model)
    config = MetricConfig(seed=0, batch_size=64, num_train=10_000, num_eval=5_000, panel=DEFAULT_PANEL)
    reps = 2 if ctx.quick else 3
    panels, higgins = [], []

    def ours(rep: int) -> float:
        with Stopwatch(ctx) as sw:
            panels.append(panel_scores(data, represent, np.random.default_rng(0), config=config))
        return sw.seconds

    def baseline(rep: int) -> float:
        with Stopwatch(ctx) as sw:
            higgins.append(beta_vae_score(data, represent, np.random.default_rng(0), batch_size=64,
                                          num_train=10_000, num_eval=5_000))
        return sw.seconds

    ours_times, baseline_times = interleaved(ours, baseline, reps)
    ratio = median(ours_times) / median(baseline_times)
    return record(
        "metric_panel", ours=round(median(ours_times), 3), baseline=round(median(baseline_times), 3), unit="s",
        ratio=round(ratio, 3), target="<= 2 (panel without DCI / Higgins alone)", met=ratio <= 2.0, ctx=ctx,
        ratio_desc="median wall time of panel_scores(DEFAULT_PANEL) / median wall time of beta_vae_score, alternated",
        ours_reps=rounded(ours_times, 3), baseline_reps=rounded(baseline_times, 3),
        panel=list(DEFAULT_PANEL), scores={k: round(v, 4) for k, v in panels[0].items()},
        factor_vae_active_dims=factor_vae_score(data, represent, np.random.default_rng(0), num_train=10,
                                                num_eval=10)["num_active_dims"],
        higgins_alone=round(higgins[0]["eval_accuracy"], 4), scores_repeatable=all(p == panels[0] for p in panels),
        encoder=(f"BetaVAE encoder mean, latent_dim {model_config.latent_dim}, width {model_config.width}, "
                 f"hidden {model_config.hidden_dim}" + (" (narrow: quick mode)" if ctx.quick else "")
                 + f"; trained {train_steps} steps at batch {train_batch}, lr 1e-3, beta 1, seed 0"),
        num_train=10_000, num_eval=5_000, batch_size=64, data="real dSprites (46,080-image grid)",
    )
