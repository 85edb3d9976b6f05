"""A procedural dSprites simulator: the same factors and (nearly) the same pixels, with no data file."""

from __future__ import annotations

import functools

import numpy as np

from betasweep.data.base import GroundTruthData
from betasweep.errors import ConfigError

__all__ = ["Shapes"]

# --- Geometry, fitted to the real dSprites images (dsprites_downsampled.npz, 46,080 images). -----
# Coordinates are pixels: column ``x`` and row ``y`` of a 64x64 image, the centre of pixel
# ``[row, col]`` being the point ``(col, row)``. A pixel is on when its centre lies inside the shape.

# Sprite centre = _CENTRE_OFFSET + _CENTRE_SPAN * pos, for pos = posX (columns) and posY (rows).
# Fitted (grid search) on the column/row extents of the axis-aligned squares (orientation 0): with
# these values 99% of them are reproduced pixel for pixel (the rest differ by one knife-edge row).
# pos 0 -> pixel 15.5, pos 1 -> pixel 47.5: the centre moves over the middle half of the image.
_CENTRE_OFFSET = 15.5
_CENTRE_SPAN = 32.0

# Shape sizes at scale 1.0 (they shrink in proportion to ``scale``), in pixels:
# square half-side, fitted on all squares (mean IoU peaks sharply at 9.6: 0.9997 vs 0.980 at 9.5/9.7);
_SQUARE_HALF_SIDE = 9.6
# ellipse semi-axes along the sprite's own x and y axes (long axis horizontal at orientation 0),
# grid-searched on all ellipses (mean IoU 0.9968 at (12.8, 7.2), 0.9996 at the optimum, 0.005 px steps);
_ELLIPSE_SEMI_AXES = (12.765, 7.215)
# heart outline, right half (x >= 0) from the bottom tip round the right lobe to the top notch; the
# left half is its mirror image (the real hearts are left-right symmetric). y points down, so the tip
# is at the bottom. Obtained by mapping every real heart pixel back into the sprite's own frame
# (undoing position, rotation and scale), taking the 0.5 contour of the per-location on-rate, and
# simplifying it (Douglas-Peucker, 0.04 px). The thin spike at the tip is real.
_HEART_HALF_OUTLINE = (
    (0.00, 9.51),
    (0.07, 9.45),
    (0.42, 8.55),
    (0.83, 7.85),
    (1.92, 6.45),
    (2.96, 5.35),
    (6.68, 1.75),
    (7.49, 0.85),
    (8.38, -0.35),
    (8.89, -1.25),
    (9.27, -2.15),
    (9.49, -2.95),
    (9.59, -3.65),
    (9.60, -4.25),
    (9.48, -5.25),
    (9.27, -5.95),
    (8.78, -6.95),
    (8.25, -7.65),
    (7.45, -8.39),
    (6.65, -8.88),
    (5.85, -9.19),
    (5.35, -9.29),
    (4.05, -9.29),
    (3.55, -9.18),
    (2.95, -8.95),
    (2.15, -8.49),
    (1.53, -7.95),
    (0.82, -7.05),
    (0.31, -6.05),
    (0.05, -5.15),
    (0.00, -5.15),
)
# The heart is tested by lookup in a mask of the polygon sampled on a fine grid (built once):
# _HEART_GRID cells of _HEART_CELL px cover [-_HEART_EXTENT, _HEART_EXTENT]^2 at scale 1.
_HEART_EXTENT = 10.0
_HEART_GRID = 800
_HEART_CELL = 2 * _HEART_EXTENT / _HEART_GRID  # 0.025 px

