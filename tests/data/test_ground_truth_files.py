"""The standard ground-truth datasets read from small files in their official layouts (tests/data/synthetic.py):
factor sizes, the file's own image for a factor row, sampling over the grid, the metric panel's
factor-value control, the nuisance of the dlib variants, and bad files refused in one line by the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import synthetic
from betasweep.cli import main
from betasweep.data import DATASET_CHANNELS, DATASETS, load_dataset
from betasweep.metrics import GridEncoding, beta_vae_score, factor_vae_score, mig, sap_score

# dataset name -> the file it reads (built once per module) and what the file holds
FILES = ("dsprites", "color_dsprites", "noisy_dsprites", "3dshapes", "3dshapes_chunked", "mpi3d_toy", "smallnorb", "cars3d")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ground-truth")
    (root / "chunked").mkdir()
    dsprites = synthetic.write_dsprites(root, shuffle=True)
    return {
        "dsprites": dsprites, "color_dsprites": dsprites, "noisy_dsprites": dsprites,
        "3dshapes": synthetic.write_shapes3d(root),
        "3dshapes_chunked": synthetic.write_shapes3d(root / "chunked", shuffle=True, chunked=True),
        "mpi3d_toy": synthetic.write_mpi3d(root),
        "smallnorb": synthetic.write_smallnorb(root / "norb"),
        "cars3d": synthetic.write_cars3d(root / "cars"),
    }


def _load(files, key):
    path, expected = files[key]
    return load_dataset(key.replace("_chunked", ""), path), expected


def _lanczos(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((64, 64), Image.LANCZOS), dtype=np.float32) / 255


def _file_images(key, data, expected, factors) -> np.ndarray:
    """The file's own images of ``factors`` as the loader should render them: float32 (n, C, 64, 64)."""
    flat = data.flat_index(factors)
    if key in ("dsprites", "color_dsprites", "noisy_dsprites"):
        return expected["images"][flat][:, None].astype(np.float32)
    if key.startswith(("3dshapes", "mpi3d")):
        return expected["images"][flat].transpose(0, 3, 1, 2).astype(np.float32) / 255
    if key == "cars3d":
        ims = expected["images"]  # (car, 128, 128, 3, azimuth, elevation)
        return np.stack([_lanczos(ims[c, :, :, :, a, e]).transpose(2, 0, 1) for e, a, c in factors])
    raise AssertionError(key)


@pytest.mark.parametrize("key", FILES)
def test_factor_sizes_and_images_are_the_files_own(files, key):
    data, expected = _load(files, key)
    assert data.factor_sizes == expected["sizes"] and data.num_images == int(np.prod(expected["sizes"]))
    assert data.num_channels == DATASET_CHANNELS[key.replace("_chunked", "")]
    factors = data.sample_factors(40, np.random.default_rng(1))
    images = data.images_from_factors(factors)
    assert images.dtype == np.float32 and images.shape == (40, data.num_channels, 64, 64)
    assert images.min() >= 0 and images.max() <= 1
    if key == "smallnorb":  # the instance is a nuisance: each image is one of its grid point's instances
        flat = data.flat_index(factors)
        for j in range(data.num_instances):
            chosen = data.raw_images(data.rows_from_factors(factors, np.full(40, j)))
            np.testing.assert_array_equal(chosen, expected["images"][flat, j])
        candidates = np.stack([[_lanczos(im) for im in expected["images"][g]] for g in flat])  # (40, K, 64, 64)
        assert np.all(np.abs(candidates - images).max(axis=(2, 3)).min(axis=1) < 1e-6)  # (40, K) -> (40,)
        return
    wanted = _file_images(key, data, expected, factors)
    if key == "color_dsprites":  # the sprite in one colour per image, in [0.5, 1] per channel; background black
        on = wanted[:, 0] > 0
        assert np.array_equal(images.max(axis=1) > 0, on)
        colour = images.max(axis=(2, 3))  # (n, 3)
        assert np.all((colour >= 0.5) & (colour <= 1))
        np.testing.assert_allclose(images, wanted * colour[:, :, None, None], rtol=1e-6)
    elif key == "noisy_dsprites":  # the white sprite on noise
        on = np.broadcast_to(wanted > 0, images.shape)
        assert np.all(images[on] == 1) and images[~on].std() > 0.2
    else:
        np.testing.assert_allclose(images, wanted, atol=1e-6)


