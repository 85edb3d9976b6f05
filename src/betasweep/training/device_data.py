"""Ground-truth data resident on the training device: the whole factor grid as uint8, batches gathered there.

On a GPU the host path (render or look up a batch with numpy, then copy ``(b, C, 64, 64)`` float32
to the device) costs a host-to-device copy of every image of every step; here the images are copied
once and a step sends only the batch's flat indices (``b`` int64). The factors are drawn with the
run's numpy rng exactly as the host path draws them (``data.sample_factors(n, rng)``), so the
batches, and on the CPU the trained weights, are the same as the host path's.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from betasweep.errors import DataError

__all__ = ["DeviceImages"]

BUILD_CHUNK = 4096  # images rendered at a time while building the grid


class DeviceImages:
    """``data``'s complete factor grid on ``device``, uint8; the sampling interface of ``data``, on tensors.

    Images must be a deterministic function of the factors (every ground-truth dataset here) and
    take values ``k / 255`` (binary images are stored as 0/1): anything else is refused rather than
    silently rounded.

    Args:
        data: ground-truth data (``factor_sizes``, ``sample_factors``, ``flat_index``,
            ``factors_from_flat_index``, ``images_from_factors``), possibly with held-out points.
        device: where the grid lives (``"cuda"``; ``"cpu"`` works too, e.g. to test it).

    Attributes:
        grid: uint8 ``(N, C, 64, 64)`` on ``device``, row ``i`` the image of flat index ``i``.
        scale: 1.0 (binary images) or 1/255.

    Raises:
        DataError: the images are not representable as uint8 exactly.
    """

    def __init__(self, data, device: str | torch.device):
        self.data = data
        self.device = torch.device(device)
        total = math.prod(data.factor_sizes)
        first = data.images_from_factors(data.factors_from_flat_index(np.arange(min(BUILD_CHUNK, total))))
        binary = bool(np.isin(first, (0.0, 1.0)).all())
        self.scale = 1.0 if binary else 1.0 / 255.0
        self.grid = torch.empty((total, *first.shape[1:]), dtype=torch.uint8, device=self.device)
        for start in range(0, total, BUILD_CHUNK):
            index = np.arange(start, min(start + BUILD_CHUNK, total))
            images = first if start == 0 else data.images_from_factors(data.factors_from_flat_index(index))
            quantised = np.rint(images / np.float32(self.scale)).astype(np.uint8)
            if not np.array_equal(quantised.astype(np.float32) * np.float32(self.scale), images):
                raise DataError("data_on_device: the images are not uint8 levels (k/255 or 0/1); "
                                "train with data_on_device=False")
            self.grid[start:start + len(index)] = torch.from_numpy(quantised).to(self.device)

    def __getattr__(self, name):  # factor_names, factor_sizes, num_channels, ... of the wrapped data
        return getattr(self.__dict__["data"], name) if "data" in self.__dict__ else super().__getattribute__(name)

    def images_of(self, factors: np.ndarray) -> torch.Tensor:
        """float32 ``(n, C, 64, 64)`` on the device: the images of ``factors`` (int ``(n, num_factors)``)."""
        index = torch.from_numpy(np.asarray(self.data.flat_index(factors), dtype=np.int64)).to(self.device)
        images = self.grid.index_select(0, index).float()
        return images if self.scale == 1.0 else images.mul_(self.scale)

    def sample_observations(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """As ``data.sample_observations(n, rng)`` (same rng draws, same images), as a device tensor."""
        return self.images_of(self.data.sample_factors(n, rng))

    def sample_labelled(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
        """As ``data.sample_labelled(n, rng)``: device images and the host factors ``(n, num_factors)``."""
        factors = self.data.sample_factors(n, rng)
        return self.images_of(factors), factors
