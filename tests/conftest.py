"""Shared fixtures: the real dSprites grid from ../shared/data, tiny trained models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# Real PostgreSQL and MLflow-server fixtures (tests/servers.py): postgres_server, postgres_url, mlflow_server;
# a real one-node Slurm cluster (tests/slurm.py): slurm_cluster.
pytest_plugins = ["servers", "slurm"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DSPRITES_PATH = SHARED_DATA / "dsprites" / "dsprites_downsampled.npz"
CELEBA_SAMPLE = SHARED_DATA / "celeba-sample"


@pytest.fixture(scope="session", autouse=True)
def _image_cache(tmp_path_factory):
    """CelebA image caches go to a temporary folder (shared by this session), never to ~/.cache."""
    import os

    if "BETASWEEP_CACHE" not in os.environ:
        os.environ["BETASWEEP_CACHE"] = str(tmp_path_factory.mktemp("betasweep-cache"))
    yield


@pytest.fixture(scope="session")
def dsprites_path() -> Path:
    if not DSPRITES_PATH.is_file():
        pytest.skip(f"real dSprites not found at {DSPRITES_PATH}")
    return DSPRITES_PATH


@pytest.fixture(scope="session")
def dsprites(dsprites_path):
    from betasweep.data import DSprites

    return DSprites(dsprites_path)


@pytest.fixture(scope="session")
def dsprites_raw(dsprites_path) -> dict[str, np.ndarray]:
    with np.load(dsprites_path) as npz:  # never unpickle: the pickled metadata member is skipped
        return {key: npz[key] for key in npz.files if key != "metadata"}


@pytest.fixture(scope="session")
def trained_small(dsprites, tmp_path_factory, worker_id):
    """A small β-VAE trained on real dSprites (β=1, m=6, k=16, 24,000 samples at batch 16) and its checkpoint.

    1,500 steps escape the early posterior collapse on dSprites (fewer, larger steps at β=4 do not).
    Under pytest-xdist the first worker to ask trains it and the others load its checkpoint (a file
    lock in the run's shared temporary folder, as pytest-xdist's documentation suggests), so the
    minutes of training are spent once per run.
    """
    from filelock import FileLock

    from betasweep.models import ModelConfig
    from betasweep.training import TrainConfig, TrainResult, load_checkpoint, train

    def train_once(path: Path) -> TrainResult:
        model_config = ModelConfig(latent_dim=6, width=16)
        train_config = TrainConfig(beta=1.0, batch_size=16, train_samples=24_000, learning_rate=1e-3, seed=0)
        return train(dsprites, model_config, train_config, checkpoint_path=path,
                     extra={"dataset": "dsprites", "data_path": str(DSPRITES_PATH)})

    if worker_id == "master":  # no xdist
        path = tmp_path_factory.mktemp("trained") / "checkpoint.pt"
        return train_once(path), path
    shared = tmp_path_factory.getbasetemp().parent / "trained-small"
    shared.mkdir(exist_ok=True)
    path = shared / "checkpoint.pt"
    with FileLock(str(shared / "lock")):
        if not path.is_file():
            return train_once(path), path
    model, state = load_checkpoint(path)
    return TrainResult(model=model, step=state["step"], samples_seen=state["samples_seen"],
                       history=state.get("history", []), model_config=model.config), path


@pytest.fixture(scope="session")
def celeba_labels():
    """Attributes, partitions and identities of the real CelebA sample (no images read)."""
    from betasweep.data.celeba import ATTRIBUTE_FILE, read_labels

    if not (CELEBA_SAMPLE / ATTRIBUTE_FILE).is_file():
        pytest.skip(f"CelebA sample not found at {CELEBA_SAMPLE}")
    return read_labels(CELEBA_SAMPLE)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on 2 shared, busy cores, two threads made small CPU steps 3-7x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
