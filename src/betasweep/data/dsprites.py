"""Real dSprites from its ``.npz`` file (Matthey et al. 2017, github.com/deepmind/dsprites-dataset)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.errors import DataError

__all__ = ["DSprites"]

_REQUIRED_KEYS = ("imgs", "latents_classes")
# Factor names of the canonical file's 6 latent columns; the 5-column subsets drop "color".
_CANONICAL_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")


class DSprites(GroundTruthData):
    """The real dSprites images, indexed by their factor classes.

    Reads either file layout:

    * the canonical DeepMind file (``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``): 6 latent
      columns ``color, shape, scale, orientation, posX, posY`` with sizes ``1x3x6x40x32x32``
      (737,280 images). The constant colour column is dropped, as disentanglement_lib does, so
      ``factor_sizes == (3, 6, 40, 32, 32)``;
    * 5-column subsets without colour, such as ``dsprites_downsampled.npz`` (``3x6x10x16x16``,
      46,080 images).

    The rows must form a *complete* factor grid (every combination exactly once), which the
    Higgins et al. (2017) metric needs. Rows may come in any order: a lookup table from the grid's
    row-major index to the file's row makes :meth:`images_from_factors` an index lookup.

    Args:
        path: the ``.npz`` file.

    Raises:
        DataError: the file is missing or not an ``.npz``, lacks ``imgs``/``latents_classes``, its
            images are not 64x64, or its factor classes are not a complete grid.

    Images are float32 ``(n, 1, 64, 64)`` with values 0. and 1.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"dSprites file not found: {self.path} (expected an .npz file)")
        if not zipfile.is_zipfile(self.path):
            raise DataError(f"{self.path}: not a readable .npz file (expected a zip archive of .npy arrays)")
        try:
            with np.load(self.path, allow_pickle=True, encoding="latin1") as npz:
                missing = [key for key in _REQUIRED_KEYS if key not in npz.files]
                if missing:
                    raise DataError(
                        f"{self.path}: missing key(s) {', '.join(missing)} "
                        f"(expected a dSprites .npz with keys {', '.join(_REQUIRED_KEYS)}; found {', '.join(npz.files)})"
                    )
                imgs = npz["imgs"]
                classes = np.asarray(npz["latents_classes"], dtype=np.int64)
                names = _factor_names_from_metadata(npz, classes.shape[1] if classes.ndim == 2 else 0)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            if isinstance(error, DataError):
                raise
            raise DataError(f"{self.path}: not a readable .npz file ({error})") from None

        if imgs.ndim != 3 or imgs.shape[1:] != (64, 64):
            raise DataError(f"{self.path}: images have shape {imgs.shape[1:]}, expected (64, 64)")
        if classes.ndim != 2 or classes.shape[0] != imgs.shape[0]:
            raise DataError(
                f"{self.path}: latents_classes has shape {classes.shape}, expected ({imgs.shape[0]}, 5 or 6)"
            )
        if classes.shape[1] == 6:
            if np.any(classes[:, 0] != classes[0, 0]):
                raise DataError(f"{self.path}: the colour column (latent 0) is not constant")
            classes, names = classes[:, 1:], names[1:]
        elif classes.shape[1] != 5:
            raise DataError(f"{self.path}: latents_classes has {classes.shape[1]} columns, expected 5 or 6")

        if classes.min() < 0:
            raise DataError(f"{self.path}: negative factor class found")
        sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
        num_grid = int(np.prod(sizes))
        flat = np.ravel_multi_index(tuple(classes.T), sizes)
        row_of_flat = np.full(num_grid, -1, dtype=np.int64)
        row_of_flat[flat] = np.arange(len(flat))
        if len(flat) != num_grid or np.any(row_of_flat < 0):
            present = np.unique(flat).size
            raise DataError(
                f"{self.path}: factor classes are not a complete grid: {present} distinct of "
                f"{num_grid} combinations ({'x'.join(map(str, sizes))}) over {len(flat)} rows; "
                "expected every combination exactly once"
            )

        self._imgs = imgs  # uint8 (N, 64, 64), values 0/1
        self._row_of_flat = row_of_flat
        self._factor_sizes = sizes
        self._factor_names = names

    @property
    def factor_names(self) -> tuple[str, ...]:
        return self._factor_names

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._factor_sizes

    @property
    def num_channels(self) -> int:
        return 1

    def rows_from_factors(self, factors: np.ndarray) -> np.ndarray:
        """Row of the file holding each factor vector: int64 ``(n,)``."""
        return self._row_of_flat[self.flat_index(factors)]

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Look up the images of ``factors`` (int ``(n, 5)``): float32 ``(n, 1, 64, 64)`` in {0, 1}."""
        rows = self.rows_from_factors(factors)
        return self._imgs[rows][:, None].astype(np.float32)


def _factor_names_from_metadata(npz, num_columns: int) -> tuple[str, ...]:
    """Factor names from the file's metadata when present, else dSprites' canonical names."""
    default = _CANONICAL_NAMES if num_columns == 6 else _CANONICAL_NAMES[1:]
    if "metadata" not in npz.files:
        return default
    try:
        names = tuple(npz["metadata"][()]["latents_names"])
    except (KeyError, TypeError, IndexError, ValueError):
        return default
    return names if len(names) == num_columns else default
