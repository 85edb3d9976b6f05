"""CelebA loading on the real sample: strict parsing, the image cache, partitions and splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from betasweep.data.celeba import (
    ATTRIBUTE_FILE,
    IDENTITY_FILE,
    IMAGE_DIR,
    PARTITION_FILE,
    CelebA,
    identity_split,
    preprocess_image,
    read_labels,
)
from betasweep.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "data" / "celeba-sample"
ATTRS = REPO.parent / "shared" / "data" / "celeba-attrs"


@pytest.fixture(scope="session")
def sample_root() -> Path:
    if not (SAMPLE / ATTRIBUTE_FILE).is_file():
        pytest.skip(f"CelebA sample not found at {SAMPLE}")
    return SAMPLE


def make_root(directory: Path, source: Path, rows: list[int], *, identity: bool = True, images: bool = True) -> Path:
    """A small CelebA root from chosen data rows of ``source``: text files cut, images symlinked (never copied)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = (source / ATTRIBUTE_FILE).read_text().splitlines()
    body = [lines[2 + r] for r in rows]
    (directory / ATTRIBUTE_FILE).write_text("\r\n".join([str(len(body)), lines[1], *body]) + "\r\n")
    names = {line.split()[0] for line in body}
    for name in (PARTITION_FILE, IDENTITY_FILE) if identity else (PARTITION_FILE,):
        kept = [line for line in (source / name).read_text().splitlines() if line.split()[0] in names]
        (directory / name).write_text("\r\n".join(kept) + "\r\n")
    if images:
        (directory / IMAGE_DIR).mkdir(exist_ok=True)
        for name in names:
            (directory / IMAGE_DIR / name).symlink_to(source / IMAGE_DIR / name)
    return directory


@pytest.fixture(scope="session")
def small_root(sample_root, tmp_path_factory) -> Path:
    """40 train and 20 val rows of the real sample."""
    partition = np.array([int(line.split()[1]) for line in (sample_root / PARTITION_FILE).read_text().splitlines()])
    rows = [*np.flatnonzero(partition == 0)[:40], *np.flatnonzero(partition == 1)[:20]]
    return make_root(tmp_path_factory.mktemp("celeba") / "root", sample_root, [int(r) for r in rows])


def _independent_parse(root: Path):
    lines = (root / ATTRIBUTE_FILE).read_text().splitlines()
    rows = [line.split() for line in lines[2:]]
    partition = dict(line.split() for line in (root / PARTITION_FILE).read_text().splitlines())
    names = [r[0] for r in rows]
    values = np.array([[v == "1" for v in r[1:]] for r in rows])
    return names, lines[1].split(), values, np.array([int(partition[n]) for n in names])


def test_sample_labels_match_the_files(sample_root):
    labels = read_labels(sample_root)
    names, attribute_names, values, partition = _independent_parse(sample_root)
    assert labels.filenames == tuple(names) and labels.attribute_names == tuple(attribute_names)
    assert labels.attributes.dtype == bool and labels.attributes.shape == (len(names), 40)
    np.testing.assert_array_equal(labels.attributes, values)
    np.testing.assert_array_equal(labels.partition, partition)
    assert labels.partition_names() == ("train", "val")  # the sample holds no test rows
    assert labels.identity is not None and labels.identity.shape == (len(names),)
    with pytest.raises(DataError, match="'test' has no images"):
        labels.rows("test")


def test_full_attribute_file_reads_without_images():
    if not (ATTRS / ATTRIBUTE_FILE).is_file():
        pytest.skip(f"full CelebA attributes not found at {ATTRS}")
    labels = read_labels(ATTRS)
    declared = int((ATTRS / ATTRIBUTE_FILE).open().readline())
    assert labels.attributes.shape == (declared, 40) and labels.partition_names() == ("train", "val", "test")
    assert labels.identity is None
    with pytest.raises(DataError, match=f"no {IMAGE_DIR}/ directory"):
        CelebA(ATTRS, cache_dir=os.devnull + "-unused")


def _corrupt_attribute_file(root: Path, line_number: int, edit) -> Path:
    path = root / ATTRIBUTE_FILE
    lines = path.read_text().splitlines()
    lines[line_number - 1] = edit(lines[line_number - 1])
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda line: line.rsplit(" ", 1)[0], "expected 41 columns"),  # one value short
        (lambda line: line + " 1", "expected 41 columns"),
        (lambda line: line[: line.rindex(" ") + 1] + "0", "value '0' of Young is not 1 or -1"),
        (lambda line: line.replace("-1", "x", 1), "is not 1 or -1"),
    ],
)
def test_malformed_attribute_file_names_file_and_line(sample_root, tmp_path, edit, needle):
    root = make_root(tmp_path / "root", sample_root, list(range(8)), images=False)
    path = _corrupt_attribute_file(root, 7, edit)
    with pytest.raises(DataError) as error:
        read_labels(root)
    assert str(path) in str(error.value) and "line 7" in str(error.value) and needle in str(error.value)


