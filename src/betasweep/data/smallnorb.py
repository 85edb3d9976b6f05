"""SmallNORB from its NORB binary-matrix files, resized to 64x64.

Source: LeCun, Huang & Bottou (2004), "Learning Methods for Generic Object Recognition with
Invariance to Pose and Lighting" (CVPR 2004); published by the authors at NYU (the NORB page,
``norb-v1.0-small``). Licence: none stated by the authors (distributed for research).
disentanglement_lib ``data/ground_truth/norb.py``.

Files (both chunks, in one folder, unzipped from their ``.gz``):
``smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`` and
``smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat``, 24,300 rows each, in the NORB
binary matrix format: an int32 magic number (``0x1E3D4C55`` ubyte, ``0x1E3D4C54`` int32), int32
``ndim``, ``max(3, ndim)`` int32 dimensions, then the data (little-endian). ``dat``: uint8
``(N, 2, 96, 96)``, a stereo pair per row (the left image, index 0, is used, as dlib does); ``cat``:
int32 ``(N,)``, the category; ``info``: int32 ``(N, 4)``: instance, elevation, azimuth (0, 2, ..., 34;
halved to 0..17), lighting.

Factors as disentanglement_lib: category 5, elevation 9, azimuth 18, lighting 6; the instance (10,
5 per chunk) is a nuisance drawn per image. Images are read on demand (one 96x96 left image per
row, positional reads) and resized to 64x64 with Pillow's Lanczos filter (dlib: PIL ``ANTIALIAS``,
the same filter). Note: dlib maps the ubyte magic number to int8; the NORB format defines it as
unsigned bytes, which is what is read here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from betasweep.data._files import RowFile, fixed_nuisance_rng
from betasweep.data.base import GroundTruthData
from betasweep.errors import DataError

__all__ = ["SmallNORB", "read_norb_header"]

FACTOR_NAMES = ("category", "elevation", "azimuth", "lighting")
OFFICIAL_SIZES = (5, 9, 18, 6)
CHUNKS = ("smallnorb-5x46789x9x18x6x2x96x96-training", "smallnorb-5x01235x9x18x6x2x96x96-testing")
_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64,
          0x1E3D4C56: np.int16}


def read_norb_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, shape, data_offset)`` of a NORB binary matrix file.

    Raises:
        DataError: the file is missing, has an unknown magic number, or is shorter than its header
            says (truncated).
    """
    if not path.is_file():
        raise DataError(f"SmallNORB file not found: {path} (expected the NORB binary matrix file of that name, "
                        "unzipped)" + (f"; found {path.name}.gz: gunzip it" if path.with_name(path.name + ".gz").is_file() else ""))
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise DataError(f"{path}: {len(head)} bytes, too short for a NORB binary matrix header")
        magic, ndim = np.frombuffer(head, "<i4")
        if int(magic) not in _MAGIC:
            raise DataError(f"{path}: magic number {int(magic):#x} is not a NORB matrix's "
                            f"(expected 0x1e3d4c55 for bytes or 0x1e3d4c54 for int32)")
        if not 1 <= ndim <= 8:
            raise DataError(f"{path}: NORB header gives {int(ndim)} dimensions")
        dims = np.frombuffer(f.read(4 * max(3, int(ndim))), "<i4")
    dtype = np.dtype(_MAGIC[int(magic)]).newbyteorder("<")
    shape = tuple(int(d) for d in dims[: int(ndim)])
    offset = 8 + 4 * max(3, int(ndim))
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise DataError(f"{path}: {path.stat().st_size} bytes, its header ({dtype} {shape}) needs {expected} (truncated?)")
    return dtype, shape, offset


def _read_norb(path: Path, dtype, shape_tail: tuple[int, ...]) -> np.ndarray:
    """A small NORB matrix (cat or info) read whole, checked against ``dtype`` and ``(N, *shape_tail)``."""
    got_dtype, shape, offset = read_norb_header(path)
    if got_dtype != np.dtype(dtype) or tuple(shape[1:]) != shape_tail:
        raise DataError(f"{path}: holds {got_dtype} {shape}, expected {np.dtype(dtype)} (N{''.join(', ' + str(s) for s in shape_tail)})")
    with open(path, "rb") as f:
        f.seek(offset)
        return np.frombuffer(f.read(), dtype=got_dtype, count=int(np.prod(shape))).reshape(shape)


