"""The ground-truth data interface (after disentanglement_lib's ``GroundTruthData``)."""

from __future__ import annotations

import abc

import numpy as np

__all__ = ["GroundTruthData", "WithoutPoints"]


class GroundTruthData(abc.ABC):
    """A dataset whose images are a deterministic function of discrete generative factors.

    Factor ``i`` takes integer values ``0 .. factor_sizes[i] - 1``. Images are ``float32`` arrays of
    shape ``(n, num_channels, 64, 64)`` with values in ``[0, 1]``.

    Subclasses implement :attr:`factor_names`, :attr:`factor_sizes`, :attr:`num_channels` and
    :meth:`images_from_factors`; sampling is shared.
    """

    image_size: int = 64

    @property
    @abc.abstractmethod
    def factor_names(self) -> tuple[str, ...]:
        """Names of the factors, in column order."""

    @property
    @abc.abstractmethod
    def factor_sizes(self) -> tuple[int, ...]:
        """Number of values of each factor, e.g. dSprites ``(3, 6, 40, 32, 32)``."""

    @property
    @abc.abstractmethod
    def num_channels(self) -> int:
        """Image channels: 1 (binary or grey) or 3 (RGB)."""

    @abc.abstractmethod
    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Render the images of the given factor vectors.

        Args:
            factors: int array ``(n, num_factors)``, column ``i`` in ``[0, factor_sizes[i])``.
            rng: randomness for datasets with nuisance variation. Deterministic datasets (dSprites,
                shapes, 3dshapes, MPI3D, Cars3D) ignore it and never draw from it (so the metric's
                rng sequence does not depend on the data). Datasets with a nuisance draw it from
                ``rng`` per image, as disentanglement_lib does: ``color_dsprites`` (the colour),
                ``noisy_dsprites`` (the background noise), ``smallnorb`` (the object instance); with
                ``rng=None`` their nuisance is a fixed function of the image's grid point, so a grid
                point always gives the same image (what the metric panel's cache of codes needs).

        Returns:
            float32 array ``(n, num_channels, 64, 64)`` in ``[0, 1]``.
        """

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def describe(self) -> dict:
        """What the data is, as ``betasweep data check`` prints it: ``dataset``, ``factors`` (name →
        size), ``grid_images`` (``prod(factor_sizes)``), ``channels``, ``image_shape`` (C, H, W) and
        ``float32_bytes_per_image`` (one rendered image); file-backed datasets add their files,
        the RAM they hold (``ram_bytes``), the bytes read per image and any disk cache."""
        return {
            "dataset": getattr(self, "dataset_name", type(self).__name__.lower()),
            "factors": dict(zip(self.factor_names, (int(s) for s in self.factor_sizes))),
            "grid_images": self.num_images,
            "channels": self.num_channels,
            "image_shape": [self.num_channels, self.image_size, self.image_size],
            "float32_bytes_per_image": 4 * self.num_channels * self.image_size * self.image_size,
        }

    @property
    def num_images(self) -> int:
        """Size of the complete factor grid: ``prod(factor_sizes)``."""
        return int(np.prod(self.factor_sizes))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` factor vectors, each factor uniform and independent.

        Returns:
            int64 array ``(n, num_factors)``.
        """
        return np.stack([rng.integers(0, size, size=n) for size in self.factor_sizes], axis=1)

    def sample_observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` training images: float32 ``(n, num_channels, 64, 64)`` in ``[0, 1]``."""
        return self.images_from_factors(self.sample_factors(n, rng), rng)

    def sample_labelled(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_observations` with the factors drawn (the same rng stream): images float32
        ``(n, num_channels, 64, 64)`` and int64 factors ``(n, num_factors)``; labels of a conditional VAE."""
        factors = self.sample_factors(n, rng)
        return self.images_from_factors(factors, rng), factors

    def without(self, factors: np.ndarray) -> "WithoutPoints":
        """This data with the grid points ``factors`` (int ``(n, num_factors)``) never sampled: a
        training split whose held-out images a test can score (see :class:`WithoutPoints`)."""
        return WithoutPoints(self, factors)

    def flat_index(self, factors: np.ndarray) -> np.ndarray:
        """Row-major index of each factor vector in the complete grid: int64 ``(n,)``."""
        return np.ravel_multi_index(tuple(np.asarray(factors).T), self.factor_sizes)

    def factors_from_flat_index(self, index: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`flat_index`: int64 ``(n, num_factors)``."""
        return np.stack(np.unravel_index(np.asarray(index), self.factor_sizes), axis=1).astype(np.int64)


class WithoutPoints(GroundTruthData):
    """``data`` with some grid points held out of sampling: :meth:`sample_factors` redraws any
    factor vector that hits one (so the other points stay uniform); rendering is ``data``'s.

    Args:
        data: the ground-truth data.
        factors: int ``(n, num_factors)``, the held-out points.

    Raises:
        ValueError: ``factors`` has the wrong number of columns or holds every grid point.
    """

    def __init__(self, data: GroundTruthData, factors: np.ndarray):
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != data.num_factors:
            raise ValueError(f"held-out factors must be (n, {data.num_factors}), got shape {factors.shape}")
        self.data = data
        self.held_out = np.unique(data.flat_index(factors))
        if len(self.held_out) >= data.num_images:
            raise ValueError("held-out factors cover the whole grid: nothing left to train on")

    factor_names = property(lambda self: self.data.factor_names)
    factor_sizes = property(lambda self: self.data.factor_sizes)
    num_channels = property(lambda self: self.data.num_channels)

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return self.data.images_from_factors(factors, rng)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        factors = self.data.sample_factors(n, rng)
        while (hit := np.isin(self.data.flat_index(factors), self.held_out)).any():
            factors[hit] = self.data.sample_factors(int(hit.sum()), rng)
        return factors
