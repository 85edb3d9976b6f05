"""Training images/s of every model family next to the β-VAE's bare PyTorch loop, in one run.

Ours: ``train(dsprites, ModelConfig(model=F, width=32, ...), TrainConfig(batch_size=64, ...))`` for
each family F (beta_vae, cvae conditioned on shape, nvae with its default two latent scales,
warm-up and spectral regularisation), timed over a fixed number of steps after a warm-up. Baseline:
the ideal bare PyTorch loop of the β-VAE (same as ``train_throughput``'s: a pool of pre-built batch
tensors, the loss inline, no sampling or bookkeeping). Repetitions of each family and of the
baseline alternate (``interleaved``), so load from other jobs hits all alike. The headline ratio is
the nvae's images/s over the baseline's; its inverse is the hierarchical model's cost per image in
β-VAE steps. The target is a budget, not a win: the nvae may cost at most 5x a β-VAE image.

disentanglement_lib's other methods (annealed_vae, factor_vae, dip_vae_i/ii, beta_tcvae, each at a value
of its study grid) run in the same interleaving; ``ratio_to_beta_vae`` gives every family's images/s over
the β-VAE ``train``'s of the same run: FactorVAE's discriminator (6 x 1000 units, its own Adam step) is
its cost.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from _harness import Context, interleaved, median, record

FAMILIES = ("beta_vae", "cvae", "nvae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tcvae")


def bench_family_throughput(ctx: Context) -> dict:
    """images/s of ``train`` for each family vs the bare β-VAE loop (see the module docstring)."""
    from betasweep.models import BetaVAE, ModelConfig
    from betasweep.training import TrainConfig, train

    data = ctx.dsprites()
    batch_size, beta, lr = 64, 4.0, 1e-4
    warmup, steps, reps = (3, 10, 3) if ctx.quick else (10, 40, 5)
    device = torch.device(ctx.device)
    configs = {
        "beta_vae": ModelConfig(latent_dim=10, width=32, hidden_dim=256),
        "cvae": ModelConfig(model="cvae", latent_dim=10, width=32, hidden_dim=256),
        "nvae": ModelConfig(model="nvae", width=32),
        "annealed_vae": ModelConfig(model="annealed_vae", latent_dim=10, width=32, hidden_dim=256),
        "factor_vae": ModelConfig(model="factor_vae", tc_gamma=30.0, latent_dim=10, width=32, hidden_dim=256),
        "dip_vae_i": ModelConfig(model="dip_vae_i", lambda_od=5.0, latent_dim=10, width=32, hidden_dim=256),
        "dip_vae_ii": ModelConfig(model="dip_vae_ii", lambda_od=5.0, latent_dim=10, width=32, hidden_dim=256),
        "beta_tcvae": ModelConfig(model="beta_tcvae", tc_beta=6.0, latent_dim=10, width=32, hidden_dim=256),
    }

    pool_rng = np.random.default_rng(12345)
    pool = [torch.from_numpy(data.sample_observations(batch_size, pool_rng)).to(device) for _ in range(8)]
    torch.manual_seed(1)
    bare_model = BetaVAE(configs["beta_vae"]).to(device)
    bare_optimizer = torch.optim.Adam(bare_model.parameters(), lr=lr)
    bare_model.train()

    def bare(rep: int) -> float:
        for i in range(warmup + steps):
            if i == warmup:
                ctx.sync()
                start = time.perf_counter()
            x = pool[i % len(pool)]
            logits, mu, logvar, _ = bare_model(x)
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
            loss = recon + beta * (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)).mean(0).sum()
            bare_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            bare_optimizer.step()
        ctx.sync()
        return steps * batch_size / (time.perf_counter() - start)

    def ours(family: str):
        def run(rep: int) -> float:
            marks = []

            def callback(rec, model):
                ctx.sync()
                marks.append(time.perf_counter())

            config = TrainConfig(beta=beta, batch_size=batch_size, train_samples=(warmup + steps) * batch_size,
                                 learning_rate=lr, seed=rep, log_every=1, device=ctx.device)
            train(data, configs[family], config, callback=callback, progress=False)
            return steps * batch_size / (marks[-1] - marks[warmup - 1])
        return run

    per_family, baselines = {}, []
    for family in FAMILIES:
        ours_values, baseline_values = interleaved(ours(family), bare, reps)
        per_family[family] = median(ours_values)
        baselines += baseline_values
    baseline = median(baselines)
    ratios = {family: round(ips / baseline, 4) for family, ips in per_family.items()}
    to_beta_vae = {family: round(ips / per_family["beta_vae"], 4) for family, ips in per_family.items()}
    return record(
        "family_throughput", ours=round(per_family["nvae"], 1), baseline=round(baseline, 1), unit="images/s",
        ratio=ratios["nvae"], target=">= 0.2 (an nvae image costs at most 5 bare β-VAE images)",
        met=ratios["nvae"] >= 0.2, ctx=ctx,
        ratio_desc="nvae train(...) images/s over the bare β-VAE loop's (medians over alternating repetitions)",
        images_per_s={family: round(v, 1) for family, v in per_family.items()}, ratio_per_family=ratios,
        nvae_cost_per_image=round(1 / ratios["nvae"], 2), ratio_to_beta_vae=to_beta_vae,
        factor_vae_cost_per_image=round(1 / to_beta_vae["factor_vae"], 2), batch_size=batch_size, warmup_steps=warmup,
        timed_steps=steps, reps=reps, models={f: c.to_dict() for f, c in configs.items()},
        data="real dSprites (46,080-image grid)",
        ours_desc="train(dsprites, ModelConfig(model=F, width=32), TrainConfig(batch_size=64, log_every=1)) per family",
        baseline_desc="bare PyTorch β-VAE loop (width 32, hidden 256, m 10), pool of 8 pre-built batches (ideal)",
    )
