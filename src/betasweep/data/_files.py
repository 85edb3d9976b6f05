"""Lazy reading of the ground-truth datasets' files: rows read on demand, labels streamed in chunks.

Nothing here holds a file's images in memory. Images are read with positional reads (``os.pread``)
of just the rows asked for, into the output array: a process's resident memory grows by what the
caller keeps, never by the file's size. (Memory-mapping was measured and dropped: on Linux a read
fault maps the whole large folio around the touched page, so random access to a freshly written
3 GB cache raised RSS by about 50x the bytes touched.)

- :class:`RowFile`: fixed-size rows at a byte offset of a file (an ``.npy`` array's data, an
  uncompressed ``.npz`` member in place, a contiguous HDF5 dataset, a NORB binary matrix).
- :class:`NpzMember`: one array of an ``.npz`` (a zip of ``.npy`` files, as written by ``np.savez``
  and ``np.savez_compressed``): its header without reading its data, its rows in chunks, and a
  :class:`RowFile` on it: in place when the member is stored, else on a one-off uncompressed
  ``.npy`` copy in the cache folder (stream-decompressed in 1 MB pieces, written to a temporary
  name and renamed, removed on any error).
- :func:`grid_rows`: the lookup from a complete factor grid's row-major index to the file's row.
- :func:`fixed_nuisance_rng`: the nuisance of an image when no rng is passed (a fixed function of
  its grid index), for datasets whose images are not a function of the factors alone.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from betasweep.errors import DataError

__all__ = ["NpzMember", "RowFile", "cache_dir", "fixed_nuisance_rng", "grid_rows", "human_bytes", "open_zip"]

_CHUNK_BYTES = 1 << 20  # pieces of decompression and label streaming: bounds their memory to ~1 MB
_NUISANCE_SALT = 0x5EED_DA7A  # seeds fixed_nuisance_rng; a constant so every run sees the same nuisance


def cache_dir(directory: str | os.PathLike | None = None) -> Path:
    """``directory``, else ``$BETASWEEP_CACHE``, else ``~/.cache/betasweep`` (as CelebA's image cache)."""
    if directory is not None:
        return Path(directory).expanduser()
    return Path(os.environ.get("BETASWEEP_CACHE") or Path.home() / ".cache" / "betasweep").expanduser()


def human_bytes(n: int) -> str:
    """``n`` bytes as ``'3.02 GB'`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError


class RowFile:
    """Fixed-size rows of a file, read on demand.

    Row ``i`` is the ``row_bytes`` bytes at ``offset + i * stride`` (``stride`` defaults to
    ``row_bytes``), viewed as ``dtype`` with shape ``row_shape``. The file is opened at the first
    read (and again in a forked child) and never mapped.

    Args:
        path: the file.
        offset: byte offset of row 0.
        num_rows: rows in the file.
        row_shape: shape of one row, e.g. ``(64, 64)``.
        dtype: the rows' dtype (little-endian as stored).
        stride: bytes from one row to the next (NORB's left-camera images: ``2 * 96 * 96``).
    """

    def __init__(self, path: str | os.PathLike, offset: int, num_rows: int, row_shape: tuple[int, ...],
                 dtype=np.uint8, stride: int | None = None):
        self.path = Path(path)
        self.offset = int(offset)
        self.num_rows = int(num_rows)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self.stride = self.row_bytes if stride is None else int(stride)
        self._fd: int | None = None
        self._pid: int | None = None

    def __getstate__(self):
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self):
        self.close()

    def close(self, _getpid=os.getpid, _close=os.close) -> None:
        # The os functions are bound at definition: __del__ may run at interpreter exit, after os is torn down.
        if self._fd is not None and self._pid == _getpid():
            try:
                _close(self._fd)
            except OSError:
                pass
        self._fd = None

    @property
    def end(self) -> int:
        """The byte just after the last row: the file must be at least this long."""
        return self.offset + (self.num_rows - 1) * self.stride + self.row_bytes if self.num_rows else self.offset

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (int, any order, repeats allowed): ``dtype`` array ``(n, *row_shape)``.

        Each distinct row is read once; runs of consecutive rows in one read when rows are contiguous.

        Raises:
            DataError: a row is out of range or the file ends early (truncated).
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise DataError(f"{self.path}: row out of range [0, {self.num_rows})")
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty((len(unique), *self.row_shape), dtype=self.dtype)
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        fd = self._descriptor()
        if self.stride == self.row_bytes and len(unique):
            # Runs of consecutive rows: one read each.
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            starts = np.concatenate([[0], breaks])
            stops = np.concatenate([breaks, [len(unique)]])
            spans = zip(starts.tolist(), stops.tolist())
        else:
            spans = ((i, i + 1) for i in range(len(unique)))
        for start, stop in spans:
            self._read_into(fd, buffer[start * self.row_bytes: stop * self.row_bytes],
                            self.offset + int(unique[start]) * self.stride)
        return out if len(unique) == len(rows) and np.array_equal(unique, rows) else out[inverse]

    def _read_into(self, fd: int, view: memoryview, position: int) -> None:
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], position + done)
            if got == 0:
                raise DataError(f"{self.path}: file ends at byte {position + done}, expected at least "
                                f"{self.end} bytes (truncated?)")
            done += got


class NpzMember:
    """One array ``key`` of an ``.npz`` file, read without loading it.

    Args:
        path: the ``.npz``.
        key: the array's name (the member ``key.npy``).
        zf: an open :class:`zipfile.ZipFile` of ``path`` (to read the header).

    Attributes:
        shape, dtype: of the array, from its ``.npy`` header.
        compressed: whether the member is deflated (``np.savez_compressed``) rather than stored.

    Raises:
        DataError: the member is missing, not an ``.npy``, Fortran-ordered or of object dtype.
    """

    def __init__(self, path: Path, key: str, zf: zipfile.ZipFile):
        self.path, self.key = Path(path), key
        try:
            self.info = zf.getinfo(f"{key}.npy")
        except KeyError:
            raise DataError(f"{path}: missing key {key!r}") from None
        self.compressed = self.info.compress_type != zipfile.ZIP_STORED
        try:
            with zf.open(self.info) as f:
                self.shape, fortran, self.dtype, self.header_bytes = _read_npy_header(f)
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as error:
            raise DataError(f"{path}: member {key}.npy is not a readable .npy array ({error})") from None
        if fortran or self.dtype.hasobject:
            raise DataError(f"{path}: {key} must be a C-ordered numeric array, "
                            f"got {'Fortran order' if fortran else 'object dtype'}")
        if self.info.file_size != self.header_bytes + int(np.prod(self.shape)) * self.dtype.itemsize:
            raise DataError(f"{path}: {key}.npy holds {self.info.file_size} bytes, its header says "
                            f"{self.header_bytes + int(np.prod(self.shape)) * self.dtype.itemsize} (truncated?)")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def chunks(self, rows_per_chunk: int | None = None) -> Iterator[np.ndarray]:
        """The array's rows in order, a chunk at a time (about 1 MB each unless ``rows_per_chunk``).

        Raises:
            DataError: the member's data is corrupt or cut short.
        """
        row_shape = self.shape[1:]
        row_bytes = max(1, int(np.prod(row_shape)) * self.dtype.itemsize)
        step = rows_per_chunk or max(1, _CHUNK_BYTES // row_bytes)
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.info) as f:
                f.read(self.header_bytes)
                for start in range(0, self.shape[0], step):
                    n = min(step, self.shape[0] - start)
                    data = f.read(n * row_bytes)
                    if len(data) != n * row_bytes:
                        raise EOFError(f"{self.key}.npy ends after row {start + len(data) // row_bytes}")
                    yield np.frombuffer(data, dtype=self.dtype).reshape(n, *row_shape)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DataError(f"{self.path}: {self.key} cannot be read ({error}; truncated or corrupt file?)") from None

    def cache_path(self, directory: str | os.PathLike | None = None) -> Path:
        """Where the uncompressed copy of a compressed member lives: named by the file's stem, the
        member and its CRC-32 and size, so a changed file never reuses another's copy."""
        return cache_dir(directory) / f"{self.path.stem}-{self.key}-{self.info.CRC:08x}-{self.info.file_size}.npy"

    def row_file(self, directory: str | os.PathLike | None = None, *, build: bool = True) -> RowFile | None:
        """A :class:`RowFile` of the array's rows.

        A stored member is read in place (its data offset in the zip). A compressed one is read from
        its uncompressed copy (:meth:`cache_path`), written first when missing and ``build`` (else
        None is returned).

        Raises:
            DataError: the member is corrupt or cut short (no copy is left behind).
        """
        if not self.compressed:
            return RowFile(self.path, self._data_offset() + self.header_bytes, self.shape[0], self.shape[1:], self.dtype)
        cached = self.cache_path(directory)
        if not (cached.is_file() and cached.stat().st_size == self.info.file_size):
            if not build:
                return None
            self._decompress_to(cached)
        return RowFile(cached, self.header_bytes, self.shape[0], self.shape[1:], self.dtype)

    def _data_offset(self) -> int:
        """Offset of the stored member's bytes in the zip: after its local file header."""
        with open(self.path, "rb") as f:
            f.seek(self.info.header_offset)
            header = f.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise DataError(f"{self.path}: bad local header of {self.key}.npy (corrupt zip)")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        return self.info.header_offset + 30 + name_length + extra_length

    def _decompress_to(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.info) as source, open(tmp, "wb") as sink:
                while piece := source.read(_CHUNK_BYTES):  # zipfile checks the CRC at the end
                    sink.write(piece)
            if tmp.stat().st_size != self.info.file_size:
                raise EOFError(f"{self.key}.npy decompressed to {tmp.stat().st_size} bytes, expected {self.info.file_size}")
            os.replace(tmp, out)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise DataError(f"{self.path}: {self.key} cannot be decompressed ({error}; truncated or corrupt file?)") from None
        finally:
            if tmp.exists():
                tmp.unlink()


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header_bytes)`` of an ``.npy`` stream positioned at its start."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    # read_magic and the header reader consumed exactly magic, version, length field and header.
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype), int(f.tell())