_IMAGE_SIZE = 64
_CHUNK = 2048  # images rendered at once: bounds the float32 temporaries to ~100 MB


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of the square, in sprite coordinates (pixels at scale 1)."""
    return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF_SIDE


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of the ellipse, long axis along ``u``."""
    a, b = _ELLIPSE_SEMI_AXES
    u = u * (1.0 / a)
    v = v * (1.0 / b)
    return u * u + v * v <= 1.0


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of the heart (tip towards ``+v``), by lookup in the rasterised polygon."""
    mask = _heart_mask()
    rows, cols = mask.shape  # the border cells are empty, so clipping maps everything outside to "off"
    col = np.clip(np.abs(u) * (1.0 / _HEART_CELL), 0, cols - 1).astype(np.intp)
    row = np.clip((v + _HEART_EXTENT) * (1.0 / _HEART_CELL), 0, rows - 1).astype(np.intp)
    row *= cols
    row += col
    return mask.take(row)


@functools.cache
def _heart_mask() -> np.ndarray:
    """The right half (``u >= 0``) of the heart polygon, sampled at cell centres: bool ``(800, 400)``.

    Even-odd rule: a point is inside when the ray from it towards ``+u`` crosses an odd number of
    edges.
    """
    right = np.asarray(_HEART_HALF_OUTLINE)
    polygon = np.concatenate([right, right[-2:0:-1] * (-1.0, 1.0)])  # closed outline, both halves
    (u0, v0), (u1, v1) = polygon.T[:, None, :], np.roll(polygon, -1, axis=0).T[:, None, :]  # edges, (1, E)
    centres = (np.arange(_HEART_GRID) + 0.5) * _HEART_CELL - _HEART_EXTENT
    v = centres[:, None]  # (rows, 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # horizontal edges never span a row
        crossing_u = u0 + (v - v0) * (u1 - u0) / (v1 - v0)  # (rows, E)
    crossing_u[(v0 > v) == (v1 > v)] = -np.inf  # edges that do not span the row
    u = centres[_HEART_GRID // 2 :]  # the right half: u > 0
    crossings = (crossing_u[:, None, :] > u[None, :, None]).sum(axis=2)  # (rows, cols)
    return crossings % 2 == 1


_SHAPE_TESTS = (_square, _ellipse, _heart)


class Shapes(GroundTruthData):
    """Procedural dSprites: a white square, ellipse or heart on black, drawn from its factors.

    The factor grid is that of dSprites (Matthey et al. 2017, "dSprites: Disentanglement testing
    Sprites dataset", https://github.com/deepmind/dsprites-dataset), the dataset on which Higgins et
    al. (2017, "beta-VAE: Learning basic visual concepts with a constrained variational framework")
    introduced their disentanglement metric, without its colour factor:

    ============  ====  ==========================================================
    factor        size  value of class ``i``
    ============  ====  ==========================================================
    shape         3     square, ellipse, heart (dSprites' shape values 1, 2, 3)
    scale         6     ``linspace(0.5, 1, 6)[i]``
    orientation   40    ``linspace(0, 2*pi, 40)[i]`` radians (0 and 2*pi both present)
    posX          32    ``linspace(0, 1, 32)[i]``
    posY          32    ``linspace(0, 1, 32)[i]``
    ============  ====  ==========================================================

    Geometry (pixels; pixel ``[row, col]`` has its centre at ``(x, y) = (col, row)``, rows downwards):

    * the sprite centre is at ``x = 15.5 + 32 * posX`` (posX moves the sprite along the columns) and
      ``y = 15.5 + 32 * posY`` (posY along the rows, downwards);
    * the sprite is turned by ``orientation`` counter-clockwise as the image is displayed (row 0 at
      the top);
    * at scale 1 the square has side 19.2, the ellipse axes 25.53 x 14.43 (long axis horizontal at
      orientation 0), and the heart is 19.2 wide and 18.8 tall with its tip down; every length is
      multiplied by ``scale``;
    * a pixel is 1. when its centre is inside the shape, else 0. (no anti-aliasing).

    These constants were fitted to the real dSprites images of ``dsprites_downsampled.npz`` (a
    complete 46,080-image subgrid: every 4th orientation and every 2nd position). Rendering the factors
    of each of those images reproduces it with mean IoU (of the on-pixels) 0.9997 for squares, 0.9996
    for ellipses and 0.9968 for hearts; 96%, 94% and 67% of them pixel for pixel, the rest differing
    by about one pixel (``tests/data/test_shapes.py`` checks IoU >= 0.90 per shape). The simulator
    reads no file.

    Images are float32 ``(n, 1, 64, 64)`` with values 0. and 1., deterministic: ``rng`` is ignored.

    Args:
        subsample: keep every ``subsample[i]``-th value of factor ``i`` (each must divide its size).
            ``(1, 1, 4, 2, 2)`` gives the grid of ``dsprites_downsampled.npz`` (3x6x10x16x16,
            46,080 images), on which the full Higgins metric encodes 46,080 distinct images instead
            of about 1.1 million; factor class ``i`` then stands for full-grid class
            ``i * subsample``.

    Raises:
        ConfigError: ``subsample`` has the wrong length or a step that does not divide its factor.
    """

    FULL_FACTOR_SIZES = (3, 6, 40, 32, 32)

    def __init__(self, subsample: tuple[int, ...] | list[int] | None = None):
        steps = tuple(int(s) for s in (subsample or (1,) * 5))
        if len(steps) != 5 or any(s < 1 or size % s for s, size in zip(steps, self.FULL_FACTOR_SIZES)):
            raise ConfigError(
                f"subsample must be 5 positive steps dividing the factor sizes {self.FULL_FACTOR_SIZES}, got {list(steps)}"
            )
        self.subsample = steps
        self._factor_sizes = tuple(size // s for size, s in zip(self.FULL_FACTOR_SIZES, steps))

    @property
    def factor_names(self) -> tuple[str, ...]:
        return ("shape", "scale", "orientation", "posX", "posY")

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._factor_sizes

    @property
    def num_channels(self) -> int:
        return 1

    def images_from_factors(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Render the images of the given factor vectors (vectorised, in chunks of 2,048 images).

        Args:
            factors: int array ``(n, 5)``, columns ``shape, scale, orientation, posX, posY``.
            rng: ignored (the images are a deterministic function of the factors).

        Returns:
            float32 array ``(n, 1, 64, 64)`` with values 0. and 1.

        Raises:
            ValueError: ``factors`` is not ``(n, 5)`` integers within :attr:`factor_sizes`.
        """
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes):
            raise ValueError(f"factors must have shape (n, {len(self.factor_sizes)}), got {factors.shape}")
        if factors.size and not np.issubdtype(factors.dtype, np.integer):
            raise ValueError(f"factors must be integers, got dtype {factors.dtype}")
        if len(factors) and ((factors.min(axis=0) < 0).any() or (factors.max(axis=0) >= self.factor_sizes).any()):
            raise ValueError(f"factors out of range: each column i must lie in [0, {self.factor_sizes}[i])")
        factors = factors * np.asarray(self.subsample)  # classes of the full dSprites grid
        images = np.zeros((len(factors), 1, _IMAGE_SIZE, _IMAGE_SIZE), dtype=np.float32)
        for start in range(0, len(factors), _CHUNK):
            chunk = factors[start : start + _CHUNK]
            images[start : start + _CHUNK, 0] = _render(chunk)
        return images


def _render(factors: np.ndarray) -> np.ndarray:
    """Bool ``(n, 64, 64)`` images of factor rows ``(n, 5)`` (already validated)."""
    images = np.empty((len(factors), _IMAGE_SIZE, _IMAGE_SIZE), dtype=bool)
    for shape, inside in enumerate(_SHAPE_TESTS):
        rows = np.flatnonzero(factors[:, 0] == shape)
        if rows.size:
            images[rows] = inside(*_sprite_coordinates(factors[rows]))
    return images


def _sprite_coordinates(factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel centre lies in the sprite's own frame: float32 ``u, v``, each ``(n, 64, 64)``.

    Undoes the translation, the rotation (by ``orientation`` counter-clockwise as displayed, row 0 at
    the top; in the ``(x, y)`` frame with ``y`` down that is the matrix of ``-orientation``) and the
    scale, so the shape tests see a sprite of scale 1 at orientation 0
    centred on the origin. Each term is an outer product; only the sums are full-size arrays.
    """
    scale = np.linspace(0.5, 1.0, 6)[factors[:, 1]]
    angle = np.linspace(0.0, 2 * np.pi, 40)[factors[:, 2]]
    positions = np.linspace(0.0, 1.0, 32)
    centre_x = _CENTRE_OFFSET + _CENTRE_SPAN * positions[factors[:, 3]]
    centre_y = _CENTRE_OFFSET + _CENTRE_SPAN * positions[factors[:, 4]]
    cos = (np.cos(angle) / scale)[:, None, None]
    sin = (np.sin(angle) / scale)[:, None, None]
    pixel = np.arange(_IMAGE_SIZE, dtype=np.float64)
    dx = pixel[None, None, :] - centre_x[:, None, None]  # (n, 1, 64): offset along the columns
    dy = pixel[None, :, None] - centre_y[:, None, None]  # (n, 64, 1): offset along the rows
    u = (dx * cos).astype(np.float32) - (dy * sin).astype(np.float32)
    v = (dx * sin).astype(np.float32) + (dy * cos).astype(np.float32)
    return u, v
