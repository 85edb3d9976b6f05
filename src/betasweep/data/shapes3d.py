"""3dshapes from its ``3dshapes.h5`` file.

Source: Burgess & Kim (2018), "3D Shapes Dataset", github.com/deepmind/3d-shapes; introduced in
Kim & Mnih, "Disentangling by Factorising" (ICML 2018). Licence: Apache 2.0.
disentanglement_lib reads it as ``shapes3d`` (``data/ground_truth/shapes3d.py``, from an older
``.npz`` export with the same order). The file holds ``images`` uint8 ``(480000, 64, 64, 3)`` and
``labels`` float64 ``(480000, 6)``, the factor values: floor_hue (10 values in [0, 1]), wall_hue
(10), object_hue (10), scale (8 values in [0.75, 1.25]), shape (4: cube, cylinder, sphere, capsule),
orientation (15 values in [-30, 30] degrees), the rows in row-major order of those factors.

Reading is lazy: the labels are streamed in chunks to build the grid (each column's distinct values
become its classes, in increasing order), and images are read per row when asked for: with
positional reads of the file when ``images`` is a contiguous uncompressed dataset, else through
h5py's chunked reads (a compressed or chunked file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from betasweep.data._files import RowFile, grid_rows
from betasweep.data.base import GroundTruthData
from betasweep.errors import DataError

__all__ = ["Shapes3D"]

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
OFFICIAL_SIZES = (10, 10, 10, 8, 4, 15)
_LABEL_ROWS = 65_536  # labels streamed this many rows at a time (3 MB)


class Shapes3D(GroundTruthData):
    """The 3dshapes images, indexed by their factor classes.

    Factor sizes are the number of distinct values of each label column (``(10, 10, 10, 8, 4, 15)``
    for the official file; a file holding a sub-grid, e.g. a test's, gives its own); the rows must
    form a complete grid of those values, in any order. RAM held: the distinct values, and a
    lookup table (4 bytes per image) only when the rows are not in row-major order.

    Args:
        path: the ``.h5`` file (keys ``images`` and ``labels``).

    Raises:
        DataError: the file is missing or not HDF5, lacks ``images`` or ``labels``, ``images`` is
            not uint8 ``(N, 64, 64, 3)``, ``labels`` is not ``(N, 6)``, or the labels are not a
            complete grid.

    Images are float32 ``(n, 3, 64, 64)`` in [0, 1] (the file's bytes / 255).
    """

    dataset_name = "3dshapes"

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"3dshapes file not found: {self.path} (expected 3dshapes.h5 with keys images, labels)")
        try:
            h5 = h5py.File(self.path, "r")
        except OSError as error:
            raise DataError(f"{self.path}: not a readable HDF5 file ({error}; expected 3dshapes.h5, complete)") from None
        with h5:
            missing = [key for key in ("images", "labels") if key not in h5]
            if missing:
                raise DataError(f"{self.path}: missing key(s) {', '.join(missing)} (expected a 3dshapes .h5 with keys "
                                f"images, labels; found {', '.join(h5.keys()) or 'none'})")
            images, labels = h5["images"], h5["labels"]
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (64, 64, 3):
                raise DataError(f"{self.path}: images is {images.dtype} {images.shape}, expected uint8 (N, 64, 64, 3)")
            if labels.ndim != 2 or labels.shape[1] != 6 or labels.shape[0] != images.shape[0]:
                raise DataError(f"{self.path}: labels has shape {labels.shape}, expected ({images.shape[0]}, 6): "
                                f"{', '.join(FACTOR_NAMES)}")
            num_rows = images.shape[0]
            try:
                values = _distinct_values(labels)
                sizes = tuple(len(v) for v in values)
                flats = (np.ravel_multi_index(tuple(_classes(chunk, values).T), sizes) for chunk in _chunks(labels))
                self._row_of_flat = grid_rows(flats, sizes, num_rows, self.path)
                offset = images.id.get_offset() if images.chunks is None and images.compression is None else None
            except OSError as error:  # h5py's error for data cut short
                raise DataError(f"{self.path}: cannot read the data ({error}; truncated file?)") from None
        self.values = values  # each factor's label values, float64, increasing
        self._factor_sizes = sizes
        self._num_rows = num_rows
        if offset is not None:
            self._rows = RowFile(self.path, offset, num_rows, (64, 64, 3))
            if self.path.stat().st_size < self._rows.end:
                raise DataError(f"{self.path}: file is {self.path.stat().st_size} bytes, its images end at byte "
                                f"{self._rows.end} (truncated?)")
        else:
            self._rows = None
        self._h5 = None  # opened at the first chunked read

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._factor_sizes

    @property
    def num_channels(self) -> int:
        return 3

    def factor_values(self, factors: np.ndarray) -> np.ndarray:
        """The label values of factor classes ``factors`` (int ``(n, 6)``): float64 ``(n, 6)``."""
        factors = np.asarray(factors)
        return np.stack([self.values[i][factors[:, i]] for i in range(6)], axis=1)

    def rows_from_factors(self, factors: np.ndarray) -> np.ndarray:
        """Row of the file holding each factor vector: int64 ``(n,)``."""
        flat = self.flat_index(factors)
        return flat if self._row_of_flat is None else self._row_of_flat[flat].astype(np.int64)

    def raw_images(self, factors: np.ndarray) -> np.ndarray:
        """The file's images of ``factors``: uint8 ``(n, 64, 64, 3)``."""
        rows = self.rows_from_factors(factors)
        if self._rows is not None:
            return self._rows.read(rows)
        import h5py

        if self._h5 is None or self._h5[1] != os.getpid():
            self._h5 = (h5py.File(self.path, "r"), os.getpid())
        unique, inverse = np.unique(rows, return_inverse=True)
        try:
            out = self._h5[0]["images"][unique]  # h5py reads increasing indices
        except OSError as error:
            raise DataError(f"{self.path}: cannot read images ({error}; truncated file?)") from None
        return out[inverse]

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The images of ``factors`` (int ``(n, 6)``): float32 ``(n, 3, 64, 64)`` in [0, 1].

        Deterministic: ``rng`` is never drawn from.
        """
        images = self.raw_images(factors).transpose(0, 3, 1, 2).astype(np.float32)  # (n, 3, 64, 64)
        images *= np.float32(1 / 255)  # in place: one float32 batch, not two
        return images

    def __getstate__(self):
        return {**self.__dict__, "_h5": None}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "files": [str(self.path)],
            "file_images": {"shape": [self._num_rows, 64, 64, 3], "dtype": "uint8"},
            "ram_bytes": int(sum(v.nbytes for v in self.values)
                             + (0 if self._row_of_flat is None else self._row_of_flat.nbytes)),
            "image_bytes_read": 64 * 64 * 3,
            "layout": ("images is a contiguous dataset: read in place, per image" if self._rows is not None
                       else "images is chunked or compressed: read through h5py, chunk by chunk"),
        }


def _chunks(labels):
    for start in range(0, labels.shape[0], _LABEL_ROWS):
        yield np.asarray(labels[start:start + _LABEL_ROWS], dtype=np.float64)


def _distinct_values(labels) -> list[np.ndarray]:
    """Each column's distinct values, increasing (one streamed pass)."""
    values = [np.empty(0)] * labels.shape[1]
    for chunk in _chunks(labels):
        values = [np.union1d(v, chunk[:, i]) for i, v in enumerate(values)]
    return values


def _classes(chunk: np.ndarray, values: list[np.ndarray]) -> np.ndarray:
    """Class index of each label value: int64 ``(n, 6)``."""
    return np.stack([np.searchsorted(v, chunk[:, i]) for i, v in enumerate(values)], axis=1)
