"""Checkpoints by wall time and their compatibility, the CPU training options' parity, the device-resident data."""

import numpy as np
import pytest
import torch

from betasweep.models import ModelConfig
from betasweep.training import TrainConfig, load_checkpoint, read_checkpoint, train
from betasweep.training.checkpoint import CHECKPOINT_FORMAT

SMALL = ModelConfig(latent_dim=4, width=8, hidden_dim=32)

# What a checkpoint held before issue 17 (main at 81818b2, CHECKPOINT_FORMAT 1): its keys and its
# train_config's fields. A file with exactly these must load and resume.
FORMAT_1_KEYS = {"format", "model_config", "train_config", "data", "model_state", "optimizer_state", "step",
                 "samples_seen", "rng", "history", "metrics"}
FORMAT_1_TRAIN_CONFIG = {"beta", "objective", "gamma", "capacity_max", "capacity_steps", "batch_size", "train_samples",
                         "learning_rate", "seed", "log_every", "checkpoint_every", "device", "bf16"}


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_in_the_format_before_issue_17_loads_and_resumes_bit_for_bit(dsprites, tmp_path):
    config = TrainConfig(batch_size=16, train_samples=16 * 8, log_every=2, seed=1)
    straight = train(dsprites, SMALL, config)
    path = tmp_path / "old.pt"
    train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 4, log_every=2, seed=1), checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    old = {k: v for k, v in state.items() if k in FORMAT_1_KEYS}  # the frozen layout: no pending sums, no new fields
    old["train_config"] = {k: v for k, v in state["train_config"].items() if k in FORMAT_1_TRAIN_CONFIG}
    assert set(old) == FORMAT_1_KEYS and set(old["train_config"]) == FORMAT_1_TRAIN_CONFIG and old["format"] == 1
    torch.save(old, path)
    model, loaded = load_checkpoint(path)
    assert loaded["step"] == 4 and model.config == SMALL and CHECKPOINT_FORMAT == 1
    assert TrainConfig(**loaded["train_config"]).checkpoint_minutes == 10.0  # new fields take their defaults
    resumed = train(dsprites, SMALL, config, checkpoint_path=path)
    assert resumed.step == 8 and _equal(resumed.model.state_dict(), straight.model.state_dict())


def test_checkpoints_by_wall_time_and_a_resume_between_records_keeps_the_history(dsprites, tmp_path):
    import shutil

    config = TrainConfig(batch_size=16, train_samples=16 * 9, log_every=4, seed=2, checkpoint_minutes=0)
    straight = train(dsprites, SMALL, config)
    path, mid, saved = tmp_path / "ck.pt", tmp_path / "mid.pt", []

    def keep(p, step):  # the checkpoint after step 6, as a killed run would leave it
        saved.append((p, step))
        if step == 6:
            shutil.copyfile(p, mid)

    # Every step is past a cadence of 1e-9 minutes: a checkpoint after each step, the hook told each time.
    timed = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 9, log_every=4, seed=2,
                                               checkpoint_minutes=1e-9), checkpoint_path=path, on_checkpoint=keep)
    assert saved == [(path, s) for s in range(1, 10)]
    assert _equal(timed.model.state_dict(), straight.model.state_dict())  # saving changes nothing
    assert read_checkpoint(mid)["pending_sums"]["steps"] == 2  # steps 5, 6 since the record at 4
    resumed = train(dsprites, SMALL, config, checkpoint_path=mid)
    assert _equal(resumed.model.state_dict(), straight.model.state_dict())
    assert [(r["step"], r["loss"], r["kl_per_dim"]) for r in resumed.history] == [
        (r["step"], r["loss"], r["kl_per_dim"]) for r in straight.history]
    none = []  # checkpoint_minutes=0 and checkpoint_every=0: only the final checkpoint
    train(dsprites, SMALL, config, checkpoint_path=tmp_path / "end.pt", on_checkpoint=lambda p, s: none.append(s))
    assert none == [9]


def test_channels_last_and_bf16_resume_bit_for_bit(dsprites, tmp_path):
    fast = dict(cpu_bf16=True, channels_last=True)
    straight = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 6, seed=5, **fast))
    path = tmp_path / "ck.pt"
    train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 3, seed=5, **fast), checkpoint_path=path)
    resumed = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 6, seed=5, **fast), checkpoint_path=path)
    assert _equal(resumed.model.state_dict(), straight.model.state_dict())
    fp32 = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 6, seed=5, cpu_bf16=False))
    assert not _equal(fp32.model.state_dict(), straight.model.state_dict())  # the option does something


def test_device_images_on_the_cpu_are_the_host_images_and_train_the_same_weights(dsprites):
    from betasweep.training.device_data import DeviceImages

    held_out = dsprites.without(dsprites.factors_from_flat_index(np.arange(0, 46080, 7)))
    on_device = DeviceImages(held_out, "cpu")
    assert on_device.grid.dtype == torch.uint8 and on_device.grid.shape == (46080, 1, 64, 64)
    factors = dsprites.sample_factors(200, np.random.default_rng(0))
    assert np.array_equal(on_device.images_of(factors).numpy(), dsprites.images_from_factors(factors))
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    assert np.array_equal(on_device.sample_observations(64, a).numpy(), held_out.sample_observations(64, b))
    assert a.bit_generator.state == b.bit_generator.state  # the same draws: the host rng stream is unchanged
    host = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 5, seed=0, data_on_device=False))
    device = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 5, seed=0, data_on_device=True))
    assert _equal(host.model.state_dict(), device.model.state_dict())


def test_cpu_bf16_and_channels_last_score_the_panel_within_seed_noise_of_fp32(dsprites):
    """Same seeds, same budget: for each panel metric (and the recon loss and KL) the difference of the
    means lies inside the 95% Welch interval of the per-seed spread (betasweep.sweeps.verdict.welch).

    At this budget (a few seconds per model) the models are still near the mean-image plateau, so the
    panel's part of this is weak evidence; the recon loss and KL differ by seed and carry it."""
    from betasweep.metrics import MetricConfig, evaluate_model
    from betasweep.sweeps.verdict import ConfigResult, welch

    metric = MetricConfig(seed=0, batch_size=16, num_train=200, num_eval=100, num_stat_samples=128,
                          panel=("beta_vae", "mig"))
    keys = ("beta_vae", "mig", "recon_loss", "kl")
    scores: dict[str, dict[str, list[float]]] = {"fp32": {}, "fast": {}}
    for seed in range(3):
        for name, options in (("fp32", {"cpu_bf16": False}), ("fast", {"cpu_bf16": True, "channels_last": True})):
            result = train(dsprites, SMALL, TrainConfig(batch_size=32, train_samples=32 * 80, learning_rate=3e-3,
                                                        beta=0.5, seed=seed, **options))
            measured = evaluate_model(result.model, dsprites, metric)
            for key in keys:
                scores[name].setdefault(key, []).append(float(measured[key]))
    assert np.std(scores["fp32"]["recon_loss"]) > 0, "no spread over seeds: the comparison would say nothing"
    for key in keys:
        fast, fp32 = (ConfigResult(label, tuple(scores[label][key])) for label in ("fast", "fp32"))
        comparison = welch(fast, fp32)
        assert comparison.low <= 0 <= comparison.high, (key, fast.values, fp32.values, comparison)
