"""Datasets: the ground-truth interface, real dSprites, the procedural shapes simulator, CelebA."""

from __future__ import annotations

import os

from betasweep.data.base import GroundTruthData, WithoutPoints
from betasweep.data.celeba import CelebA, CelebALabels, read_labels
from betasweep.data.dsprites import DSprites
from betasweep.data.shapes import Shapes
from betasweep.errors import ConfigError

__all__ = ["DATASETS", "CelebA", "CelebALabels", "DSprites", "GroundTruthData", "Shapes", "WithoutPoints", "load_dataset", "read_labels"]

DATASETS = ("shapes", "dsprites", "celeba")
"""Names accepted by :func:`load_dataset`; ``shapes`` is the embedded default (needs no file)."""


def load_dataset(name: str, path: str | os.PathLike | None = None, *, subsample=None) -> GroundTruthData | CelebA:
    """Build a dataset by name.

    Args:
        name: one of :data:`DATASETS`.
        path: the data file (``dsprites``: the .npz) or folder (``celeba``: the standard layout,
            training partition served); refused for ``shapes``.
        subsample: ``shapes`` only: keep every k-th value of each factor (see :class:`Shapes`).

    Raises:
        ConfigError: unknown name, or a path or option missing/given where it does not belong.
        DataError: the file cannot be read (see :class:`DSprites`).
    """
    if name == "shapes":
        if path is not None:
            raise ConfigError("dataset 'shapes' is procedural and takes no data path")
        return Shapes(subsample=subsample)
    if subsample is not None:
        raise ConfigError(f"dataset {name!r} takes no subsample option")
    if name == "dsprites":
        if path is None:
            raise ConfigError("dataset 'dsprites' needs a data path (the dSprites .npz file)")
        return DSprites(path)
    if name == "celeba":
        if path is None:
            raise ConfigError("dataset 'celeba' needs a data path (the CelebA folder with img_align_celeba/)")
        return CelebA(path, "train")
    raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