def open_zip(path: Path, what: str) -> zipfile.ZipFile:
    """``path`` as a zip (an ``.npz``), or DataError naming it and that ``what``'s .npz was expected."""
    if not path.is_file():
        raise DataError(f"{what} file not found: {path} (expected the {what} .npz file)")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error}; expected a complete zip archive of .npy arrays: "
                        f"truncated?)") from None


def grid_rows(flat_chunks: Iterator[np.ndarray], sizes: tuple[int, ...], num_rows: int, path: Path) -> np.ndarray | None:
    """The file row of each grid point, from the rows' grid indices streamed a chunk at a time.

    Args:
        flat_chunks: int arrays, the row-major grid index of each file row, in file order.
        sizes: the grid's factor sizes.
        num_rows: rows in the file.
        path: named in the error.

    Returns:
        int32 (int64 past 2**31 points) ``(prod(sizes),)``; or None when row ``i`` is grid point
        ``i`` (the official files' row-major order), in which case nothing is stored.

    Raises:
        DataError: the rows are not every grid point exactly once.
    """
    num_grid = int(np.prod(sizes))
    dtype = np.int32 if num_grid < 2**31 else np.int64
    row_of_flat = None
    start = 0
    for flat in flat_chunks:
        n = len(flat)
        if row_of_flat is None and np.array_equal(flat, np.arange(start, start + n)):
            start += n
            continue
        if row_of_flat is None:  # the first row out of row-major order: from here on, a table
            row_of_flat = np.full(num_grid, -1, dtype=dtype)
            row_of_flat[: min(start, num_grid)] = np.arange(min(start, num_grid), dtype=dtype)
        row_of_flat[flat] = np.arange(start, start + n, dtype=dtype)
        start += n
    complete = num_rows == num_grid and (row_of_flat is None or not np.any(row_of_flat < 0))
    if not complete:
        present = min(num_rows, num_grid) if row_of_flat is None else int((row_of_flat >= 0).sum())
        raise DataError(
            f"{path}: factor classes are not a complete grid: {present} distinct of "
            f"{num_grid} combinations ({'x'.join(map(str, sizes))}) over {num_rows} rows; "
            "expected every combination exactly once"
        )
    return row_of_flat


def fixed_nuisance_rng(flat_index: int) -> np.random.Generator:
    """The generator of grid point ``flat_index``'s nuisance when no rng is given: the same image for
    the same factors in every call and run (what a cache of codes by grid index, as the metric
    panel's, needs)."""
    return np.random.default_rng([_NUISANCE_SALT, int(flat_index)])
