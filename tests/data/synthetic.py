"""Small files in each ground-truth dataset's official layout (same keys, dtypes, per-image shapes and
factor order; a sub-grid of a few hundred images), written under a test's temporary folder.

Images are random, every image distinct, so that a lookup returning the wrong row is caught.
Each writer returns ``(path, expected)``: ``expected`` holds the factor sizes and, per grid point
(row-major), the file's own image as the loader should return it (uint8, the file's layout).
Importable as ``synthetic`` from tests/data (pytest puts a test file's folder on sys.path).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

# Official label values (3dshapes: github.com/deepmind/3d-shapes).
SHAPES3D_VALUES = (np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10),
                   np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15))


def _grid(sizes) -> np.ndarray:
    """Every factor vector of the grid, row-major: int64 ``(prod(sizes), len(sizes))``."""
    return np.array(list(itertools.product(*(range(s) for s in sizes))), dtype=np.int64)


def write_dsprites(folder: Path, sizes=(3, 2, 2, 4, 4), *, shuffle: bool = False, compressed: bool = True,
                   seed: int = 0):
    """The official dSprites ``.npz`` layout (6 columns, constant colour, ``np.savez_compressed``) on a
    sub-grid of ``sizes`` (shape, scale, orientation, posX, posY)."""
    rng = np.random.default_rng(seed)
    grid = _grid(sizes)
    imgs = rng.integers(0, 2, size=(len(grid), 64, 64), dtype=np.uint8)
    order = rng.permutation(len(grid)) if shuffle else np.arange(len(grid))
    classes = np.concatenate([np.zeros((len(grid), 1), np.int64), grid], axis=1)[order]
    values = classes.astype(np.float64) / 10
    metadata = np.array({"latents_sizes": np.array((1, *sizes)),
                         "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY")}, dtype=object)
    path = folder / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    (np.savez_compressed if compressed else np.savez)(path, imgs=imgs[order], latents_classes=classes,
                                                      latents_values=values, metadata=metadata)
    return path, {"sizes": tuple(sizes), "images": imgs}


def write_shapes3d(folder: Path, sizes=(2, 2, 2, 2, 4, 3), *, shuffle: bool = False, chunked: bool = False,
                   seed: int = 0):
    """The official ``3dshapes.h5`` layout (``images`` uint8 ``(N, 64, 64, 3)``, ``labels`` float64
    ``(N, 6)``) on the first ``sizes`` official values of each factor."""
    import h5py

    rng = np.random.default_rng(seed)
    grid = _grid(sizes)
    images = rng.integers(0, 256, size=(len(grid), 64, 64, 3), dtype=np.uint8)
    labels = np.stack([SHAPES3D_VALUES[i][grid[:, i]] for i in range(6)], axis=1)
    order = rng.permutation(len(grid)) if shuffle else np.arange(len(grid))
    path = folder / "3dshapes.h5"
    with h5py.File(path, "w") as f:
        options = {"chunks": (16, 64, 64, 3), "compression": "gzip"} if chunked else {}
        f.create_dataset("images", data=images[order], **options)
        f.create_dataset("labels", data=labels[order])
    return path, {"sizes": tuple(sizes), "images": images}


def write_mpi3d(folder: Path, k: int = 2, *, name: str = "mpi3d_toy.npz", compressed: bool = False, seed: int = 0):
    """The official MPI3D ``.npz`` layout (one key ``images``, uint8 ``(N, 64, 64, 3)``, row-major
    6x6x2x3x3xkxk) with the first ``k`` values of both axes."""
    rng = np.random.default_rng(seed)
    sizes = (6, 6, 2, 3, 3, k, k)
    images = rng.integers(0, 256, size=(int(np.prod(sizes)), 64, 64, 3), dtype=np.uint8)
    path = folder / name
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    return path, {"sizes": sizes, "images": images}


def norb_bytes(array: np.ndarray) -> bytes:
    """``array`` in the NORB binary matrix format (magic, ndim, max(3, ndim) dims, data; little-endian)."""
    magic = {np.dtype(np.uint8): 0x1E3D4C55, np.dtype(np.int32): 0x1E3D4C54}[array.dtype]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    return np.array([magic, array.ndim, *dims], "<i4").tobytes() + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def write_smallnorb(folder: Path, sizes=(5, 3, 3, 2), *, instances=((4, 6), (0, 1)), seed: int = 0):
    """The official SmallNORB files (training and testing chunks: ``-dat``, ``-cat``, ``-info``) on a
    sub-grid of ``sizes`` (category, elevation, azimuth/2, lighting) with the given instances per
    chunk. The expected images are the left 96x96 images, per grid point and instance (sorted)."""
    rng = np.random.default_rng(seed)
    grid = _grid(sizes)
    folder.mkdir(parents=True, exist_ok=True)
    expected = np.empty((len(grid), sum(len(i) for i in instances), 96, 96), dtype=np.uint8)
    all_instances = sorted(i for chunk in instances for i in chunk)
    for chunk, chunk_instances in zip(("smallnorb-5x46789x9x18x6x2x96x96-training",
                                       "smallnorb-5x01235x9x18x6x2x96x96-testing"), instances):
        rows = [(g, inst) for inst in chunk_instances for g in range(len(grid))]
        rows = [rows[i] for i in rng.permutation(len(rows))]  # any order
        dat = rng.integers(0, 256, size=(len(rows), 2, 96, 96), dtype=np.uint8)
        cat = np.array([grid[g, 0] for g, _ in rows], np.int32)
        info = np.array([(inst, grid[g, 1], 2 * grid[g, 2], grid[g, 3]) for g, inst in rows], np.int32)
        for (g, inst), image in zip(rows, dat):
            expected[g, all_instances.index(inst)] = image[0]
        (folder / f"{chunk}-dat.mat").write_bytes(norb_bytes(dat))
        (folder / f"{chunk}-cat.mat").write_bytes(norb_bytes(cat))
        (folder / f"{chunk}-info.mat").write_bytes(norb_bytes(info))
    return folder, {"sizes": tuple(sizes), "images": expected}


def write_cars3d(folder: Path, cars: int = 3, *, seed: int = 0):
    """Cars3D's files (``car_NNN_mesh.mat``, ``im`` uint8 ``(128, 128, 3, 24, 4)``), ``cars`` of them.
    Expected: ``im`` per car, (car, 128, 128, 3, 24, 4)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ims = rng.integers(0, 256, size=(cars, 128, 128, 3, 24, 4), dtype=np.uint8)
    for i, im in enumerate(ims):
        scipy.io.savemat(folder / f"car_{i + 1:03d}_mesh.mat", {"im": im})
    return folder, {"sizes": (4, 24, cars), "images": ims}
