"""The labelled traversal and reconstruction figures (a small untrained model: the labels are the point)."""

from __future__ import annotations

import numpy as np
import torch

from betasweep.figures import label_grid, reconstruction_figure, traversal_figure
from betasweep.models import BetaVAE, ModelConfig


def _ink(image, box) -> int:
    """Dark pixels (text) in a box of an RGB image."""
    return int((np.asarray(image.crop(box).convert("L")) < 128).sum())


def test_each_traversal_row_and_column_carries_a_label(one_torch_thread):
    torch.manual_seed(0)
    model = BetaVAE(ModelConfig(latent_dim=4, width=8))
    x = torch.rand(1, 1, 64, 64)
    kl = [0.2, 3.0, 0.0, 1.1]
    plain = traversal_figure(model, x, kl)
    named = traversal_figure(model, x, kl, names={1: "Blond_Hair + (AUC 0.76)"})
    grid_w, grid_h = 10 * 66 + 2, 4 * 66 + 2
    left, top = plain.width - grid_w, plain.height - grid_h
    assert left > 40 and top > 8  # margins for the row and column labels
    for row in range(4):  # every row band of the left margin has text
        assert _ink(plain, (0, top + 2 + row * 66, left, top + 2 + row * 66 + 64)) > 20, row
    for column in range(10):  # every column band of the top margin has text
        assert _ink(plain, (left + 2 + column * 66, 0, left + 2 + column * 66 + 64, top)) > 5, column
    # a name widens the margin and adds ink only in the row of its dimension (dim 1: largest KL, the first row)
    assert named.width > plain.width
    extra_left = named.width - grid_w
    first = _ink(named, (0, top + 2, extra_left, top + 66)) - _ink(plain, (0, top + 2, left, top + 66))
    second = _ink(named, (0, top + 68, extra_left, top + 132)) - _ink(plain, (0, top + 68, left, top + 132))
    assert first > 50 and second == 0


def test_label_grid_keeps_the_tiles_untouched():
    grid = torch.rand(3, 2 * 66 + 2, 3 * 66 + 2)
    image = label_grid(grid, ["a", "b"], ["x", "y", "z"])
    tiles = np.asarray(image)[image.height - grid.shape[1]:, image.width - grid.shape[2]:]
    expected = grid.mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(tiles, expected)


def test_reconstruction_rows_are_labelled(one_torch_thread):
    model = BetaVAE(ModelConfig(latent_dim=3, width=8))
    image = reconstruction_figure(model, torch.rand(4, 1, 64, 64))
    left = image.width - (4 * 66 + 2)
    assert image.height == 2 * 66 + 2 and left > 20
    assert _ink(image, (0, 2, left, 66)) > 10 and _ink(image, (0, 68, left, 132)) > 10