@pytest.mark.parametrize("key", ["dsprites", "3dshapes", "mpi3d_toy", "smallnorb", "cars3d"])
def test_sample_factors_cover_the_grid(files, key):
    data, _ = _load(files, key)
    factors = data.sample_factors(20 * data.num_images, np.random.default_rng(0))
    assert factors.dtype == np.int64 and factors.shape == (20 * data.num_images, data.num_factors)
    assert np.unique(data.flat_index(factors)).size == data.num_images


@pytest.mark.parametrize("key", ["dsprites", "3dshapes", "mpi3d_toy", "smallnorb", "cars3d"])
def test_factor_values_control_scores_as_on_dsprites(files, key):
    data, _ = _load(files, key)
    codes = data.factors_from_flat_index(np.arange(data.num_images)).astype(np.float64)
    encoding = GridEncoding.from_codes(data, codes)
    small = {"num_train": 500, "num_eval": 250}
    assert beta_vae_score(data, encoding, np.random.default_rng(0), batch_size=16, **small)["eval_accuracy"] >= 0.99
    assert factor_vae_score(data, encoding, np.random.default_rng(0), batch_size=16, num_variance_estimate=500,
                            **small)["eval_accuracy"] >= 0.99
    assert mig(data, encoding, np.random.default_rng(0), num_train=2000)["mig"] >= 0.95
    assert sap_score(data, encoding, np.random.default_rng(0), **small)["sap"] > 0.05


@pytest.mark.parametrize("key", ["color_dsprites", "noisy_dsprites", "smallnorb"])
def test_the_nuisance_is_drawn_from_the_rng_or_fixed_by_the_grid_point(files, key):
    data, _ = _load(files, key)
    factors = data.sample_factors(16, np.random.default_rng(0))
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    first, second = data.images_from_factors(factors, rng), data.images_from_factors(factors, rng)
    assert rng.bit_generator.state != state  # drawn from the rng, as disentanglement_lib does
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(data.images_from_factors(factors), data.images_from_factors(factors))
    again = np.random.default_rng(5)
    np.testing.assert_array_equal(data.images_from_factors(factors, again), first)


def test_every_file_dataset_is_a_dataset_name():
    assert {"dsprites", "color_dsprites", "noisy_dsprites", "3dshapes", "mpi3d_toy", "mpi3d_realistic", "mpi3d_real",
            "smallnorb", "cars3d"} <= set(DATASETS) and set(DATASET_CHANNELS) == set(DATASETS)


