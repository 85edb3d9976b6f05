import numpy as np
import pytest
import torch

from betasweep.errors import DataError, DivergenceError
from betasweep.models import ModelConfig
from betasweep.training import TrainConfig, load_checkpoint, read_checkpoint, train
from betasweep.training.loop import OUTPUT_BIAS_SAMPLE

SMALL = ModelConfig(latent_dim=4, width=8, hidden_dim=32)


def _states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_budget_is_counted_in_samples_and_history_is_logged(dsprites):
    config = TrainConfig(batch_size=32, train_samples=32 * 10 + 1, log_every=4, seed=0)
    result = train(dsprites, SMALL, config)
    assert result.step == 11 and result.samples_seen == 352
    assert [r["step"] for r in result.history] == [4, 8, 11]
    record = result.last
    assert len(record["kl_per_dim"]) == 4
    assert record["kl"] == pytest.approx(sum(record["kl_per_dim"]))
    assert record["loss"] == pytest.approx(record["recon_loss"] + 4.0 * record["kl"], rel=1e-5)


def test_loss_goes_down_on_real_dsprites(dsprites):
    """From the grey start (the data-mean start begins near the mean image's loss: test_output_bias.py)."""
    result = train(dsprites, SMALL, TrainConfig(train_samples=64 * 120, log_every=20, learning_rate=1e-3, seed=0,
                                                output_bias_init="default"))
    assert result.history[-1]["recon_loss"] < 0.7 * result.history[0]["recon_loss"]


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(dsprites):
    config = TrainConfig(batch_size=16, train_samples=16 * 6, seed=3)
    a = train(dsprites, SMALL, config).model.state_dict()
    b = train(dsprites, SMALL, config).model.state_dict()
    c = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 6, seed=4)).model.state_dict()
    assert _states_equal(a, b)
    assert not _states_equal(a, c)


def test_resume_continues_bit_for_bit(dsprites, tmp_path):
    straight = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 8, log_every=2, seed=1))
    path = tmp_path / "ck.pt"
    # First half, with a checkpoint every 2 steps; then a longer budget resumes from step 4.
    train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 4, log_every=2, seed=1), checkpoint_path=path)
    assert read_checkpoint(path)["step"] == 4
    resumed = train(dsprites, SMALL, TrainConfig(batch_size=16, train_samples=16 * 8, log_every=2, seed=1), checkpoint_path=path)
    assert resumed.step == 8
    assert _states_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert [r["step"] for r in resumed.history] == [2, 4, 6, 8]


def test_load_checkpoint_rebuilds_the_model_from_the_file_alone(dsprites, tmp_path):
    path = tmp_path / "ck.pt"
    result = train(dsprites, SMALL, TrainConfig(batch_size=8, train_samples=24, seed=0), checkpoint_path=path,
                   extra={"dataset": "dsprites", "data_path": "x.npz"})
    model, state = load_checkpoint(path)
    assert model.config == SMALL and not model.training
    assert state["data"] == {"dataset": "dsprites", "data_path": "x.npz"}
    assert state["metrics"]["beta_norm"] == pytest.approx(4.0 * 4 / 4096)
    x = torch.from_numpy(dsprites.sample_observations(4, np.random.default_rng(0)))
    torch.testing.assert_close(model.encode(x)[0], result.model.encode(x)[0])


class _PoisonedAfter:
    """Real dSprites batches, then NaN images from batch ``n`` on: forces a non-finite loss (the output bias's
    sample, drawn before the first batch, is not a batch)."""

    num_channels = 1

    def __init__(self, data, n):
        self.data, self.n, self.calls = data, n, 0

    def sample_observations(self, n, rng):
        images = self.data.sample_observations(n, rng)
        if n == OUTPUT_BIAS_SAMPLE:
            return images
        self.calls += 1
        return images * np.nan if self.calls > self.n else images


def test_divergence_raises_naming_the_step_and_keeps_the_last_good_checkpoint(dsprites, tmp_path):
    path = tmp_path / "ck.pt"
    config = TrainConfig(batch_size=8, train_samples=8 * 10, checkpoint_every=2, seed=0)
    with pytest.raises(DivergenceError, match="step 5") as info:
        train(_PoisonedAfter(dsprites, 5), SMALL, config, checkpoint_path=path)
    assert info.value.step == 5
    state = read_checkpoint(path)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model_state"].values())


def test_channel_mismatch_is_refused(dsprites):
    with pytest.raises(DataError, match="channel"):
        train(dsprites, ModelConfig(num_channels=3), TrainConfig(train_samples=8))
