"""A race's extension continues a seed from its checkpoint: it trains only the images past the lower rung and ends
with the weights of the same seed trained to the higher rung straight through (CPU, bit for bit)."""

from __future__ import annotations

import shutil

import torch

from betasweep.data import load_dataset
from betasweep.models import ModelConfig
from betasweep.sweeps.resume import Resume
from betasweep.training import TrainConfig, read_checkpoint, train


def test_a_seed_extended_from_12000_to_24000_images_trains_12000_and_equals_the_straight_run(tmp_path):
    torch.set_num_threads(1)
    data = load_dataset("shapes", subsample=[1, 1, 4, 2, 2])
    model = ModelConfig(num_channels=1, latent_dim=4, width=8)
    config = dict(beta=4.0, batch_size=32, learning_rate=5e-4, seed=7, log_every=50, device="cpu")
    low = tmp_path / "trial-0" / "seed-0" / "checkpoint.pt"
    first = train(data, model, TrainConfig(train_samples=12_000, **config), checkpoint_path=low)
    assert first.samples_seen == 12_000

    # The extension's task: the lower rung's checkpoint fetched by Resume.continue_from (as a race's trial does,
    # from the shared --checkpoint-dir), then trained to the higher rung.
    resume = Resume("study", 5, checkpoint_dir=tmp_path.parent / "ckpt")
    (tmp_path.parent / "ckpt" / "study").mkdir(parents=True, exist_ok=True)
    shutil.copytree(tmp_path / "trial-0", tmp_path.parent / "ckpt" / "study" / "trial-0", dirs_exist_ok=True)
    high = tmp_path / "trial-5" / "seed-0" / "checkpoint.pt"
    start = resume.continue_from({"trial": 0, "index": 0, "prefix": ""}, high, lambda state: None)
    extended = train(data, model, TrainConfig(train_samples=24_000, **config), checkpoint_path=high)
    trained_steps = extended.step - start
    assert start * 32 == 12_000 and trained_steps * 32 == 12_000  # 12,000 images trained, none twice

    straight = train(data, model, TrainConfig(train_samples=24_000, **config))
    a, b = extended.model.state_dict(), straight.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state, ref = read_checkpoint(high), straight.model.state_dict()
    assert state["step"] == 750 and all(torch.equal(state["model_state"][k], ref[k]) for k in ref)