class SmallNORB(GroundTruthData):
    """SmallNORB's left-camera images by category, elevation, azimuth and lighting.

    Both chunks' rows together must hold, for every combination of the four factors, the same
    number of instances (10 in the official files). Factor sizes are each factor's maximum + 1
    (azimuth halved), so a file holding a sub-grid (a test's) gives its own. RAM held: the rows of
    each combination's instances (4 bytes per image).

    Args:
        path: the folder holding the six ``.mat`` files (see the module docstring).

    Raises:
        DataError: a file is missing (named, with a hint when only its ``.gz`` is there), has a
            wrong magic number, shape or dtype, is truncated, the chunks' row counts disagree, or
            the labels are not a complete grid with equal instances per combination.

    Images are float32 ``(n, 1, 64, 64)`` in [0, 1]. :meth:`images_from_factors` draws each
    image's instance from ``rng`` (as dlib); with ``rng=None`` the instance is a fixed function of
    the grid point.
    """

    dataset_name = "smallnorb"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"SmallNORB folder not found: {self.path} (expected a folder with "
                            f"{CHUNKS[0]}-dat.mat and the other five files)")
        readers, labels = [], []
        for chunk in CHUNKS:
            dat = self.path / f"{chunk}-dat.mat"
            dtype, shape, offset = read_norb_header(dat)
            if dtype != np.uint8 or len(shape) != 4 or shape[1:] != (2, 96, 96):
                raise DataError(f"{dat}: holds {dtype} {shape}, expected uint8 (N, 2, 96, 96)")
            category = _read_norb(self.path / f"{chunk}-cat.mat", np.int32, ())
            info = _read_norb(self.path / f"{chunk}-info.mat", np.int32, (4,))
            if not len(category) == len(info) == shape[0]:
                raise DataError(f"{self.path}: {chunk} has {shape[0]} images, {len(category)} categories and "
                                f"{len(info)} info rows; expected the same count")
            readers.append(RowFile(dat, offset, shape[0], (96, 96), np.uint8, stride=2 * 96 * 96))
            labels.append(np.column_stack([category, info[:, 1], info[:, 2] // 2, info[:, 3], info[:, 0]]))
        self._readers = readers
        self._chunk_start = np.cumsum([0] + [r.num_rows for r in readers])
        features = np.concatenate(labels).astype(np.int64)  # (N, 5): category, elevation, azimuth, lighting, instance
        if features.size == 0 or features.min() < 0:
            raise DataError(f"{self.path}: no images or a negative label (expected SmallNORB's labels)")
        sizes = tuple(int(s) for s in features[:, :4].max(axis=0) + 1)
        flat = np.ravel_multi_index(tuple(features[:, :4].T), sizes)
        counts = np.bincount(flat, minlength=int(np.prod(sizes)))
        if counts.min() == 0 or counts.min() != counts.max():
            raise DataError(
                f"{self.path}: labels are not a complete grid: {int((counts > 0).sum())} of {int(np.prod(sizes))} "
                f"combinations ({'x'.join(map(str, sizes))}) present, {counts.min()}-{counts.max()} instances each; "
                "expected every combination with the same number of instances"
            )
        order = np.lexsort((features[:, 4], flat))  # by grid point, then instance
        self._instance_rows = order.reshape(len(counts), counts[0]).astype(np.int32)  # (grid, instances)
        self._factor_sizes = sizes

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._factor_sizes

    @property
    def num_channels(self) -> int:
        return 1

    @property
    def num_instances(self) -> int:
        """Instances per factor combination (the nuisance; 10 in the official files)."""
        return self._instance_rows.shape[1]

    def rows_from_factors(self, factors: np.ndarray, instances: np.ndarray) -> np.ndarray:
        """Row (over both chunks, training first) of each factor vector's ``instances``-th instance
        (int ``(n,)``, in ``[0, num_instances)``, ordered by instance label): int64 ``(n,)``."""
        return self._instance_rows[self.flat_index(factors), np.asarray(instances)].astype(np.int64)

    def raw_images(self, rows: np.ndarray) -> np.ndarray:
        """The left 96x96 images of ``rows``: uint8 ``(n, 96, 96)``."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), 96, 96), dtype=np.uint8)
        for chunk, reader in enumerate(self._readers):
            mine = (rows >= self._chunk_start[chunk]) & (rows < self._chunk_start[chunk + 1])
            if mine.any():
                out[mine] = reader.read(rows[mine] - self._chunk_start[chunk])
        return out

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The images of ``factors`` (int ``(n, 4)``), a random instance each: float32 ``(n, 1, 64, 64)``
        in [0, 1], resized from 96x96 (Lanczos)."""
        from PIL import Image

        factors = np.asarray(factors)
        if rng is not None:
            instances = rng.integers(0, self.num_instances, size=len(factors))
        else:
            instances = np.array([fixed_nuisance_rng(i).integers(0, self.num_instances)
                                  for i in self.flat_index(factors)], dtype=np.int64)
        raw = self.raw_images(self.rows_from_factors(factors, instances))
        out = np.empty((len(raw), 1, 64, 64), dtype=np.float32)
        for i, image in enumerate(raw):
            out[i, 0] = np.asarray(Image.fromarray(image).resize((64, 64), Image.LANCZOS), dtype=np.float32)
        return out * np.float32(1 / 255)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "files": [str(self.path / f"{chunk}-{kind}.mat") for chunk in CHUNKS for kind in ("dat", "cat", "info")],
            "file_images": {"shape": [int(self._chunk_start[-1]), 2, 96, 96], "dtype": "uint8"},
            "instances": self.num_instances,
            "ram_bytes": int(self._instance_rows.nbytes),
            "image_bytes_read": 96 * 96,
            "layout": "left 96x96 image of each row read in place, resized to 64x64 (Lanczos) per call",
        }
