"""Datasets: the ground-truth interface, the field's standard ground-truth sets read from their
official files, the procedural shapes simulator, CelebA.

| name | class | file (official name) | factors |
| --- | --- | --- | --- |
| ``shapes`` | :class:`Shapes` | none (procedural) | dSprites' |
| ``dsprites`` | :class:`DSprites` | ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` | 3x6x40x32x32 |
| ``color_dsprites``, ``noisy_dsprites`` | :class:`ColorDSprites`, :class:`NoisyDSprites` | the same | the same |
| ``3dshapes`` | :class:`Shapes3D` | ``3dshapes.h5`` | 10x10x10x8x4x15 |
| ``mpi3d_toy``, ``mpi3d_realistic``, ``mpi3d_real`` | :class:`MPI3D` | ``mpi3d_toy.npz`` etc. | 6x6x2x3x3x40x40 |
| ``smallnorb`` | :class:`SmallNORB` | folder of ``smallnorb-*-{dat,cat,info}.mat`` | 5x9x18x6 |
| ``cars3d`` | :class:`Cars3D` | folder of ``car_NNN_mesh.mat`` | 4x24x183 |
| ``celeba`` | :class:`CelebA` | folder (``img_align_celeba/``, list files) | 40 attributes |

The classes are imported on first use (``from betasweep.data import DSprites`` works as before), so
``import betasweep.data`` (and the command line, which needs :data:`DATASETS`) stays light.
"""

from __future__ import annotations

import importlib
import os

from betasweep.errors import ConfigError

__all__ = [
    "DATASETS", "DATASET_CHANNELS", "Cars3D", "CelebA", "CelebALabels", "ColorDSprites", "DSprites", "GroundTruthData",
    "MPI3D", "NoisyDSprites", "Shapes", "Shapes3D", "SmallNORB", "WithoutPoints", "human_bytes", "load_dataset",
    "read_labels",
]

DATASETS = ("shapes", "dsprites", "color_dsprites", "noisy_dsprites", "3dshapes", "mpi3d_toy", "mpi3d_realistic",
            "mpi3d_real", "smallnorb", "cars3d", "celeba")
"""Names accepted by :func:`load_dataset`; ``shapes`` is the embedded default (needs no file)."""

DATASET_CHANNELS = {name: 1 for name in ("shapes", "dsprites", "smallnorb")} | {
    name: 3 for name in DATASETS if name not in ("shapes", "dsprites", "smallnorb")}
"""Image channels of each dataset, known before its file is read (e.g. for β_norm)."""

_PATH_HINT = {
    "dsprites": "the dSprites .npz file",
    "color_dsprites": "the dSprites .npz file",
    "noisy_dsprites": "the dSprites .npz file",
    "3dshapes": "the 3dshapes.h5 file",
    "mpi3d_toy": "the mpi3d_toy.npz file",
    "mpi3d_realistic": "the mpi3d_realistic.npz file",
    "mpi3d_real": "the mpi3d_real.npz file",
    "smallnorb": "the folder of the smallnorb-*-{dat,cat,info}.mat files",
    "cars3d": "the folder of the Cars3D car_NNN_mesh.mat files",
    "celeba": "the CelebA folder with img_align_celeba/",
}

_EXPORTS = {
    "GroundTruthData": "base", "WithoutPoints": "base",
    "CelebA": "celeba", "CelebALabels": "celeba", "read_labels": "celeba",
    "DSprites": "dsprites", "ColorDSprites": "dsprites", "NoisyDSprites": "dsprites",
    "Shapes": "shapes", "Shapes3D": "shapes3d", "MPI3D": "mpi3d", "SmallNORB": "smallnorb", "Cars3D": "cars3d",
    "human_bytes": "_files",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"betasweep.data.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


def load_dataset(name: str, path: str | os.PathLike | None = None, *, subsample=None):
    """Build a dataset by name.

    Args:
        name: one of :data:`DATASETS`.
        path: the data file or folder (see the table in the module docstring; ``celeba``: the
            standard layout, training partition served); refused for ``shapes``.
        subsample: ``shapes`` only: keep every k-th value of each factor (see :class:`Shapes`).

    Returns:
        a :class:`GroundTruthData` (every name but ``celeba``) or a :class:`CelebA`.

    Raises:
        ConfigError: unknown name, or a path or option missing/given where it does not belong.
        DataError: the file cannot be read or is not in its official layout (one line naming the
            file and what was expected; see each class).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "shapes":
        if path is not None:
            raise ConfigError("dataset 'shapes' is procedural and takes no data path")
        from betasweep.data.shapes import Shapes

        return Shapes(subsample=subsample)
    if subsample is not None:
        raise ConfigError(f"dataset {name!r} takes no subsample option")
    if path is None:
        raise ConfigError(f"dataset {name!r} needs a data path ({_PATH_HINT[name]})")
    if name in ("dsprites", "color_dsprites", "noisy_dsprites"):
        from betasweep.data import dsprites

        return {"dsprites": dsprites.DSprites, "color_dsprites": dsprites.ColorDSprites,
                "noisy_dsprites": dsprites.NoisyDSprites}[name](path)
    if name == "3dshapes":
        from betasweep.data.shapes3d import Shapes3D

        return Shapes3D(path)
    if name.startswith("mpi3d_"):
        from betasweep.data.mpi3d import MPI3D

        return MPI3D(path, variant=name)
    if name == "smallnorb":
        from betasweep.data.smallnorb import SmallNORB

        return SmallNORB(path)
    if name == "cars3d":
        from betasweep.data.cars3d import Cars3D

        return Cars3D(path)
    from betasweep.data.celeba import CelebA

    return CelebA(path, "train")
