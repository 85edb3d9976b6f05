"""CelebA from its standard folder layout (Liu et al., "Deep Learning Face Attributes in the Wild", ICCV 2015).

A root holds the official files::

    ROOT/img_align_celeba/000001.jpg ...   aligned and cropped 178x218 RGB JPEGs (optional for labels)
    ROOT/list_attr_celeba.txt              line 1: row count; line 2: 40 attribute names;
                                           then "<file> <40 values of 1 or -1>"
    ROOT/list_eval_partition.txt           "<file> <0|1|2>": 0 = train, 1 = val, 2 = test
    ROOT/identity_CelebA.txt               "<file> <identity>" (optional; needed for a new split)

Subsets in the same format (such as ``shared/data/celeba-sample``, train and val only) work as well.

:func:`read_labels` reads the text files alone, so attribute-only roots serve for statistics.
:class:`CelebA` adds the images: each is centre-cropped to ``crop_size`` (148 px, as in
disentanglement_lib's and most β-VAE CelebA pipelines) and resized to ``image_size`` (64 px),
then the whole set is cached once on disk as a uint8 ``.npy`` array ``(N, 3, size, size)`` that
later runs memory-map instead of decoding JPEGs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from betasweep.errors import ConfigError, DataError

__all__ = [
    "ATTRIBUTE_FILE",
    "IDENTITY_FILE",
    "IMAGE_DIR",
    "PARTITION_FILE",
    "PARTITIONS",
    "CelebA",
    "CelebALabels",
    "build_image_cache",
    "cache_file",
    "default_cache_dir",
    "identity_split",
    "preprocess_image",
    "read_attributes",
    "read_identities",
    "read_labels",
    "read_partitions",
]

ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
IMAGE_DIR = "img_align_celeba"
PARTITIONS = {"train": 0, "val": 1, "test": 2}
"""Partition names and their codes in ``list_eval_partition.txt``."""
CACHE_ENV = "BETASWEEP_CACHE"
_CACHE_FORMAT = 1  # bump when the preprocessing changes, so old caches are not reused


@dataclass(frozen=True)
class CelebALabels:
    """The text annotations of a CelebA root, rows in the attribute file's order.

    Attributes:
        root: the resolved root directory.
        filenames: ``(N,)`` image file names, e.g. ``"000001.jpg"``.
        attribute_names: the 40 attribute names in column order.
        attributes: bool ``(N, num_attributes)``; True where the file says 1.
        partition: int8 ``(N,)`` partition codes (:data:`PARTITIONS`).
        identity: int64 ``(N,)`` person identities, or None without ``identity_CelebA.txt``.
    """

    root: Path
    filenames: tuple[str, ...]
    attribute_names: tuple[str, ...]
    attributes: np.ndarray
    partition: np.ndarray
    identity: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return len(self.filenames)

    def partition_names(self) -> tuple[str, ...]:
        """Partitions with at least one row, in train/val/test order."""
        present = set(np.unique(self.partition).tolist())
        return tuple(name for name, code in PARTITIONS.items() if code in present)

    def rows(self, partition: str | None) -> np.ndarray:
        """Row indices (int64, ascending) of one partition; ``None`` means all rows.

        Raises:
            ConfigError: unknown partition name.
            DataError: the partition has no rows in this root.
        """
        if partition is None:
            return np.arange(self.num_rows)
        if partition not in PARTITIONS:
            raise ConfigError(f"unknown partition {partition!r}; expected one of {', '.join(PARTITIONS)}")
        rows = np.flatnonzero(self.partition == PARTITIONS[partition])
        if rows.size == 0:
            raise DataError(
                f"{self.root}: partition {partition!r} has no images "
                f"(present: {', '.join(self.partition_names()) or 'none'})"
            )
        return rows


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"CelebA file not found: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None


def read_attributes(path: str | os.PathLike) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """Parse ``list_attr_celeba.txt`` strictly.

    Line 1 is the row count, line 2 the attribute names, then one row per image:
    ``<file> <one value per attribute>``, every value ``1`` or ``-1``, any whitespace between.

    Returns:
        ``(filenames, attribute_names, attributes)``; ``attributes`` is bool ``(N, A)``.

    Raises:
        DataError: naming the file and the 1-based line: a missing header, a row count that
            disagrees with line 1, a row with the wrong number of columns, a value other than
            1/-1, or a file name listed twice.
    """
    path = Path(path)
    lines = _read_lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a row count on line 1 and attribute names on line 2")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: expected the row count, got {lines[0].strip()[:40]!r}") from None
    names = tuple(lines[1].split())
    if not names:
        raise DataError(f"{path}, line 2: expected the attribute names")
    body = lines[2:]
    while body and not body[-1].strip():
        body.pop()  # tolerate trailing blank lines, nothing else
    filenames, table = _parse_rows(path, body, names)
    if declared != len(filenames):
        raise DataError(f"{path}, line 1: declares {declared} rows but the file has {len(filenames)}")
    _check_unique(path, filenames, first_line=3)
    return tuple(filenames), names, table == 1


def _parse_rows(path: Path, body: list[str], names: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Rows ``<file> <values>`` → (file names, int64 ``(N, A)`` of 1/-1), checked strictly.

    The values are parsed in one ``np.fromstring`` call (the full 202,599-row file in about a
    second); any anomaly sends the rows through :func:`_raise_bad_row`, which names the line.
    """
    split = [line.split(None, 1) for line in body]
    for number, (parts, line) in enumerate(zip(split, body), start=3):
        if len(parts) != 2 or len(parts[1].split()) != len(names):
            _raise_bad_row(path, number, line, names)
    filenames = [parts[0] for parts in split]
    joined = " ".join(parts[1] for parts in split)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # older numpy warns where newer raises
            values = np.fromstring(joined, dtype=np.int64, sep=" ") if joined else np.zeros(0, np.int64)
    except (ValueError, DeprecationWarning):
        values = None  # a token that is not an integer
    if values is None or values.size != len(body) * len(names) or not np.all((values == 1) | (values == -1)):
        for number, line in enumerate(body, start=3):
            _raise_bad_row(path, number, line, names)
        raise DataError(f"{path}: attribute values are not all 1 or -1")
    return filenames, values.reshape(len(body), len(names))


