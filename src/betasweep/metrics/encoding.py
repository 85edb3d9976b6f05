"""One shared encoding of a dataset's images, for every metric of one call.

The metrics of the panel (Higgins, FactorVAE, MIG, SAP, DCI) all need the representation of images
drawn from the data; disentanglement_lib re-renders and re-encodes every draw (about 2.9 million
images for the panel at its defaults). The representation is deterministic, so an image needs
encoding once: an :class:`Encoding` holds the codes of the images encoded so far and is shared by
the metrics of one call (see :func:`betasweep.metrics.panel.panel_scores`).

- :class:`GridEncoding`: ground-truth data (dSprites, shapes). Codes are cached by the image's
  flat index in the factor grid (:meth:`GroundTruthData.flat_index`); :meth:`GridEncoding.codes`
  encodes the indices not seen yet, each distinct image once, in chunks of ``encode_batch_size``.
  :meth:`GridEncoding.encode_all` encodes the whole grid (46,080 images for dSprites), after which
  every metric reads the same codes whatever else ran before it.
- :class:`LabelledEncoding`: a finite labelled image set (CelebA's val partition): every image
  encoded once, its attributes as discrete factors with values 0/1.

A metric takes an :class:`Encoding` wherever it takes a representation function
(:func:`encoding_of` turns one into the other).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from betasweep.data.base import GroundTruthData

__all__ = [
    "Encoding",
    "FreshEncoding",
    "GridEncoding",
    "LabelledEncoding",
    "WHOLE_GRID_MAX",
    "RepresentationFn",
    "check_counts",
    "encode_images",
    "encoding_of",
    "held_out",
]

RepresentationFn = Callable[[np.ndarray], np.ndarray]
"""``(n, C, H, W) float32 → (n, latent_dim)``: deterministic, e.g. the encoder mean. The one definition
every metric imports."""

WHOLE_GRID_MAX = 131_072
"""Grids up to this many images are encoded whole by :func:`betasweep.metrics.panel.panel_scores`
(dSprites: 46,080, which the Higgins score at its defaults draws all of anyway)."""


def held_out(data):
    """The data a model is scored on: ground-truth simulators and grids themselves (as in
    disentanglement_lib), CelebA's val partition."""
    return data if isinstance(data, GroundTruthData) else data.with_partition("val")


def check_counts(**counts: int) -> None:
    """Raise ValueError naming every count that is < 1 (e.g. ``num_train=0``)."""
    bad = {name: value for name, value in counts.items() if not (isinstance(value, (int, np.integer)) and value >= 1)}
    if bad:
        listed = ", ".join(f"{name}={value!r}" for name, value in bad.items())
        raise ValueError(f"{listed}: expected integers >= 1")


