"""dSprites from its ``.npz`` file, and disentanglement_lib's colour and noisy variants of it.

Source: Matthey, Higgins, Hassabis & Lerchner (2017), "dSprites: Disentanglement testing Sprites
dataset", github.com/deepmind/dsprites-dataset; introduced with the β-VAE (Higgins et al., ICLR
2017). Licence: Apache 2.0. The official file ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
(written with ``np.savez_compressed``) holds ``imgs`` uint8 ``(737280, 64, 64)`` with values 0/1,
``latents_classes`` int64 ``(737280, 6)``, ``latents_values`` float64 ``(737280, 6)`` and a pickled
``metadata`` dict, which is never read (unpickling a file runs code it chooses; its factor names are the
canonical ones below). Factors (after the constant colour): shape 3, scale 6, orientation 40, posX 32,
posY 32, in row-major order.

Variants (Locatello et al., ICML 2019; disentanglement_lib ``data/ground_truth/dsprites.py``):

- ``color_dsprites`` (:class:`ColorDSprites`): the sprite coloured with a colour drawn per image,
  each RGB channel uniform in [0.5, 1]; background black.
- ``noisy_dsprites`` (:class:`NoisyDSprites`): the white sprite on uniform noise in [0, 1] per
  pixel and channel.

Reading is lazy: the factor classes are streamed to build the grid's lookup table (a few MB), and
images are read from disk only when asked for (:class:`~betasweep.data._files.RowFile`). A stored
``imgs`` member (``np.savez``) is read in place; a compressed one (the official file) is
stream-decompressed once, at the first image read, into an uncompressed ``.npy`` copy in the cache
folder (``$BETASWEEP_CACHE``, default ``~/.cache/betasweep``; 3.0 GB for the full file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from betasweep.data._files import NpzMember, fixed_nuisance_rng, grid_rows, human_bytes, open_zip
from betasweep.data.base import GroundTruthData
from betasweep.errors import DataError

__all__ = ["ColorDSprites", "DSprites", "NoisyDSprites"]

_REQUIRED_KEYS = ("imgs", "latents_classes")
# Factor names of the canonical file's 6 latent columns; the 5-column subsets drop "color".
_CANONICAL_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


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
    Higgins et al. (2017) metric needs; factor sizes are the classes' maxima + 1. Rows may come in
    any order: a lookup table from the grid's row-major index to the file's row (none when the rows
    are in row-major order, as in the official file) makes :meth:`images_from_factors` an index
    lookup. Images are read lazily (see the module docstring); RAM held: the lookup table at most
    (4 bytes per image).

    Args:
        path: the ``.npz`` file.
        cache_dir: where the uncompressed copy of a compressed ``imgs`` goes (default
            ``$BETASWEEP_CACHE`` or ``~/.cache/betasweep``).

    Raises:
        DataError: the file is missing or not an ``.npz``, lacks ``imgs``/``latents_classes``, its
            images are not ``(N, 64, 64)`` of one byte each, ``latents_classes`` is not ``(N, 5 or 6)``,
            its factor classes are not a complete grid, or (at the first image read) the image data
            is cut short. Nothing is written when the file is refused.

    Images are float32 ``(n, 1, 64, 64)`` with values 0. and 1.
    """

    dataset_name = "dsprites"

    def __init__(self, path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.cache_dir = cache_dir
        with open_zip(self.path, "dSprites") as zf:
            files = [name[:-4] for name in zf.namelist() if name.endswith(".npy")]
            missing = [key for key in _REQUIRED_KEYS if key not in files]
            if missing:
                raise DataError(
                    f"{self.path}: missing key(s) {', '.join(missing)} "
                    f"(expected a dSprites .npz with keys {', '.join(_REQUIRED_KEYS)}; found {', '.join(files) or 'none'})"
                )
            imgs = NpzMember(self.path, "imgs", zf)
            classes = NpzMember(self.path, "latents_classes", zf)
        if len(imgs.shape) != 3 or imgs.shape[1:] != (64, 64):
            raise DataError(f"{self.path}: images have shape {imgs.shape[1:]}, expected (64, 64)")
        if imgs.dtype.itemsize != 1 or imgs.dtype.kind not in "uib":
            raise DataError(f"{self.path}: imgs has dtype {imgs.dtype}, expected uint8 (values 0/1)")
        if len(classes.shape) != 2 or classes.shape[0] != imgs.shape[0] or classes.dtype.kind not in "ui":
            raise DataError(
                f"{self.path}: latents_classes has shape {classes.shape} ({classes.dtype}), "
                f"expected integers ({imgs.shape[0]}, 5 or 6)"
            )
        num_columns = classes.shape[1]
        if num_columns not in (5, 6):
            raise DataError(f"{self.path}: latents_classes has {num_columns} columns, expected 5 or 6 "
                            f"({', '.join(_CANONICAL_NAMES[1:])}, optionally after color)")
        names = _factor_names_from_metadata(self.path, num_columns)
        drop = 1 if num_columns == 6 else 0  # the canonical file's constant colour column
        low, high, colours = None, None, set()
        for chunk in classes.chunks():  # pass 1: the classes' range (and the colour's constancy)
            if not len(chunk):
                continue
            low = chunk.min(axis=0) if low is None else np.minimum(low, chunk.min(axis=0))
            high = chunk.max(axis=0) if high is None else np.maximum(high, chunk.max(axis=0))
            if drop:
                colours.update(np.unique(chunk[:, 0]).tolist())
        if low is None:
            raise DataError(f"{self.path}: no images (expected a complete dSprites factor grid)")
        if len(colours) > 1:
            raise DataError(f"{self.path}: the colour column (latent 0) is not constant")
        if low[drop:].min() < 0:
            raise DataError(f"{self.path}: negative factor class found")
        names = names[drop:]
        sizes = tuple(int(s) for s in high[drop:] + 1)
        # pass 2: each row's grid index, a chunk at a time; a table only if rows are out of order
        flats = (np.ravel_multi_index(tuple(chunk[:, drop:].T), sizes) for chunk in classes.chunks())
        self._row_of_flat = grid_rows(flats, sizes, classes.shape[0], self.path)
        self._factor_sizes = sizes
        self._factor_names = names
        self._imgs_member = imgs
        self._rows = None  # RowFile of imgs, opened at the first image read

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
        flat = self.flat_index(factors)
        return flat if self._row_of_flat is None else self._row_of_flat[flat].astype(np.int64)

    def binary_images(self, factors: np.ndarray) -> np.ndarray:
        """The file's images of ``factors`` (int ``(n, 5)``): uint8 ``(n, 64, 64)``, values 0/1."""
        if self._rows is None:
            self._rows = self._imgs_member.row_file(self.cache_dir)
        return self._rows.read(self.rows_from_factors(factors))

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Look up the images of ``factors`` (int ``(n, 5)``): float32 ``(n, 1, 64, 64)`` in {0, 1}.

        Deterministic: ``rng`` is never drawn from.
        """
        return self.binary_images(factors)[:, None].astype(np.float32)

    def describe(self) -> dict:
        """What the file holds and what reading it costs (``betasweep data check``)."""
        member = self._imgs_member
        out = {
            **super().describe(),
            "files": [str(self.path)],
            "file_images": {"shape": list(member.shape), "dtype": str(member.dtype)},
            "ram_bytes": 0 if self._row_of_flat is None else int(self._row_of_flat.nbytes),
            "image_bytes_read": int(np.prod(member.shape[1:])) * member.dtype.itemsize,
        }
        if member.compressed:
            cached = member.cache_path(self.cache_dir)
            present = cached.is_file() and cached.stat().st_size == member.info.file_size
            out["disk_cache"] = {"path": str(cached), "bytes": int(member.info.file_size), "present": present}
            out["layout"] = (f"imgs is compressed: decompressed once into an uncompressed copy "
                             f"({human_bytes(member.info.file_size)}{', present' if present else ', written at the first image read'})"
                             f", then read per image")
        else:
            out["layout"] = "imgs is stored uncompressed: images are read in place, per image"
        return out


class ColorDSprites(DSprites):
    """dSprites with the sprite coloured: each image's colour drawn anew, every RGB channel uniform in
    [0.5, 1]; background black (disentanglement_lib ``ColorDSprites``; Locatello et al. 2019).

    Same file, factors and errors as :class:`DSprites`. Images are float32 ``(n, 3, 64, 64)`` in
    [0, 1]. :meth:`images_from_factors` draws the colours from ``rng`` (one ``uniform(0.5, 1,
    (n, 1, 1, 3))`` call, as dlib); with ``rng=None`` each image's colour is a fixed function of
    its grid point (:func:`~betasweep.data._files.fixed_nuisance_rng`), so a grid point always
    renders the same image (the metric panel encodes each grid point once).
    """

    dataset_name = "color_dsprites"

    @property
    def num_channels(self) -> int:
        return 3

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """float32 ``(n, 3, 64, 64)``: the sprite times a colour in [0.5, 1]^3 drawn per image."""
        binary = self.binary_images(factors).astype(np.float32)  # (n, 64, 64)
        if rng is not None:
            colour = rng.uniform(0.5, 1, (len(binary), 1, 1, 3))
        else:
            colour = np.stack([fixed_nuisance_rng(i).uniform(0.5, 1, (1, 1, 3)) for i in self.flat_index(factors)])
        colour = colour.astype(np.float32).transpose(0, 3, 1, 2)  # (n, 3, 1, 1)
        return binary[:, None] * colour


class NoisyDSprites(DSprites):
    """dSprites on noise: the white sprite over background pixels uniform in [0, 1] per pixel and
    channel, drawn anew for each image (disentanglement_lib ``NoisyDSprites``: ``min(x + noise, 1)``;
    Locatello et al. 2019).

    Same file, factors and errors as :class:`DSprites`. Images are float32 ``(n, 3, 64, 64)`` in
    [0, 1]. :meth:`images_from_factors` draws the noise from ``rng`` (one ``uniform(0, 1, (n, 64, 64,
    3))`` call, as dlib); with ``rng=None`` an image's noise is a fixed function of its grid point,
    as in :class:`ColorDSprites`.
    """

    dataset_name = "noisy_dsprites"

    @property
    def num_channels(self) -> int:
        return 3

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """float32 ``(n, 3, 64, 64)``: ``min(sprite + U(0, 1) noise, 1)``."""
        binary = self.binary_images(factors).astype(np.float32)  # (n, 64, 64)
        if rng is not None:
            noise = rng.uniform(0, 1, (len(binary), 64, 64, 3))
        else:
            noise = np.stack([fixed_nuisance_rng(i).uniform(0, 1, (64, 64, 3)) for i in self.flat_index(factors)])
        noise = noise.astype(np.float32).transpose(0, 3, 1, 2)  # (n, 3, 64, 64)
        return np.minimum(binary[:, None] + noise, 1.0)


def _factor_names_from_metadata(path: Path, num_columns: int) -> tuple[str, ...]:
    """dSprites' canonical factor names for ``num_columns`` latent columns.

    The official file's ``metadata`` member is a pickled dict (its ``latents_names`` are these very
    names). Unpickling runs code a crafted file chooses, so it is never read: a data file is data.
    """
    del path  # kept in the signature: the names depend on the column count only
    return _CANONICAL_NAMES if num_columns == 6 else _CANONICAL_NAMES[1:]