def _raise_bad_row(path: Path, number: int, line: str, names: tuple[str, ...]) -> None:
    """Raise DataError for line ``number`` of the attribute file when it is malformed; return otherwise."""
    parts = line.split()
    if len(parts) != len(names) + 1:
        raise DataError(
            f"{path}, line {number}: expected {len(names) + 1} columns (file name and {len(names)} values), "
            f"got {len(parts)}"
        )
    for name, value in zip(names, parts[1:]):
        if value not in ("1", "-1"):
            raise DataError(f"{path}, line {number}: value {value!r} of {name} is not 1 or -1")


def _check_unique(path: Path, filenames: list[str], first_line: int) -> None:
    """Raise DataError naming the line of the first file name listed twice."""
    if len(set(filenames)) == len(filenames):
        return
    seen: dict[str, int] = {}
    for number, name in enumerate(filenames, start=first_line):
        if name in seen:
            raise DataError(f"{path}, line {number}: {name} is listed twice (first on line {seen[name]})")
        seen[name] = number


def _read_column(path: Path, filenames: tuple[str, ...], what: str) -> np.ndarray:
    """Read a ``<file> <integer>`` file and return the integers in ``filenames``' order: int64 ``(N,)``."""
    lines = _read_lines(path)
    index: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}, line {number}: expected 2 columns (file name and {what}), got {len(parts)}")
        try:
            index[parts[0]] = int(parts[1])
        except ValueError:
            raise DataError(f"{path}, line {number}: {what} {parts[1]!r} is not an integer") from None
    try:
        return np.fromiter((index[name] for name in filenames), dtype=np.int64, count=len(filenames))
    except KeyError as error:
        raise DataError(f"{path}: no {what} for {error.args[0]} (listed in {ATTRIBUTE_FILE})") from None


def read_partitions(path: str | os.PathLike, filenames: tuple[str, ...]) -> np.ndarray:
    """Partition code of each file in ``filenames`` from ``list_eval_partition.txt``: int8 ``(N,)``.

    Raises:
        DataError: a file has no row, a row is malformed, or a code is not 0, 1 or 2.
    """
    path = Path(path)
    codes = _read_column(path, filenames, "partition")
    bad = ~np.isin(codes, list(PARTITIONS.values()))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: partition of {filenames[i]} is {codes[i]}, expected 0 (train), 1 (val) or 2 (test)")
    return codes.astype(np.int8)


def read_identities(path: str | os.PathLike, filenames: tuple[str, ...]) -> np.ndarray:
    """Identity of each file in ``filenames`` from ``identity_CelebA.txt``: int64 ``(N,)``."""
    return _read_column(Path(path), filenames, "identity")