def _as_codes(codes, n: int) -> np.ndarray:
    """``representation_fn``'s output as float64 ``(n, d)``, or ValueError naming the shape."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) != n:
        raise ValueError(f"the representation function must return an (n={n}, d) array, got shape {codes.shape}")
    return codes


def encode_images(
    representation_fn: RepresentationFn,
    images: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    num_images: int,
    *,
    batch_size: int = 512,
) -> np.ndarray:
    """Encode every image once, in batches.

    Args:
        representation_fn: ``(n, C, H, W) float32 → (n, d)``, deterministic (the encoder mean).
        images: an array ``(num_images, C, H, W)`` float32 in [0, 1], or a function of int indices
            returning such a batch (e.g. :meth:`betasweep.data.celeba.CelebA.images`).
        num_images: how many images there are.
        batch_size: images per call of ``representation_fn``.

    Returns:
        float64 ``(num_images, d)``.
    """
    fetch = images if callable(images) else (lambda index: np.asarray(images[index], dtype=np.float32))
    chunks = [
        np.asarray(representation_fn(fetch(np.arange(start, min(start + batch_size, num_images)))), dtype=np.float64)
        for start in range(0, num_images, batch_size)
    ]
    return np.concatenate(chunks)


class Encoding:
    """Codes of a dataset's images and the factors behind them (the interface the metrics use).

    Attributes:
        factor_sizes: number of values of each discrete factor (CelebA: 2 per attribute).
        factor_names: the factors' names.
    """

    factor_sizes: tuple[int, ...]
    factor_names: tuple[str, ...]

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def observations(self, num_train: int, num_eval: int, rng: np.random.Generator):
        """Points for the observational metrics (MIG, SAP, DCI): codes and their factors.

        Returns:
            ``(codes_train, factors_train, codes_eval, factors_eval)``: float64 ``(num_train, d)``,
            int64 ``(num_train, num_factors)``, and the same with ``num_eval`` rows (``num_eval``
            may be 0).
        """
        raise NotImplementedError


class GridEncoding(Encoding):
    """Codes of ground-truth data's images, cached by flat grid index, each image encoded once.

    Args:
        data: ground-truth data whose images are a deterministic function of the factors.
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic (the encoder mean).
        encode_batch_size: images per call of ``representation_fn``.

    The cache is a dense float64 table ``(data.num_images, d)`` (dSprites, d = 10: 3.7 MB).
    """

    def __init__(self, data: GroundTruthData, representation_fn: RepresentationFn, *, encode_batch_size: int = 2048):
        if not isinstance(data, GroundTruthData):
            raise ValueError(f"a GridEncoding needs ground-truth data, got {type(data).__name__}")
        check_counts(encode_batch_size=encode_batch_size)
        self.data = data
        self.representation_fn = representation_fn
        self.encode_batch_size = encode_batch_size
        self.factor_sizes = tuple(data.factor_sizes)
        self.factor_names = tuple(data.factor_names)
        self._table: np.ndarray | None = None  # float64 (num_images, d) once the first image is encoded
        self._known = np.zeros(data.num_images, dtype=bool)

    @classmethod
    def from_codes(cls, data: GroundTruthData, codes: np.ndarray) -> "GridEncoding":
        """An encoding given the code of every grid image: ``codes`` float ``(data.num_images, d)``,
        row ``i`` for the image of flat index ``i`` (e.g. the factor values themselves, a control)."""
        encoding = cls(data, _no_encoder)
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or len(codes) != data.num_images:
            raise ValueError(f"codes must be ({data.num_images}, d), one row per grid image, got shape {codes.shape}")
        encoding._table = codes.copy()
        encoding._known[:] = True
        return encoding

    @property
    def num_dims(self) -> int:
        """``d``, dimensions of the codes (known once an image is encoded)."""
        if self._table is None:
            raise ValueError("no image encoded yet")
        return self._table.shape[1]

    @property
    def num_encoded(self) -> int:
        """Distinct images encoded so far."""
        return int(self._known.sum())

    def encode_all(self) -> "GridEncoding":
        """Encode every grid image not encoded yet; returns ``self``."""
        self.codes(np.arange(self.data.num_images))
        return self

    def codes(self, flat: np.ndarray) -> np.ndarray:
        """Codes of the images of flat grid indices ``flat`` (int, any shape): float64 ``(*flat.shape, d)``.

        Encodes the distinct indices not seen before, in ascending order, ``encode_batch_size`` at a
        time (``np.array_split`` into equal chunks, as :func:`~betasweep.metrics.beta_vae_score` always has).
        """
        flat = np.asarray(flat, dtype=np.int64)
        self._encode(np.unique(flat))
        if self._table is None:  # nothing asked for and nothing encoded yet: d is unknown
            self._encode(np.arange(1))
        return self._table[flat]

    def codes_of_factors(self, factors: np.ndarray) -> np.ndarray:
        """Codes of factor vectors ``factors`` int ``(..., num_factors)``: float64 ``(..., d)``."""
        factors = np.asarray(factors)
        flat = self.data.flat_index(factors.reshape(-1, self.num_factors))
        return self.codes(flat).reshape(*factors.shape[:-1], self.num_dims)

    def _encode(self, unique: np.ndarray) -> None:
        missing = unique[~self._known[unique]]
        if len(missing) == 0:
            return
        for chunk in np.array_split(missing, -(-len(missing) // self.encode_batch_size)):
            images = self.data.images_from_factors(self.data.factors_from_flat_index(chunk))
            codes = _as_codes(self.representation_fn(images), len(chunk))
            if self._table is None:
                self._table = np.full((self.data.num_images, codes.shape[1]), np.nan)
            elif codes.shape[1] != self._table.shape[1]:
                raise ValueError(f"the representation function returned {codes.shape[1]} dimensions, "
                                 f"earlier {self._table.shape[1]}")
            self._table[chunk] = codes
            self._known[chunk] = True

    def observations(self, num_train: int, num_eval: int, rng: np.random.Generator):
        """Independent draws of the factors (uniform, as disentanglement_lib's ``generate_batch_factor_code``):
        ``num_train`` points, then ``num_eval`` more, and their codes."""
        factors_train = self.data.sample_factors(num_train, rng)
        factors_eval = self.data.sample_factors(num_eval, rng)
        return self.codes_of_factors(factors_train), factors_train, self.codes_of_factors(factors_eval), factors_eval


def _no_encoder(images):
    raise RuntimeError("this encoding was built from codes; it has no representation function")


class LabelledEncoding(Encoding):
    """A finite labelled image set encoded once (CelebA's val partition): codes and attributes.

    Args:
        codes: float ``(N, d)``, row ``i`` for image ``i``.
        attributes: bool or int ``(N, A)``, the labels of image ``i``; used as ``A`` discrete factors
            with values 0/1.
        attribute_names: names of the ``A`` columns (default ``attr0 ..``).
    """

    def __init__(self, codes: np.ndarray, attributes: np.ndarray, attribute_names: tuple[str, ...] | None = None):
        attributes = np.asarray(attributes)
        if attributes.ndim != 2 or len(attributes) < 2:
            raise ValueError(f"attributes must be an (N >= 2, A) array, got shape {attributes.shape}")
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or len(codes) != len(attributes):
            raise ValueError(f"codes must be (N={len(attributes)}, d), got shape {codes.shape}")
        self.codes = codes
        self.attributes = attributes.astype(np.int64)
        self.factor_sizes = (2,) * attributes.shape[1]
        self.factor_names = (tuple(attribute_names) if attribute_names
                             else tuple(f"attr{i}" for i in range(attributes.shape[1])))

    @property
    def num_dims(self) -> int:
        """``d``, dimensions of the codes."""
        return self.codes.shape[1]

    @classmethod
    def of_images(cls, data, representation_fn: RepresentationFn, *,
                  encode_batch_size: int = 512) -> "LabelledEncoding":
        """Encode every image of ``data`` (an object with ``attributes``, ``images(indices)`` and
        ``len``, e.g. a :class:`~betasweep.data.celeba.CelebA` partition) once."""
        check_counts(encode_batch_size=encode_batch_size)
        codes = encode_images(representation_fn, data.images, len(data), batch_size=encode_batch_size)
        return cls(codes, data.attributes, getattr(data, "attribute_names", None))

    def observations(self, num_train: int, num_eval: int, rng: np.random.Generator):
        """Disjoint train and eval images of the set, in a random order.

        With ``N >= num_train + num_eval`` images: the first ``num_train`` of a random permutation,
        then the next ``num_eval``. With fewer (CelebA's sample has 780 val images), every image
        is used once, split in the ratio ``num_train : num_eval`` (at least one image each side when
        ``num_eval >= 1``): drawing with replacement as on a grid would put the same image on both sides.
        """
        n = len(self.codes)
        order = rng.permutation(n)
        if n >= num_train + num_eval:
            train, held = order[:num_train], order[num_train:num_train + num_eval]
        else:
            n_train = n if num_eval == 0 else min(n - 1, max(1, round(n * num_train / (num_train + num_eval))))
            train, held = order[:n_train], order[n_train:]
        return self.codes[train], self.attributes[train], self.codes[held], self.attributes[held]


class FreshEncoding(GridEncoding):
    """Codes of ground-truth images drawn anew at every request, each with a fresh nuisance: no cache.

    disentanglement_lib draws a new nuisance for every sample (``color_dsprites``' colour,
    ``noisy_dsprites``' background noise, ``smallnorb``'s instance: ``sample_observations_from_factors``
    with the metric's random state); :class:`GridEncoding` caches one code per grid point, whose image
    carries one fixed nuisance. This encoding calls ``data.images_from_factors(factors, rng)`` for every
    factor vector asked for (repeats included), so a metric sees dlib's distribution, at the cost of
    encoding every image it draws (the Higgins score draws 2 · 64 per point).

    Args:
        data: ground-truth data whose ``images_from_factors`` takes an ``rng`` for its nuisance.
        representation_fn: ``(n, C, 64, 64) float32 → (n, d)``, deterministic.
        rng: the nuisance draws' randomness.
        encode_batch_size: images per call of ``representation_fn``.
    """

    def __init__(self, data: GroundTruthData, representation_fn: RepresentationFn, rng: np.random.Generator, *,
                 encode_batch_size: int = 2048):
        super().__init__(data, representation_fn, encode_batch_size=encode_batch_size)
        self.rng = rng
        self.images_encoded = 0
        self._dims: int | None = None

    @property
    def num_dims(self) -> int:
        if self._dims is None:
            raise ValueError("no image encoded yet")
        return self._dims

    def encode_all(self) -> "FreshEncoding":
        """Nothing to cache: every request draws its images."""
        return self

    def codes(self, flat: np.ndarray) -> np.ndarray:
        flat = np.asarray(flat, dtype=np.int64)
        return self.codes_of_factors(self.data.factors_from_flat_index(flat.reshape(-1))).reshape(*flat.shape, -1)

    def codes_of_factors(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors)
        rows = factors.reshape(-1, self.num_factors)
        out = []
        for start in range(0, len(rows), self.encode_batch_size):
            chunk = rows[start:start + self.encode_batch_size]
            out.append(_as_codes(self.representation_fn(self.data.images_from_factors(chunk, self.rng)), len(chunk)))
        self.images_encoded += len(rows)
        codes = np.concatenate(out) if out else np.zeros((0, self._dims or 0))
        self._dims = codes.shape[1]
        return codes.reshape(*factors.shape[:-1], self._dims)


def encoding_of(data, representation, *, encode_batch_size: int | None = None) -> Encoding:
    """The :class:`Encoding` a metric reads: ``representation`` itself when it is one, else a new one.

    Args:
        data: ground-truth data (a :class:`GridEncoding`, nothing encoded yet) or a labelled image
            set such as a CelebA partition (a :class:`LabelledEncoding`: every image encoded now).
        representation: a representation function ``(n, C, H, W) float32 → (n, d)`` or an Encoding.
        encode_batch_size: images per call of the representation function (default 2048 on a
            grid, 512 on an image set).

    Raises:
        ValueError: an Encoding of other data, or data of an unknown kind.
    """
    if isinstance(representation, Encoding):
        if isinstance(representation, GridEncoding) and data is not None and representation.data is not data:
            raise ValueError("the encoding was built for other data than the data passed")
        return representation
    if not callable(representation):
        raise ValueError(f"expected a representation function or an Encoding, got {type(representation).__name__}")
    if isinstance(data, GroundTruthData):
        return GridEncoding(data, representation, encode_batch_size=encode_batch_size or 2048)
    if hasattr(data, "attributes") and hasattr(data, "images"):
        return LabelledEncoding.of_images(data, representation, encode_batch_size=encode_batch_size or 512)
    raise ValueError(f"expected ground-truth data or a labelled image set (e.g. CelebA), got {type(data).__name__}")
