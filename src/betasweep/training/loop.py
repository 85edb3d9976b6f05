"""The training loop of every VAE family: Adam, a budget in training samples, seeded, resumable."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from betasweep.errors import ConfigError, DataError, DivergenceError
from betasweep.models.regularized import RegularizedVAE
from betasweep.models import (
    ModelConfig,
    VAEFamily,
    beta_norm,
    beta_vae_loss,
    build_model,
    capacity_loss,
    resolve_conditioning,
)
from betasweep.training import speed
from betasweep.training.checkpoint import read_checkpoint, save_checkpoint
from betasweep.training.device_data import DeviceImages

__all__ = ["TrainConfig", "TrainResult", "train", "resolve_device", "seed_sequences"]

OBJECTIVES = ("beta", "capacity")
OUTPUT_BIAS_INITS = ("data_mean", "default")
OUTPUT_BIAS_SAMPLE = 1_000
"""Training images whose mean pixel starts the decoder's output bias (``output_bias_init: data_mean``)."""


class ImageSource(Protocol):
    """What training needs of a dataset: ``num_channels`` and a sampler of images."""

    num_channels: int

    def sample_observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """float32 ``(n, C, 64, 64)`` in ``[0, 1]``."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything about one training run except the network's shape (:class:`ModelConfig`).

    Attributes:
        beta: weight of the KL term (Higgins et al. 2017, Eq. 4); > 0.
        objective: ``"beta"`` (recon + β·KL) or ``"capacity"`` (recon + γ·|KL − C|, Burgess et al. 2018).
            Model ``annealed_vae`` always trains on the capacity objective; disentanglement_lib's other
            methods (factor_vae, dip_vae_i/ii, beta_tcvae) on their own (recon + KL + their term, strength
            in :class:`~betasweep.models.ModelConfig`), whatever ``objective`` and ``beta`` say.
        gamma: capacity objective's weight γ.
        capacity_max: capacity objective's final C, nats.
        capacity_steps: optimiser steps over which C grows linearly from 0 to ``capacity_max``.
        batch_size: images per optimiser step.
        train_samples: budget in training images seen; steps = ceil(train_samples / batch_size), so
            trials with different batch sizes see the same number of images.
        learning_rate: Adam's step size (disentanglement_lib's default 1e-4).
        seed: the run's seed; init, data order and reparameterisation noise get child seeds of it.
        log_every: optimiser steps between logged records (each averages the steps since the last).
        checkpoint_every: optimiser steps between checkpoints (0: only at the end).
        checkpoint_minutes: wall-clock minutes between checkpoints, beside ``checkpoint_every`` (0: off);
            a preempted run loses at most this much training.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:i]"``.
        bf16: autocast the forward pass to bfloat16 on CUDA.
        cpu_bf16: autocast the forward pass to bfloat16 on the CPU (oneDNN); ``None``: when the
            processor has AVX-512 BF16 or AMX (:func:`~betasweep.training.speed.cpu_has_bf16`). The
            loss and the KL are summed in float32 either way. Off by default: faster at width 32
            (``benchmarks/cpu_options.py``), not at 8-16, and its parity is shown only at a small budget.
        channels_last: images and convolution weights in channels-last memory format (NHWC).
        compile: ``torch.compile`` the model's forward pass (compiled once per run: pays off on long runs).
        threads: torch's intra-op threads during training (0: leave torch's setting, e.g. ``OMP_NUM_THREADS``).
        output_bias_init: how the decoder's output bias (:meth:`~betasweep.models.VAEFamily.output_bias`)
            starts: ``"data_mean"``, the logit of the mean pixel of 1,000 training images drawn with
            the run's own child seed (:func:`~betasweep.models.mean_pixel_logit`; the data order
            is unchanged), or ``"default"``, the layer's own initialisation (PyTorch's, about 0:
            a grey image; the only start before this field existed). The value lives in the
            weights, so a checkpoint rebuilds the model without the data. See the docs' results page
            docs/results/2026-12-06.md, "The mean-image plateau", for what it changes.
        data_on_device: keep the dataset's whole factor grid on the training device as uint8 and
            gather each batch there (:class:`~betasweep.training.device_data.DeviceImages`: the same
            images as the host path, no host-to-device copy of images per step); ``None``: on CUDA
            when the dataset has a factor grid.
    """

    beta: float = 4.0
    objective: str = "beta"
    gamma: float = 1000.0
    capacity_max: float = 25.0
    capacity_steps: int = 100_000
    batch_size: int = 64
    train_samples: int = 300_000
    learning_rate: float = 1e-4
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0
    device: str = "auto"
    bf16: bool = False
    cpu_bf16: bool | None = False
    channels_last: bool = False
    compile: bool = False
    threads: int = 0
    data_on_device: bool | None = None
    output_bias_init: str = "data_mean"

    def __post_init__(self):
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.train_samples < 1:
            raise ConfigError(f"train_samples must be >= 1, got {self.train_samples}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.log_every < 1 or self.checkpoint_every < 0:
            raise ConfigError("log_every must be >= 1 and checkpoint_every >= 0")
        if not (self.checkpoint_minutes >= 0 and math.isfinite(self.checkpoint_minutes)):
            raise ConfigError(f"checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        if self.output_bias_init not in OUTPUT_BIAS_INITS:
            raise ConfigError(f"output_bias_init must be one of {', '.join(OUTPUT_BIAS_INITS)}, "
                              f"got {self.output_bias_init!r}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: torch's own setting), got {self.threads}")

    @property
    def num_steps(self) -> int:
        return math.ceil(self.train_samples / self.batch_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (a :class:`~betasweep.models.VAEFamily`), in eval mode, on the training device.
        model_config: the config it was built from, with the data-dependent fields resolved (cvae: ``y``).
        step: optimiser steps taken in total (including any resumed from a checkpoint).
        samples_seen: training images seen in total.
        history: one record per ``log_every`` steps (see :func:`train`).
        wall_time_s: seconds spent in this call.
    """

    model: VAEFamily
    step: int
    samples_seen: int
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    model_config: ModelConfig | None = None

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"device: {error}") from None


def seed_sequences(seed: int) -> dict[str, np.random.SeedSequence]:
    """The run's child seeds (DESIGN.md, Randomness): ``init``, ``data``, ``noise`` and ``bias`` (the
    images whose mean starts the output bias; spawned fourth, so the first three are those of runs
    before it existed)."""
    init, data, noise, bias = np.random.SeedSequence(seed).spawn(4)
    return {"init": init, "data": data, "noise": noise, "bias": bias}


def _torch_seed(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def train(
    data: ImageSource,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
    extra: dict[str, Any] | None = None,
    callback: Callable[[dict[str, Any], VAEFamily], None] | None = None,
    progress: bool = False,
    on_checkpoint: Callable[[Path, int], None] | None = None,
) -> TrainResult:
    """Train the family ``model_config.model`` on ``data`` for ``train_config.train_samples`` images.

    Each step draws ``batch_size`` images (with their labels ``y`` for a cvae:
    :meth:`~betasweep.models.VAEFamily.sample_batch`), takes the family's ELBO terms, computes the
    loss (:mod:`betasweep.models.losses`): ``recon + β·w(step)·KL + R`` with the family's KL weight
    ``w`` (nvae: warm-up; else 1) and regulariser ``R`` (nvae: spectral; else 0), and takes an Adam
    step. Every ``log_every`` steps a record is appended to the history and passed
    to ``callback(record, model)``: keys ``step``, ``samples``, ``loss``, ``recon_loss``, ``kl``
    (nats, mean over the steps since the last record), ``kl_per_dim`` (list, nats) and
    ``elapsed_s`` (nvae adds ``kl_group_<i>_<r>x<r>`` per latent group and ``spectral``). The callback may raise (e.g. ``optuna.TrialPruned``) to stop training; it
    sees the model in training mode and must restore that mode if it changes it.

    On the CPU, the same seed and config give bit-identical weights, also across a resume.

    Args:
        data: anything with ``num_channels`` and ``sample_observations(n, rng)``.
        model_config, train_config: the run's configuration; ``model_config.num_channels`` must
            match ``data.num_channels``.
        checkpoint_path: where to write checkpoints (every ``checkpoint_every`` steps, every
            ``checkpoint_minutes`` of wall time, and at the end). When the file exists and ``resume``
            is true, training continues from it.
        extra: JSON-like dict stored in the checkpoint (e.g. the dataset's name and path).
        callback: called with each history record and the model.
        progress: show a progress bar.
        on_checkpoint: called as ``on_checkpoint(path, step)`` after each checkpoint is written (e.g. to
            upload it where other machines can read it).

    Returns:
        :class:`TrainResult`.

    Raises:
        DivergenceError: a step's loss is NaN or infinite; no checkpoint is written for it.
        DataError: ``data`` does not match ``model_config`` or the checkpoint to resume from.
    """
    if data.num_channels != model_config.num_channels:
        raise DataError(
            f"the dataset has {data.num_channels} channel(s) but the model expects {model_config.num_channels}"
        )
    model_config = resolve_conditioning(model_config, data)
    device = resolve_device(train_config.device)
    with speed.intra_op_threads(train_config.threads):
        return _train(data, model_config, train_config, device, checkpoint_path=checkpoint_path, resume=resume,
                      extra=extra, callback=callback, progress=progress, on_checkpoint=on_checkpoint)


@dataclass
class _Run:
    """One training run's state between steps: what a checkpoint keeps (see :func:`_checkpoint_state`)."""

    model: VAEFamily
    data: Any  # the dataset, or its images on the device (DeviceImages)
    optimizer: torch.optim.Optimizer
    discriminator_optimizer: torch.optim.Optimizer | None  # FactorVAE's own Adam
    rng: np.random.Generator  # the data order
    noise: torch.Generator  # the reparameterisation noise
    sums: torch.Tensor  # float64: loss, recon, regulariser, kl per dim, summed over the steps since the last record
    step: int = 0
    pending: int = 0  # steps since the last record
    history: list[dict[str, Any]] = field(default_factory=list)
    method_sums: dict[str, float] = field(default_factory=dict)  # the method's statistics (tc, cov_mu_offdiag) since the last record

    @property
    def regularized(self) -> bool:
        """disentanglement_lib's methods: recon + KL + the method's term."""
        return isinstance(self.model, RegularizedVAE)


def _train(data, model_config: ModelConfig, train_config: TrainConfig, device: torch.device, *, checkpoint_path,
           resume: bool, extra, callback, progress: bool, on_checkpoint) -> TrainResult:
    """:func:`train` after the config is resolved, under its thread setting."""
    run = _start(data, model_config, train_config, device)
    if checkpoint_path is not None and resume and Path(checkpoint_path).is_file():
        _restore(run, checkpoint_path, model_config, device)
    bnorm = beta_norm(train_config.beta, model_config.latent_size, model_config.num_pixels)
    steps_total = train_config.num_steps
    autocast = speed.autocast_dtype(train_config, device)
    forward = torch.compile(run.model.elbo_terms, dynamic=False) if train_config.compile else run.model.elbo_terms

    def write_checkpoint() -> None:
        save_checkpoint(checkpoint_path, _checkpoint_state(run, model_config, train_config, extra, bnorm))
        if on_checkpoint is not None:
            on_checkpoint(Path(checkpoint_path), run.step)

    start = time.perf_counter()
    cadence_s = train_config.checkpoint_minutes * 60
    last_saved = time.monotonic()
    run.model.train()
    with tqdm(total=steps_total, initial=run.step, desc="train", unit="step", disable=not progress, leave=False) as bar:
        while run.step < steps_total:
            _step(run, model_config, train_config, device, forward, autocast)
            bar.update(1)
            if run.pending == train_config.log_every or run.step == steps_total:
                record = _record(run, model_config, train_config, start)
                bar.set_postfix(loss=f"{record['loss']:.1f}", kl=f"{record['kl']:.2f}")
                if callback is not None:
                    callback(record, run.model)
            if checkpoint_path is not None and (
                run.step == steps_total or (train_config.checkpoint_every and run.step % train_config.checkpoint_every == 0)
                or (cadence_s and time.monotonic() - last_saved >= cadence_s)
            ):
                write_checkpoint()
                last_saved = time.monotonic()

    run.model.eval()
    return TrainResult(model=run.model, step=run.step, samples_seen=run.step * train_config.batch_size,
                       history=run.history, wall_time_s=time.perf_counter() - start, model_config=model_config)


def _start(data, model_config: ModelConfig, train_config: TrainConfig, device: torch.device) -> _Run:
    """The model built with the run's ``init`` seed (its output bias from the ``bias`` seed's images), on
    ``device``; Adam; the data order and noise generators seeded (:func:`seed_sequences`); step 0."""
    seeds = seed_sequences(train_config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_torch_seed(seeds["init"]))
        model = build_model(model_config)
    if train_config.output_bias_init == "data_mean":
        model.init_output_bias(data.sample_observations(OUTPUT_BIAS_SAMPLE, np.random.default_rng(seeds["bias"])))
    model.to(device)
    if train_config.channels_last:
        model.to(memory_format=torch.channels_last)
    if speed.wants_device_data(train_config.data_on_device, device, data):
        data = DeviceImages(data, device)
    regularized = isinstance(model, RegularizedVAE)
    optimizer = torch.optim.Adam(model.vae_parameters() if regularized else model.parameters(), lr=train_config.learning_rate)
    discriminator_optimizer = model.discriminator_optimizer() if regularized else None
    return _Run(model=model, data=data, optimizer=optimizer, discriminator_optimizer=discriminator_optimizer,
                rng=np.random.default_rng(seeds["data"]),
                noise=torch.Generator(device=device).manual_seed(_torch_seed(seeds["noise"])),
                sums=torch.zeros(3 + model.kl_dim, dtype=torch.float64))


def _restore(run: _Run, checkpoint_path, model_config: ModelConfig, device: torch.device) -> None:
    """Continue ``run`` from the checkpoint: weights, optimisers, generators, step, history, the sums since the last record.

    Raises:
        DataError: the checkpoint's model_config differs from this run's, or the file is unreadable.
    """
    state = read_checkpoint(checkpoint_path, map_location=device)
    if state["model_config"] != model_config.to_dict():
        raise DataError(f"{checkpoint_path}: its model_config differs from this run's; refusing to resume")
    run.model.load_state_dict(state["model_state"])
    run.optimizer.load_state_dict(state["optimizer_state"])
    if run.discriminator_optimizer is not None:
        run.discriminator_optimizer.load_state_dict(state["discriminator_optimizer_state"])
    run.rng.bit_generator.state = state["rng"]["numpy"]
    run.noise.set_state(state["rng"]["torch_noise"].cpu())
    run.step, run.history = int(state["step"]), list(state["history"])
    resumed_sums = state.get("pending_sums")  # the steps since the last record (absent in older checkpoints)
    if resumed_sums:
        run.sums, run.pending = resumed_sums["sums"].to(torch.float64).cpu().clone(), int(resumed_sums["steps"])
        run.method_sums = dict(resumed_sums.get("method_sums") or {})


def _checkpoint_state(run: _Run, model_config: ModelConfig, train_config: TrainConfig, extra, bnorm: float) -> dict[str, Any]:
    """What a checkpoint holds (:func:`~betasweep.training.checkpoint.save_checkpoint`)."""
    return {
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "data": dict(extra or {}),
        "model_state": run.model.state_dict(),
        "optimizer_state": run.optimizer.state_dict(),
        **({"discriminator_optimizer_state": run.discriminator_optimizer.state_dict()}
           if run.discriminator_optimizer is not None else {}),
        "step": run.step,
        "samples_seen": run.step * train_config.batch_size,
        "rng": {"numpy": run.rng.bit_generator.state, "torch_noise": run.noise.get_state()},
        "history": run.history,
        "metrics": {"beta_norm": bnorm, **(run.history[-1] if run.history else {})},
        "pending_sums": {"steps": run.pending, "sums": run.sums.clone(), "method_sums": dict(run.method_sums)},
    }


def _step(run: _Run, model_config: ModelConfig, train_config: TrainConfig, device: torch.device, forward,
          autocast: torch.dtype | None) -> None:
    """One optimiser step on a batch (the loss of :func:`train`'s docstring); its terms added to ``run.sums``.

    Raises:
        DivergenceError: the loss is NaN or infinite.
    """
    model = run.model
    images, labels = model.sample_batch(run.data, train_config.batch_size, run.rng)
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(images).to(device, non_blocking=True)
    if train_config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = model.label_tensor(labels, device)
    with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        terms = forward(x, y, generator=run.noise)
    recon = terms.recon_loss.mean()
    kl_dims = terms.kl.mean(dim=0)
    kl = kl_dims.sum()
    discriminator_loss = None
    if run.regularized:
        loss, discriminator_loss, method_stats = model.method_loss(terms, generator=run.noise)
    elif train_config.objective == "beta" and model_config.model != "annealed_vae":
        loss = beta_vae_loss(recon, kl, train_config.beta * model.kl_weight(run.step, train_config.num_steps))
    else:
        loss = capacity_loss(recon, kl, gamma=train_config.gamma, step=run.step,
                             capacity_max=train_config.capacity_max, capacity_steps=train_config.capacity_steps)
    regularizer = model.regularization()
    loss = loss + regularizer
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise DivergenceError(run.step, loss_value)
    run.optimizer.zero_grad(set_to_none=True)
    if discriminator_loss is None:
        loss.backward()
    else:  # disjoint graphs: the VAE's loss holds the discriminator fixed, its loss the codes
        run.discriminator_optimizer.zero_grad(set_to_none=True)
        (loss + discriminator_loss).backward()
        run.discriminator_optimizer.step()
        method_stats["discriminator_loss"] = discriminator_loss.detach()
    run.optimizer.step()
    if run.regularized:
        for key, value in method_stats.items():
            run.method_sums[key] = run.method_sums.get(key, 0.0) + float(value)
    run.step += 1
    run.pending += 1
    run.sums += torch.cat([torch.stack([loss.detach(), recon.detach(), regularizer.detach().float()]),
                           kl_dims.detach()]).double().cpu()


def _record(run: _Run, model_config: ModelConfig, train_config: TrainConfig, start: float) -> dict[str, Any]:
    """The history record of the steps since the last one (means; see :func:`train`), appended; the sums reset."""
    means = (run.sums / run.pending).tolist()
    record = {
        "step": run.step,
        "samples": run.step * train_config.batch_size,
        "loss": means[0],
        "recon_loss": means[1],
        "kl": float(sum(means[3:])),
        "kl_per_dim": means[3:],
        "elapsed_s": time.perf_counter() - start,
    }
    if model_config.model == "nvae":
        record.update(run.model.kl_groups(record["kl_per_dim"]), spectral=means[2])
    record.update({key: value / run.pending for key, value in run.method_sums.items()})
    run.method_sums.clear()
    run.history.append(record)
    run.sums.zero_()
    run.pending = 0
    return record