def read_labels(root: str | os.PathLike) -> CelebALabels:
    """Read the attribute, partition and (when present) identity files of a CelebA root.

    Needs no images, so the attribute-only root ``shared/data/celeba-attrs`` works.

    Raises:
        DataError: the root or a required file is missing or malformed (see :func:`read_attributes`).
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"CelebA root not found: {root} (expected a directory with {ATTRIBUTE_FILE})")
    filenames, names, attributes = read_attributes(root / ATTRIBUTE_FILE)
    partition = read_partitions(root / PARTITION_FILE, filenames)
    identity_path = root / IDENTITY_FILE
    identity = read_identities(identity_path, filenames) if identity_path.is_file() else None
    return CelebALabels(root, filenames, names, attributes, partition, identity)


def identity_split(identity: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """A new train/val/test split in which no identity appears in two partitions.

    Identities are shuffled with ``rng`` and assigned in that order to train until it holds
    ``fractions[0]`` of the images, then to val until it holds ``fractions[1]``; the rest go to
    test. Fractions are of images, approximately (an identity is never split).

    Args:
        identity: int ``(N,)`` identity per image.
        fractions: ``(train, val, test)`` shares of the images, non-negative, summing to 1.
        rng: the split's randomness.

    Returns:
        int8 ``(N,)`` partition codes (:data:`PARTITIONS`).
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids, counts = np.unique(identity, return_counts=True)
    order = rng.permutation(len(ids))
    # Identity i's share of images ends at ends[i]; it goes to the partition that share falls in.
    ends = np.cumsum(counts[order]) / counts.sum()
    starts = ends - counts[order] / counts.sum()
    bounds = np.cumsum(fractions)[:2]
    code_of_shuffled = np.searchsorted(bounds, starts + 1e-12, side="right").astype(np.int8)
    code_of_id = np.empty(len(ids), dtype=np.int8)
    code_of_id[order] = code_of_shuffled
    return code_of_id[np.searchsorted(ids, identity)]


def preprocess_image(path: str | os.PathLike, image_size: int, crop_size: int) -> np.ndarray:
    """Decode one JPEG, centre-crop ``crop_size`` square, resize to ``image_size`` square.

    The crop is taken around the image centre (for 178x218 CelebA images and 148 px: columns
    15..163, rows 35..183); resizing uses PIL's bilinear filter, which antialiases when shrinking.

    Returns:
        uint8 ``(3, image_size, image_size)``, RGB.

    Raises:
        DataError: the file is missing, not an image, truncated, or smaller than ``crop_size``.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"CelebA image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: corrupt or unreadable image ({error})") from None
    width, height = image.size
    if min(width, height) < crop_size:
        raise DataError(f"{path}: image is {width}x{height}, smaller than the {crop_size} px centre crop")
    left, top = (width - crop_size) // 2, (height - crop_size) // 2
    image = image.crop((left, top, left + crop_size, top + crop_size))
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def default_cache_dir() -> Path:
    """``$BETASWEEP_CACHE`` when set, else ``~/.cache/betasweep``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "betasweep").expanduser()


def cache_file(
    root: Path, filenames: tuple[str, ...], image_size: int, crop_size: int, cache_dir: str | os.PathLike | None
) -> Path:
    """The cache path of one (resolved root, image list, size, crop) combination.

    The file name carries a SHA-256 over the key, so a different root, image list or size never
    reuses another's cache: ``celeba-64px-crop148-<16 hex>.npy``.
    """
    key = hashlib.sha256()
    key.update(f"format={_CACHE_FORMAT}\nroot={Path(root).resolve()}\nsize={image_size}\ncrop={crop_size}\n".encode())
    key.update("\n".join(filenames).encode())
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / f"celeba-{image_size}px-crop{crop_size}-{key.hexdigest()[:16]}.npy"


