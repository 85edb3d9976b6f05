"""Cars3D from the ``.mat`` files of Reed et al., resized to 64x64.

Source: Reed, Zhang, Zhang & Lee (2015), "Deep Visual Analogy-Making" (NeurIPS 2015); the car
renderings (from Fidler, Dickinson & Urtasun's 3D CAD models, NeurIPS 2012) are published by Scott
Reed with the paper's data (``nips2015-analogy-data``, folder ``cars``). Licence: none stated.
disentanglement_lib ``data/ground_truth/cars3d.py``.

The folder holds one file per car (183 cars: ``car_001_mesh.mat`` ...), each with one variable
``im``, uint8 ``(128, 128, 3, 24, 4)``: height, width, RGB, 24 azimuths, 4 elevations. Factors, in
dlib's order: elevation 4, azimuth 24, object_type 183 (the car: the files in sorted name order;
dlib takes the folder listing's order, which is not defined). Images are resized to 64x64 with
Pillow's Lanczos filter (dlib: ``thumbnail`` with ``ANTIALIAS``, the same filter).

Reading is lazy: a car's file is read (``scipy.io.loadmat``) and its 96 images resized only when one
of them is asked for; the last ``cache_cars`` cars read are kept (1.2 MB each, uint8).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.errors import DataError

__all__ = ["Cars3D"]

FACTOR_NAMES = ("elevation", "azimuth", "object_type")
OFFICIAL_SIZES = (4, 24, 183)
_SHAPE_HEAD = (128, 128, 3)  # each file's im: (128, 128, 3, azimuths, elevations)


class Cars3D(GroundTruthData):
    """Cars3D images by elevation, azimuth and car.

    Factor sizes: elevations and azimuths from the files' ``im`` shape (``(4, 24)`` officially),
    cars from the number of ``.mat`` files (183 officially; a test's folder may hold fewer).
    Deterministic. RAM held: at most ``cache_cars`` resized cars.

    Args:
        path: the folder of ``.mat`` files.
        cache_cars: resized cars kept in memory (least recently used dropped first).

    Raises:
        DataError: the folder is missing or holds no ``.mat`` file, a file is not a readable MATLAB
            file, lacks ``im``, or its ``im`` is not uint8 ``(128, 128, 3, A, E)`` with the same
            ``A, E`` in every file (checked from each file's header, without reading its images).

    Images are float32 ``(n, 3, 64, 64)`` in [0, 1].
    """

    dataset_name = "cars3d"

    def __init__(self, path: str | os.PathLike, *, cache_cars: int = 32):
        import scipy.io

        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"Cars3D folder not found: {self.path} (expected the folder of car_NNN_mesh.mat files)")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix == ".mat" and p.is_file())
        if not self.files:
            raise DataError(f"{self.path}: no .mat files (expected Cars3D's car_NNN_mesh.mat files, 183 of them)")
        pose = None
        for file in self.files:
            try:
                variables = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(file)}
            except Exception as error:  # noqa: BLE001 - scipy raises several types for a bad file
                raise DataError(f"{file}: not a readable MATLAB file ({type(error).__name__}: {error})") from None
            if "im" not in variables:
                raise DataError(f"{file}: missing variable im (expected im, uint8 (128, 128, 3, 24, 4); "
                                f"found {', '.join(variables) or 'none'})")
            shape, kind = variables["im"]
            if len(shape) != 5 or tuple(shape[:3]) != _SHAPE_HEAD or kind != "uint8":
                raise DataError(f"{file}: im is {kind} {tuple(shape)}, expected uint8 (128, 128, 3, 24, 4)")
            if pose is None:
                pose = tuple(shape[3:])
            elif tuple(shape[3:]) != pose:
                raise DataError(f"{file}: im has {shape[3]} azimuths x {shape[4]} elevations, "
                                f"{self.files[0].name} has {pose[0]} x {pose[1]}; expected the same in every file")
        self._azimuths, self._elevations = pose
        self._factor_sizes = (self._elevations, self._azimuths, len(self.files))
        self.cache_cars = max(1, int(cache_cars))
        self._cars: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._factor_sizes

    @property
    def num_channels(self) -> int:
        return 3

    def car_images(self, car: int) -> np.ndarray:
        """All images of car ``car``, resized: uint8 ``(elevations, azimuths, 64, 64, 3)``.

        Raises:
            DataError: the file cannot be read (truncated or corrupt).
        """
        if car in self._cars:
            self._cars.move_to_end(car)
            return self._cars[car]
        import scipy.io
        from PIL import Image

        file = self.files[car]
        try:
            im = scipy.io.loadmat(file, variable_names=["im"])["im"]  # (128, 128, 3, A, E)
        except Exception as error:  # noqa: BLE001
            raise DataError(f"{file}: cannot read im ({type(error).__name__}: {error}; truncated file?)") from None
        out = np.empty((self._elevations, self._azimuths, 64, 64, 3), dtype=np.uint8)
        for a in range(self._azimuths):
            for e in range(self._elevations):
                out[e, a] = np.asarray(Image.fromarray(np.ascontiguousarray(im[:, :, :, a, e])).resize((64, 64), Image.LANCZOS))
        self._cars[car] = out
        while len(self._cars) > self.cache_cars:
            self._cars.popitem(last=False)
        return out

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        """The resized images of ``factors`` (int ``(n, 3)``: elevation, azimuth, car): uint8 ``(n, 64, 64, 3)``."""
        factors = np.asarray(factors, dtype=np.int64)
        out = np.empty((len(factors), 64, 64, 3), dtype=np.uint8)
        for car in np.unique(factors[:, 2]):
            mine = factors[:, 2] == car
            out[mine] = self.car_images(int(car))[factors[mine, 0], factors[mine, 1]]
        return out

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The images of ``factors``: float32 ``(n, 3, 64, 64)`` in [0, 1]. ``rng`` is never drawn from."""
        images = self.raw_images(factors).transpose(0, 3, 1, 2).astype(np.float32)  # (n, 3, 64, 64)
        images *= np.float32(1 / 255)  # in place: one float32 batch, not two
        return images

    def describe(self) -> dict:
        return {
            **super().describe(),
            "files": [str(self.path / "*.mat")],
            "cars": len(self.files),
            "file_images": {"shape": [len(self.files), 128, 128, 3, self._azimuths, self._elevations], "dtype": "uint8"},
            "ram_bytes": self.cache_cars * self._elevations * self._azimuths * 64 * 64 * 3,
            "image_bytes_read": 128 * 128 * 3 * self._azimuths * self._elevations,
            "layout": f"one file per car, read whole and resized when first touched; the last {self.cache_cars} cars kept",
        }
