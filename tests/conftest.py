"""Shared fixtures: the real dSprites grid from ../shared/data, tiny trained models."""

from __future__ import annotations

import os
from pathlib import Path

# One thread per test process, and per process a test starts (they inherit the environment): two xdist
# workers on two cores, each running torch (or a worker subprocess) at the default of one thread per core,
# made small CPU steps 3-7x slower. Set before torch is first imported; tests that need more threads
# (tests/test_cluster.py) set them for their own subprocesses.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Real PostgreSQL and MLflow-server fixtures (tests/servers.py): postgres_server, postgres_url, mlflow_server;
# a real one-node Slurm cluster (tests/slurm.py): slurm_cluster.
pytest_plugins = ["servers", "slurm"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DSPRITES_PATH = SHARED_DATA / "dsprites" / "dsprites_downsampled.npz"
CELEBA_SAMPLE = SHARED_DATA / "celeba-sample"


# Seconds per test file on 2 quiet cores (`-n 2`): the `--durations` of the lead's clean-clone run of 2026-12-06
# (16 min 54 s without the compose tests) summed per file, less what issue 24's later test changes took out
# (commands in-process instead of subprocesses, test mlflow servers without MLflow's job runner, the Holm check
# without statsmodels' gc.collect()), estimated per change; files written since (test_race_restart's real race,
# test_race_slurm) estimated from what they run. Only the relative sizes matter. Files are handed to the xdist
# workers longest first (`--no-loadscope-reorder` in pyproject.toml keeps this order; xdist's default orders files by
# their number of tests), so a run does not end with one long file alone on one core. A file not listed counts as
# cheap and runs after these, in the collected order. Re-measure with `pytest --durations=0`, re-sum, when files
# change much.
FILE_COSTS = {
    "tests/test_outage.py": 160,  # its 60-s outage overlaps its two other tests (a thread); still much waiting
    "tests/test_compose_stack.py": 330,  # its own marker; the 15-minute figure leaves it out
    "tests/test_race_slurm.py": 150,
    "tests/test_distributed.py": 135,
    "tests/test_cluster.py": 120,
    "tests/test_race_distributed.py": 115,
    "tests/test_security.py": 100,
    "tests/sweeps/test_race_restart.py": 90,
    "tests/test_ui.py": 80,
    "tests/test_resume.py": 70,
    "tests/metrics/test_beta_vae.py": 65,  # trains the session's `trained_small`
    "tests/sweeps/test_sweep.py": 60,
    "tests/sweeps/test_methods_sweep.py": 55,
    "tests/sweeps/test_jobs.py": 55,
    "tests/test_storage_proxy.py": 50,
    "tests/models/test_methods.py": 47,
    "tests/test_api.py": 45,
    "tests/sweeps/test_race_sweep.py": 43,
    "tests/test_cli.py": 39,
    "tests/sweeps/test_race_extend.py": 32,
    "tests/metrics/test_panel.py": 28,
    "tests/test_families_cli.py": 22,
    "tests/sweeps/test_race.py": 19,
    "tests/test_docs.py": 17,
    "tests/training/test_cvae_shapes.py": 15,
    "tests/training/test_resume_and_speed.py": 15,
    "tests/sweeps/test_seeds.py": 13,
    "tests/training/test_family_checkpoints.py": 12,
    "tests/test_celeba_cli.py": 10,
    "tests/test_selectors.py": 9,
    "tests/test_benchmarks.py": 9,
    "tests/training/test_loop.py": 9,
    "tests/test_scoring.py": 7,
    "tests/test_bad_input.py": 5,
    "tests/sweeps/test_verdict.py": 3,
    # Users of the `trained_small` checkpoint that test_beta_vae.py trains: late, so they find it trained
    # instead of holding a core while they wait on its lock.
    "tests/metrics/test_udr.py": 1,
    "tests/metrics/test_vae_stats.py": 1,
}


def pytest_collection_modifyitems(config, items):
    """Order the test files by :data:`FILE_COSTS`, longest first; tests keep their order inside a file."""
    def path(item) -> str:
        return item.nodeid.split("::", 1)[0]

    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(path(item), index)
    items.sort(key=lambda item: (-FILE_COSTS.get(path(item), 0), first_seen[path(item)]))


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_per_process():
    """One torch thread in each test process (see the environment set at the top of this file)."""
    import torch

    torch.set_num_threads(1)
    yield


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
