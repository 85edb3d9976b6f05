"""The weak-label Higgins metric on the real CelebA sample's attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from betasweep.data.celeba import ATTRIBUTE_FILE, read_labels
from betasweep.metrics.weak_label import sample_attribute_pairs, weak_label_score

SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "celeba-sample"


@pytest.fixture(scope="module")
def attributes() -> np.ndarray:
    if not (SAMPLE / ATTRIBUTE_FILE).is_file():
        pytest.skip(f"CelebA sample not found at {SAMPLE}")
    return read_labels(SAMPLE).attributes


def test_pairs_share_the_label_attribute_and_are_distinct(attributes):
    subset = np.arange(40)
    labels, first, second = sample_attribute_pairs(attributes, np.random.default_rng(0), 2000, 64, subset)
    k = labels[:, None]
    assert (attributes[first, k] == attributes[second, k]).all()
    assert (first != second).all()  # every value of every attribute has >= 2 images in the sample
    # x1 is uniform over images, so the shared value follows the attribute's frequency.
    male = 20
    shared = attributes[first[labels == male], male]
    assert abs(shared.mean() - attributes[:, male].mean()) < 0.03
    assert np.bincount(labels, minlength=40).min() > 0


def test_attribute_vector_as_representation_scores_high(attributes):
    score = weak_label_score(attributes, np.where(attributes, 1.0, -1.0), np.random.default_rng(0))
    assert score["eval_accuracy"] >= 0.9 and score["train_accuracy"] >= 0.9


def test_random_representation_scores_near_chance(attributes):
    codes = np.random.default_rng(1).normal(size=(len(attributes), 10))
    score = weak_label_score(attributes, codes, np.random.default_rng(0))
    assert abs(score["eval_accuracy"] - 1 / 40) < 0.1


def test_subset_by_name_sets_the_chance_level(attributes):
    names = read_labels(SAMPLE).attribute_names
    subset = ["Male", "Smiling", "Eyeglasses", "Black_Hair"]
    codes = np.random.default_rng(2).normal(size=(len(attributes), 10))
    random = weak_label_score(attributes, codes, np.random.default_rng(0), attribute_subset=subset,
                              attribute_names=names, num_train=2000, num_eval=2000)
    assert abs(random["eval_accuracy"] - 1 / 4) < 0.1
    # Only the subset's own columns as the code: pairs differ in all but the label's column.
    own = np.where(attributes[:, [names.index(n) for n in subset]], 1.0, -1.0)
    exact = weak_label_score(attributes, own, np.random.default_rng(0), attribute_subset=subset,
                             attribute_names=names, num_train=2000, num_eval=2000)
    assert exact["eval_accuracy"] >= 0.9


def test_representation_function_encodes_each_image_once(attributes):
    images = np.where(attributes, 1.0, 0.0).astype(np.float32)[:, :, None, None]  # (N, 40, 1, 1)
    seen = []

    def represent(x):
        seen.append(len(x))
        return x.reshape(len(x), -1)

    from_fn = weak_label_score(attributes, represent, np.random.default_rng(3), images=images,
                               num_train=500, num_eval=500, encode_batch_size=1000)
    from_array = weak_label_score(attributes, images.reshape(len(images), -1), np.random.default_rng(3),
                                  num_train=500, num_eval=500)
    assert sum(seen) == len(attributes) and from_fn == from_array


def test_bad_arguments_are_value_errors(attributes):
    codes = np.zeros((len(attributes), 3))
    with pytest.raises(ValueError, match="at least 2 attributes"):
        weak_label_score(attributes, codes, np.random.default_rng(0), attribute_subset=[3])
    with pytest.raises(ValueError, match="unknown attribute"):
        weak_label_score(attributes, codes, np.random.default_rng(0), attribute_subset=["Male", "Smiling"])
    with pytest.raises(ValueError, match="needs the images"):
        weak_label_score(attributes, lambda x: x, np.random.default_rng(0))
    with pytest.raises(ValueError, match="representation must be"):
        weak_label_score(attributes, codes[:10], np.random.default_rng(0))