def build_image_cache(
    paths: list[Path], out: Path, image_size: int, crop_size: int, *, progress: bool = True
) -> Path:
    """Preprocess every image in ``paths`` (:func:`preprocess_image`) into one uint8 ``.npy`` file.

    Written to a temporary file beside ``out`` and renamed, so an interrupted build never leaves
    a partial cache under the final name.

    Returns:
        ``out``, holding uint8 ``(len(paths), 3, image_size, image_size)``.

    Raises:
        DataError: an image is missing or corrupt (the file is named); no cache is written.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shape = (len(paths), 3, image_size, image_size)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for i, path in enumerate(tqdm(paths, desc=f"caching CelebA {image_size}px", unit="img", disable=not progress)):
            array[i] = preprocess_image(path, image_size, crop_size)
        array.flush()
        del array
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _open_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Memory-map a cache file; None when it is absent or not the expected uint8 array."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return array if array.dtype == np.uint8 and array.shape == shape else None


class CelebA:
    """CelebA images and attributes of one partition, preprocessed for a 64x64 β-VAE.

    All images listed in the attribute file are preprocessed once into a cache (see
    :func:`cache_file`) shared by every partition; each construction memory-maps it.

    Args:
        root: the CelebA directory (standard layout, see the module docstring).
        partition: ``"train"``, ``"val"`` or ``"test"``, the rows this object serves.
        image_size: side of the cached square images in pixels (64 for the β-VAE).
        crop_size: side of the centre crop taken before resizing (148).
        split: ``"official"`` (``list_eval_partition.txt``) or ``"identity"``: a new random split
            from :func:`identity_split` that keeps identities disjoint (needs ``identity_CelebA.txt``).
        split_seed: seed of the identity split.
        split_fractions: ``(train, val, test)`` image shares of the identity split.
        cache_dir: where caches live; default ``$BETASWEEP_CACHE`` or ``~/.cache/betasweep``.
        progress: show a progress bar while building the cache.

    Raises:
        ConfigError: bad partition, split or sizes.
        DataError: a missing or malformed file, a missing or corrupt image (named), no image
            directory, or an empty partition.

    Shapes: :meth:`images` and :meth:`sample_observations` return float32 ``(n, 3, s, s)`` in
    ``[0, 1]``; :attr:`attributes` is bool ``(N_partition, 40)``.
    """

    num_channels = 3

    def __init__(
        self,
        root: str | os.PathLike,
        partition: str = "train",
        *,
        image_size: int = 64,
        crop_size: int = 148,
        split: str = "official",
        split_seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ):
        if image_size < 1 or crop_size < 1:
            raise ConfigError(f"image_size and crop_size must be >= 1, got {image_size} and {crop_size}")
        if split not in ("official", "identity"):
            raise ConfigError(f"split must be 'official' or 'identity', got {split!r}")
        labels = read_labels(root)
        if split == "identity":
            if labels.identity is None:
                raise DataError(
                    f"{labels.root}: the identity split needs {IDENTITY_FILE} (a '<file> <identity>' row per image)"
                )
            codes = identity_split(labels.identity, split_fractions, np.random.default_rng(split_seed))
            labels = CelebALabels(labels.root, labels.filenames, labels.attribute_names, labels.attributes,
                                  codes, labels.identity)
        self.labels = labels
        self.partition = partition
        self.image_size = image_size
        self.crop_size = crop_size
        self.rows = labels.rows(partition)
        self.cache_path = cache_file(labels.root, labels.filenames, image_size, crop_size, cache_dir)
        self._images = self._load_or_build_cache(progress)

    def _load_or_build_cache(self, progress: bool) -> np.ndarray:
        shape = (self.labels.num_rows, 3, self.image_size, self.image_size)
        cached = _open_cache(self.cache_path, shape)
        if cached is not None:
            return cached
        image_dir = self.labels.root / IMAGE_DIR
        if not image_dir.is_dir():
            raise DataError(f"{self.labels.root}: no {IMAGE_DIR}/ directory (the images are needed beyond statistics)")
        present = set(os.listdir(image_dir))
        missing = [name for name in self.labels.filenames if name not in present]
        if missing:
            raise DataError(
                f"CelebA image not found: {image_dir / missing[0]} ({len(missing)} of the {self.labels.num_rows} "
                f"images listed in {ATTRIBUTE_FILE} are missing)"
            )
        paths = [image_dir / name for name in self.labels.filenames]
        build_image_cache(paths, self.cache_path, self.image_size, self.crop_size, progress=progress)
        return np.load(self.cache_path, mmap_mode="r")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.labels.attribute_names

    @property
    def num_attributes(self) -> int:
        return len(self.labels.attribute_names)

    @property
    def attributes(self) -> np.ndarray:
        """bool ``(len(self), num_attributes)``: the partition's attributes, True for 1."""
        return self.labels.attributes[self.rows]

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(self.labels.filenames[i] for i in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def with_partition(self, partition: str) -> "CelebA":
        """The same root, split and cache, serving another partition (no re-reading of files)."""
        other = object.__new__(CelebA)
        other.__dict__.update(self.__dict__)
        other.partition = partition
        other.rows = self.labels.rows(partition)
        return other

    def images_uint8(self, indices: np.ndarray) -> np.ndarray:
        """Cached images at partition positions ``indices``: uint8 ``(n, 3, s, s)`` (a copy)."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # ascending reads are kinder to the memory map
        out = np.empty((len(rows), 3, self.image_size, self.image_size), dtype=np.uint8)
        out[order] = self._images[rows[order]]
        return out

    def images(self, indices: np.ndarray) -> np.ndarray:
        """Images at partition positions ``indices`` (``0 <= i < len(self)``): float32 ``(n, 3, s, s)`` in [0, 1]."""
        return self.images_uint8(indices).astype(np.float32) / np.float32(255.0)

    def sample_observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` images drawn uniformly with replacement from the partition: float32 ``(n, 3, s, s)`` in [0, 1]."""
        return self.images(rng.integers(len(self.rows), size=n))

    def sample_labelled(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample_observations` with the images' attributes: float32 ``(n, 3, s, s)`` and bool ``(n, A)``."""
        index = rng.integers(len(self.rows), size=n)
        return self.images(index), self.labels.attributes[self.rows[index]]
