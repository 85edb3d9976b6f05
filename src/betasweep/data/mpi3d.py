"""MPI3D (toy, realistic, real) from its ``.npz`` file.

Source: Gondal, Wüthrich, Miladinović, Locatello, Breidt, Volchkov, Akpo, Bachem, Schölkopf & Bauer
(2019), "On the Transfer of Inductive Bias from Simulation to the Real World: a New
Disentanglement Dataset" (NeurIPS 2019), github.com/rr-learning/disentanglement_dataset; the
NeurIPS 2019 disentanglement challenge's data. Licence: Creative Commons Attribution 4.0.
disentanglement_lib ``data/ground_truth/mpi3d.py``. Three renderings of one grid:
``mpi3d_toy.npz``, ``mpi3d_realistic.npz``, ``mpi3d_real.npz``, each with one key, ``images``,
uint8 ``(1036800, 64, 64, 3)``, and no labels: row ``i`` is grid point ``i`` in row-major order of
object_color 6, object_shape 6, object_size 2, camera_height 3, background_color 3,
horizontal_axis 40, vertical_axis 40 (disentanglement_lib's ``factor_bases``).

Reading is lazy: a stored ``images`` member is read in place; a compressed one is stream-decompressed
once into an uncompressed ``.npy`` copy in the cache folder (12.7 GB for a full file) at the first
image read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from betasweep.data._files import NpzMember, human_bytes, open_zip
from betasweep.data.base import GroundTruthData
from betasweep.errors import DataError

__all__ = ["MPI3D"]

FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                "horizontal_axis", "vertical_axis")
OFFICIAL_SIZES = (6, 6, 2, 3, 3, 40, 40)
_FIXED = OFFICIAL_SIZES[:5]  # 648 combinations of the first five factors
VARIANTS = ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real")


class MPI3D(GroundTruthData):
    """MPI3D images by their factor classes (one of the three renderings).

    The file has no labels, so the grid is known from the row count: ``N = 648 * k**2`` rows are
    read as ``6 x 6 x 2 x 3 x 3 x k x k`` (``k = 40``: the official 1,036,800 images; a smaller
    ``k``: a file holding the first ``k`` values of both axes, such as a test's). Any other ``N`` is
    refused. Deterministic: no nuisance. RAM held: nothing per image.

    Args:
        path: the ``.npz`` file.
        variant: ``mpi3d_toy``, ``mpi3d_realistic`` or ``mpi3d_real`` (a label only: the three files
            share their layout).
        cache_dir: where the uncompressed copy of a compressed ``images`` goes (default
            ``$BETASWEEP_CACHE`` or ``~/.cache/betasweep``).

    Raises:
        DataError: the file is missing or not an ``.npz``, lacks ``images``, ``images`` is not uint8
            ``(N, 64, 64, 3)``, or ``N`` is not ``648 * k**2``; at the first image read, the data is
            cut short. Nothing is written when the file is refused.

    Images are float32 ``(n, 3, 64, 64)`` in [0, 1] (the file's bytes / 255).
    """

    def __init__(self, path: str | os.PathLike, variant: str = "mpi3d_toy", *,
                 cache_dir: str | os.PathLike | None = None):
        if variant not in VARIANTS:
            raise DataError(f"unknown MPI3D variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        self.dataset_name = variant
        self.path = Path(path)
        self.cache_dir = cache_dir
        with open_zip(self.path, variant) as zf:
            if "images.npy" not in zf.namelist():
                found = ", ".join(name[:-4] for name in zf.namelist() if name.endswith(".npy")) or "none"
                raise DataError(f"{self.path}: missing key images (expected an MPI3D .npz with key images; found {found})")
            images = NpzMember(self.path, "images", zf)
        if images.dtype != np.uint8 or len(images.shape) != 4 or images.shape[1:] != (64, 64, 3):
            raise DataError(f"{self.path}: images is {images.dtype} {images.shape}, expected uint8 (N, 64, 64, 3)")
        n = images.shape[0]
        k = math.isqrt(n // 648) if n % 648 == 0 else 0
        if k < 1 or 648 * k * k != n:
            raise DataError(f"{self.path}: {n} images do not form the MPI3D grid: expected 1036800 "
                            f"({'x'.join(map(str, OFFICIAL_SIZES))}), or 648*k*k for a k x k sub-grid of the two axes")
        self._factor_sizes = (*_FIXED, k, k)
        self._member = images
        self._rows = None

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._factor_sizes

    @property
    def num_channels(self) -> int:
        return 3

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        """The file's images of ``factors`` (int ``(n, 7)``): uint8 ``(n, 64, 64, 3)``; row = flat index."""
        if self._rows is None:
            self._rows = self._member.row_file(self.cache_dir)
        return self._rows.read(self.flat_index(factors))

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The images of ``factors``: float32 ``(n, 3, 64, 64)`` in [0, 1]. ``rng`` is never drawn from."""
        images = self.raw_images(factors).transpose(0, 3, 1, 2).astype(np.float32)  # (n, 3, 64, 64)
        images *= np.float32(1 / 255)  # in place: one float32 batch, not two
        return images

    def describe(self) -> dict:
        member = self._member
        out = {
            **super().describe(),
            "files": [str(self.path)],
            "file_images": {"shape": list(member.shape), "dtype": "uint8"},
            "ram_bytes": 0,
            "image_bytes_read": 64 * 64 * 3,
        }
        if member.compressed:
            cached = member.cache_path(self.cache_dir)
            present = cached.is_file() and cached.stat().st_size == member.info.file_size
            out["disk_cache"] = {"path": str(cached), "bytes": int(member.info.file_size), "present": present}
            out["layout"] = (f"images is compressed: decompressed once into an uncompressed copy "
                             f"({human_bytes(member.info.file_size)}{', present' if present else ', written at the first image read'})"
                             f", then read per image")
        else:
            out["layout"] = "images is stored uncompressed: read in place, per image"
        return out
