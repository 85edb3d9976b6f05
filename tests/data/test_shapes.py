"""Tests of the procedural dSprites simulator, including its fidelity to the real dSprites images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from betasweep.data.shapes import Shapes

# ../shared beside the repository root
DSPRITES_SUBSET = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsprites" / "dsprites_downsampled.npz"
)
SHAPE_NAMES = ("square", "ellipse", "heart")


@pytest.fixture(scope="module")
def shapes() -> Shapes:
    return Shapes()


def test_factor_structure(shapes):
    assert shapes.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert shapes.factor_sizes == (3, 6, 40, 32, 32)
    assert shapes.num_channels == 1
    assert shapes.num_factors == 5
    assert shapes.num_images == 737_280


def test_images_shape_dtype_values(shapes):
    factors = shapes.sample_factors(300, np.random.default_rng(0))
    images = shapes.images_from_factors(factors)
    assert images.shape == (300, 1, 64, 64)
    assert images.dtype == np.float32
    assert set(np.unique(images)) <= {0.0, 1.0}
    assert (images.sum(axis=(1, 2, 3)) > 0).all(), "every sprite has on-pixels"


def test_images_deterministic_and_rng_untouched(shapes):
    factors = shapes.sample_factors(64, np.random.default_rng(1))
    rng = np.random.default_rng(7)
    first = shapes.images_from_factors(factors, rng)
    assert rng.bit_generator.state == np.random.default_rng(7).bit_generator.state, "rng was drawn from"
    np.testing.assert_array_equal(first, shapes.images_from_factors(factors))
    # a row's image does not depend on the rest of the batch (nor on the chunking)
    np.testing.assert_array_equal(first[5:6], shapes.images_from_factors(factors[5:6]))
    big = shapes.sample_factors(2100, np.random.default_rng(4))  # more than one rendering chunk
    np.testing.assert_array_equal(shapes.images_from_factors(big)[-3:], shapes.images_from_factors(big[-3:]))


def test_sample_factors_in_range(shapes):
    factors = shapes.sample_factors(5000, np.random.default_rng(2))
    assert factors.shape == (5000, 5)
    assert (factors >= 0).all()
    assert (factors < np.array(shapes.factor_sizes)).all()
    assert (factors.max(axis=0) == np.array(shapes.factor_sizes) - 1).all()
    observations = shapes.sample_observations(8, np.random.default_rng(3))
    assert observations.shape == (8, 1, 64, 64) and observations.dtype == np.float32


def test_empty_batch(shapes):
    assert shapes.images_from_factors(np.zeros((0, 5), dtype=np.int64)).shape == (0, 1, 64, 64)


@pytest.mark.parametrize(
    "factors",
    [np.array([[3, 0, 0, 0, 0]]), np.array([[0, 0, 0, 0, -1]]), np.array([[0, 0, 40, 0, 0]]), np.zeros((2, 4), int)],
)
def test_bad_factors_rejected(shapes, factors):
    with pytest.raises(ValueError):
        shapes.images_from_factors(factors)


def test_geometry_conventions(shapes):
    """posX moves along columns, posY along rows; rotation is counter-clockwise on screen; hearts point down."""
    squares = [[0, 5, 0, 0, 0], [0, 5, 0, 31, 0], [0, 5, 0, 0, 31]]
    factors = squares + [[1, 5, 0, 16, 16], [1, 5, 5, 16, 16], [2, 5, 0, 16, 16]]
    images = shapes.images_from_factors(np.array(factors))[:, 0]
    rows, cols = np.mgrid[:64, :64]

    def centroid(image):
        return (image * rows).sum() / image.sum(), (image * cols).sum() / image.sum()

    assert centroid(images[0]) == pytest.approx((15.5, 15.5))
    assert centroid(images[1]) == pytest.approx((15.5, 47.5))  # posX -> columns
    assert centroid(images[2]) == pytest.approx((47.5, 15.5))  # posY -> rows
    ellipse_rows, ellipse_cols = np.nonzero(images[3])
    assert np.ptp(ellipse_cols) > np.ptp(ellipse_rows)  # orientation 0: long axis horizontal
    turned_rows, turned_cols = np.nonzero(images[4])  # orientation 5 (~46 deg): long axis to the top right
    assert np.cov(turned_rows, turned_cols)[0, 1] < 0
    heart_rows, _ = np.nonzero(images[5])  # sprite centre at row 32.0; lobes above, tip below
    assert centroid(images[5])[0] < 31.0
    assert images[5][heart_rows.max()].sum() < images[5][heart_rows.min()].sum()  # a tip, two lobes


def test_fidelity_to_real_dsprites(shapes):
    """Rendering the factors of every real image of the dSprites subset reproduces it (IoU >= 0.90)."""
    if not DSPRITES_SUBSET.is_file():
        pytest.skip(f"real dSprites subset not found at {DSPRITES_SUBSET}")
    with np.load(DSPRITES_SUBSET) as npz:
        real = npz["imgs"].astype(bool)
        classes = np.asarray(npz["latents_classes"], dtype=np.int64)
    assert classes.shape == (46_080, 5)
    # The subset's grid 3x6x10x16x16 is every 4th orientation and every 2nd position of the full grid.
    factors = classes * np.array([1, 1, 4, 2, 2])
    rendered = shapes.images_from_factors(factors)[:, 0] > 0.5
    iou = (rendered & real).sum(axis=(1, 2)) / (rendered | real).sum(axis=(1, 2))
    mean_iou = {name: float(iou[factors[:, 0] == k].mean()) for k, name in enumerate(SHAPE_NAMES)}
    report = ", ".join(f"{name} {value:.4f}" for name, value in mean_iou.items())
    print(f"\nShapes vs real dSprites, mean IoU per shape: {report}")
    assert all(value >= 0.90 for value in mean_iou.values()), f"mean IoU per shape: {report}"


def test_subsampled_grid_renders_every_kth_value_of_the_full_grid():
    full, small = Shapes(), Shapes(subsample=(1, 1, 4, 2, 2))
    assert small.factor_sizes == (3, 6, 10, 16, 16) and small.num_images == 46_080
    factors = small.sample_factors(64, np.random.default_rng(0))
    np.testing.assert_array_equal(small.images_from_factors(factors), full.images_from_factors(factors * [1, 1, 4, 2, 2]))


@pytest.mark.parametrize("subsample", [(1, 1, 3, 1, 1), (1, 1, 1, 1), (0, 1, 1, 1, 1)])
def test_subsample_that_does_not_divide_is_refused(subsample):
    from betasweep.errors import ConfigError

    with pytest.raises(ConfigError, match="subsample"):
        Shapes(subsample=subsample)
