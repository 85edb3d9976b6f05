import numpy as np
import pytest

from betasweep.data import DSprites, load_dataset
from betasweep.errors import ConfigError, DataError


def test_real_grid_loads_with_its_factor_structure(dsprites):
    assert dsprites.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert dsprites.factor_sizes == (3, 6, 10, 16, 16)
    assert dsprites.num_images == 46_080 and dsprites.num_channels == 1


def test_images_from_factors_returns_the_file_rows_of_those_factors(dsprites, dsprites_raw):
    rows = np.random.default_rng(0).choice(46_080, size=200, replace=False)
    images = dsprites.images_from_factors(dsprites_raw["latents_classes"][rows])
    assert images.dtype == np.float32 and images.shape == (200, 1, 64, 64)
    np.testing.assert_array_equal(images[:, 0], dsprites_raw["imgs"][rows].astype(np.float32))


def test_sample_observations_draws_valid_images_and_ignores_no_rng_state(dsprites):
    rng = np.random.default_rng(1)
    factors = dsprites.sample_factors(1000, rng)
    assert factors.shape == (1000, 5)
    assert (factors >= 0).all() and (factors < np.array(dsprites.factor_sizes)).all()
    # Images are a deterministic lookup: the rng is not consumed.
    state = rng.bit_generator.state
    dsprites.images_from_factors(factors, rng)
    assert rng.bit_generator.state == state


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_canonical_six_column_layout_drops_the_constant_colour(tmp_path, dsprites_raw):
    classes = np.concatenate([np.zeros((46_080, 1), np.int64), dsprites_raw["latents_classes"]], axis=1)
    # Reverse the rows: the lookup must not depend on row order.
    path = _write(tmp_path / "six.npz", imgs=dsprites_raw["imgs"][::-1], latents_classes=classes[::-1])
    data = DSprites(path)
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data.factor_sizes == (3, 6, 10, 16, 16)
    np.testing.assert_array_equal(data.images_from_factors(classes[:50, 1:])[:, 0], dsprites_raw["imgs"][:50])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        DSprites(tmp_path / "nope.npz")


def test_missing_keys_are_named(tmp_path):
    path = _write(tmp_path / "bad.npz", imgs=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(DataError, match="missing key.*latents_classes"):
        DSprites(path)


def test_incomplete_grid_is_refused(tmp_path, dsprites_raw):
    path = _write(tmp_path / "holes.npz", imgs=dsprites_raw["imgs"][:-10], latents_classes=dsprites_raw["latents_classes"][:-10])
    with pytest.raises(DataError, match="not a complete grid"):
        DSprites(path)


def test_wrong_image_size_is_refused(tmp_path, dsprites_raw):
    path = _write(tmp_path / "small.npz", imgs=dsprites_raw["imgs"][:, ::2, ::2], latents_classes=dsprites_raw["latents_classes"])
    with pytest.raises(DataError, match=r"expected \(64, 64\)"):
        DSprites(path)


def test_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz"):
        DSprites(path)


def test_load_dataset_by_name(dsprites_path):
    assert load_dataset("dsprites", dsprites_path).factor_sizes == (3, 6, 10, 16, 16)
    assert load_dataset("shapes").factor_sizes == (3, 6, 40, 32, 32)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="needs a data path"):
        load_dataset("dsprites")


def test_without_points_never_samples_the_held_out_points_and_renders_the_rest(dsprites):
    rng = np.random.default_rng(0)
    held_out = dsprites.factors_from_flat_index(np.arange(0, dsprites.num_images, 2))  # every other grid point
    split = dsprites.without(held_out)
    factors = split.sample_factors(5_000, rng)
    assert factors.shape == (5_000, 5) and factors.dtype == np.int64
    assert not np.isin(dsprites.flat_index(factors), dsprites.flat_index(held_out)).any()
    assert np.all(dsprites.flat_index(factors) % 2 == 1)
    assert np.array_equal(split.images_from_factors(factors[:8]), dsprites.images_from_factors(factors[:8]))
    with pytest.raises(ValueError, match=r"held-out factors must be \(n, 5\), got shape \(3, 4\)"):
        dsprites.without(held_out[:3, 1:])
    with pytest.raises(ValueError, match="cover the whole grid"):
        dsprites.without(dsprites.factors_from_flat_index(np.arange(dsprites.num_images)))