def test_row_count_must_match_header(sample_root, tmp_path):
    root = make_root(tmp_path / "root", sample_root, list(range(8)), images=False)
    _corrupt_attribute_file(root, 1, lambda line: "9")
    with pytest.raises(DataError, match="line 1: declares 9 rows but the file has 8"):
        read_labels(root)


def test_missing_and_corrupt_images_name_the_file(sample_root, tmp_path):
    root = make_root(tmp_path / "root", sample_root, list(range(6)))
    victim = sorted((root / IMAGE_DIR).iterdir())[2]
    victim.unlink()
    with pytest.raises(DataError, match=f"image not found: {victim}"):
        CelebA(root, cache_dir=tmp_path / "cache", progress=False)
    victim.write_bytes((sample_root / IMAGE_DIR / victim.name).read_bytes()[:2000])  # a truncated JPEG
    with pytest.raises(DataError, match=f"{victim}: corrupt or unreadable image"):
        CelebA(root, cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob(".*tmp*"))


def test_cache_is_built_once_then_memory_mapped(small_root, tmp_path, monkeypatch):
    monkeypatch.setenv("BETASWEEP_CACHE", str(tmp_path / "env-cache"))
    first = CelebA(small_root, image_size=16, progress=False)
    assert first.cache_path.parent == tmp_path / "env-cache"
    mtime = first.cache_path.stat().st_mtime_ns

    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    second = CelebA(small_root, "val", image_size=16, progress=False)
    assert opened == [] and second.cache_path == first.cache_path
    assert first.cache_path.stat().st_mtime_ns == mtime
    assert isinstance(second._images, np.memmap)

    # A different size is a different cache, built from the JPEGs.
    third = CelebA(small_root, image_size=8, progress=False)
    assert third.cache_path != first.cache_path and len(opened) == third.labels.num_rows


def test_cached_images_are_the_centre_crop_resized(small_root, tmp_path):
    data = CelebA(small_root, image_size=64, cache_dir=tmp_path, progress=False)
    labels = data.labels
    assert len(data) == 40 and len(data.with_partition("val")) == 20
    np.testing.assert_array_equal(data.attributes, labels.attributes[labels.partition == 0])
    expected = preprocess_image(small_root / IMAGE_DIR / data.filenames[5], 64, 148)
    np.testing.assert_array_equal(data.images_uint8(np.array([5]))[0], expected)
    # preprocess_image = the 148 px centre of the 178x218 JPEG, resized: compare with PIL directly.
    with Image.open(small_root / IMAGE_DIR / data.filenames[5]) as image:
        direct = np.asarray(image.convert("RGB").crop((15, 35, 163, 183)).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(expected.transpose(1, 2, 0), direct)

    batch = data.sample_observations(32, np.random.default_rng(0))
    assert batch.dtype == np.float32 and batch.shape == (32, 3, 64, 64)
    assert 0.0 <= batch.min() and batch.max() <= 1.0 and batch.std() > 0.05
    again = data.sample_observations(32, np.random.default_rng(0))
    np.testing.assert_array_equal(batch, again)


def test_identity_split_keeps_people_apart(sample_root, tmp_path):
    labels = read_labels(sample_root)
    codes = identity_split(labels.identity, (0.7, 0.15, 0.15), np.random.default_rng(0))
    people = [set(labels.identity[codes == c].tolist()) for c in range(3)]
    assert not (people[0] & people[1]) and not (people[0] & people[2]) and not (people[1] & people[2])
    shares = np.bincount(codes, minlength=3) / len(codes)
    # Whole identities of 30 images each move together: shares are close to, not exactly, the fractions.
    np.testing.assert_allclose(shares, (0.7, 0.15, 0.15), atol=0.03)
    other = identity_split(labels.identity, (0.7, 0.15, 0.15), np.random.default_rng(1))
    assert not np.array_equal(codes, other)


def test_identity_split_needs_the_identity_file(sample_root, tmp_path):
    root = make_root(tmp_path / "root", sample_root, list(range(6)), identity=False)
    with pytest.raises(DataError, match=IDENTITY_FILE):
        CelebA(root, split="identity", cache_dir=tmp_path / "cache", progress=False)