@pytest.mark.parametrize("key", ["dsprites", "3dshapes", "mpi3d_toy", "smallnorb", "cars3d"])
def test_data_check_says_what_it_found_and_writes_nothing(files, key, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BETASWEEP_CACHE", str(tmp_path / "cache"))
    path, expected = files[key]
    assert main(["data", "check", "--dataset", key, str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert tuple(info["factors"].values()) == expected["sizes"] and info["grid_images"] == int(np.prod(expected["sizes"]))
    assert info["channels"] == DATASET_CHANNELS[key] and "ram_bytes" in info and info["layout"]
    assert not (tmp_path / "cache").exists()


def _truncate(path: Path, out: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def _bad_files(files, tmp: Path):
    """(dataset, path, text the one-line error must contain) for each kind of bad input."""
    import h5py
    import scipy.io

    dsprites, _ = files["dsprites"]
    with np.load(dsprites) as npz:  # never unpickle: the metadata member is skipped
        arrays = {key: npz[key] for key in npz.files if key != "metadata"}
    np.savez(tmp / "no_classes.npz", imgs=arrays["imgs"])
    np.savez(tmp / "four_columns.npz", imgs=arrays["imgs"], latents_classes=arrays["latents_classes"][:, :4])
    with h5py.File(tmp / "wrong_key.h5", "w") as f:
        f["imgs"] = np.zeros((4, 64, 64, 3), np.uint8)
        f["labels"] = np.zeros((4, 6))
    with h5py.File(tmp / "five_labels.h5", "w") as f:
        f["images"] = np.zeros((4, 64, 64, 3), np.uint8)
        f["labels"] = np.zeros((4, 5))
    np.savez(tmp / "mpi3d_wrong_count.npz", images=np.zeros((650, 64, 64, 3), np.uint8))
    np.savez(tmp / "mpi3d_wrong_key.npz", imgs=np.zeros((648, 64, 64, 3), np.uint8))
    norb = tmp / "norb"
    norb.mkdir()
    for file in files["smallnorb"][0].iterdir():
        (norb / file.name).write_bytes(file.read_bytes())
    training_dat = norb / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat"
    _truncate(training_dat, training_dat, 0.7)
    cars = tmp / "cars"
    cars.mkdir()
    scipy.io.savemat(cars / "car_001_mesh.mat", {"im": np.zeros((64, 64, 3, 24, 4), np.uint8)})
    return [
        ("dsprites", _truncate(dsprites, tmp / "truncated.npz"), "not a readable .npz file"),
        ("dsprites", tmp / "no_classes.npz", "missing key(s) latents_classes"),
        ("dsprites", tmp / "four_columns.npz", "latents_classes has 4 columns, expected 5 or 6"),
        ("3dshapes", _truncate(files["3dshapes"][0], tmp / "truncated.h5"), "not a readable HDF5 file"),
        ("3dshapes", tmp / "wrong_key.h5", "missing key(s) images"),
        ("3dshapes", tmp / "five_labels.h5", "expected (4, 6): floor_hue"),
        ("mpi3d_toy", _truncate(files["mpi3d_toy"][0], tmp / "mpi3d_truncated.npz", 0.9), "not a readable .npz file"),
        ("mpi3d_toy", tmp / "mpi3d_wrong_count.npz", "650 images do not form the MPI3D grid: expected 1036800"),
        ("mpi3d_toy", tmp / "mpi3d_wrong_key.npz", "missing key images"),
        ("smallnorb", norb, "training-dat.mat"),
        ("smallnorb", tmp / "missing", "SmallNORB folder not found"),
        ("cars3d", cars, "expected uint8 (128, 128, 3, 24, 4)"),
    ]


def test_bad_files_are_one_line_exit_2_and_nothing_written(files, tmp_path, capsys, monkeypatch):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("BETASWEEP_CACHE", str(cache))
    monkeypatch.chdir(work)
    for name, path, needle in _bad_files(files, inputs):
        assert main(["data", "check", "--dataset", name, str(path)]) == 2, (name, path)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("betasweep: error: ") and needle in err[0], (name, err)
        assert str(path) in err[0] or path.name in err[0], err
    assert not cache.exists() and not any(work.iterdir())


def test_touching_images_grows_rss_by_less_than_the_bytes_touched(tmp_path):
    """The cheap version of benchmarks/dataset_memory.py: a 127 MB MPI3D file (stored member, read in
    place), 10,000 of its images touched in a fresh process; an eager loader would grow by >= 127 MB."""
    import subprocess
    import sys

    path, _ = synthetic.write_mpi3d(tmp_path, k=4)  # 10,368 images
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "dataset_memory.py"
    proc = subprocess.run([sys.executable, str(script), "--measure", "mpi3d_toy", str(path), "10000"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["touched_bytes"] == 10_000 * 64 * 64 * 3
    assert row["peak_rss_growth_bytes"] <= 0.5 * row["touched_bytes"], row  # measured: about 0.25
