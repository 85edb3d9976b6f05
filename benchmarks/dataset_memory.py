"""dataset_memory: resident memory of opening a full-size dataset file and touching N of its images.

    python benchmarks/run.py --only dataset_memory            # full size: ~9 GB of disk for a few minutes
    python benchmarks/dataset_memory.py --measure NAME PATH N  # one measurement, in this process (JSON)

Generates, in a temporary folder (removed afterwards, also on failure or Ctrl-C):

- a dSprites ``.npz`` of the official size and layout (737,280 images, the full 3x6x40x32x32 grid
  rendered by the procedural ``Shapes`` simulator, written with zlib deflate as
  ``np.savez_compressed`` does, plus ``latents_classes``, ``latents_values`` and ``metadata``);
- a 3dshapes ``.h5`` of the official size and layout (``images`` uint8 (480000, 64, 64, 3) as one
  contiguous dataset, ``labels`` float64 (480000, 6) with the official values, row-major).

Each is then opened in a fresh Python process (imports done first, then the peak-RSS counter reset
through ``/proc/self/clear_refs``), N images are touched through ``images_from_factors`` in batches
of 256 random factor rows, and the process reports its peak RSS growth (``VmHWM`` minus ``VmRSS``
before opening). The dSprites file is opened twice: the first open stream-decompresses ``imgs``
into its uncompressed cache copy (3.0 GB on disk), the second finds it. Ours: peak RSS growth;
baseline: the image bytes touched (N x bytes per image in the file); target: ratio <= 1.5. The old
eager dSprites loader held the whole 3.0 GB of ``imgs`` (``np.load(...)["imgs"]``) by construction;
it is not run here, to spare the shared machine 3 GB of RAM.

Quick mode (``--quick``): the same (N = 10,000) on 1/16-size files (46,080 and 32,000 images), about 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DSPRITES_SIZES = (3, 6, 40, 32, 32)
SHAPES3D_VALUES = (np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10), np.linspace(0, 0.9, 10),
                   np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15))
BATCH = 256
TOUCH = 10_000
DISK_NEEDED = 11 * 10**9  # 3.0 GB dSprites cache + 5.9 GB h5 + the npz, with room to spare


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(name: str, path: str, touch: int) -> dict:
    """Open ``path`` as ``name`` and touch ``touch`` images; peak RSS growth and timings (run in a fresh process)."""
    from betasweep.data import load_dataset
    import h5py  # noqa: F401 - imported before the baseline, as the loader would import it
    import PIL.Image  # noqa: F401

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    data = load_dataset(name, path)
    rng = np.random.default_rng(0)
    data.images_from_factors(data.sample_factors(1, rng))  # the first read (builds dSprites' cache copy)
    opened = time.perf_counter()
    open_growth = _status("VmHWM") - before
    bytes_per_image = 64 * 64 * (1 if name == "dsprites" else 3)  # uint8 in the file
    done = 1
    while done < touch:
        n = min(BATCH, touch - done)
        images = data.images_from_factors(data.sample_factors(n, rng))
        assert images.shape[0] == n
        del images
        done += n
    return {
        "name": name, "images_touched": touch, "touched_bytes": touch * bytes_per_image,
        "peak_rss_growth_bytes": _status("VmHWM") - before, "open_peak_rss_growth_bytes": open_growth,
        "open_s": round(opened - start, 2), "touch_s": round(time.perf_counter() - opened, 2),
        "grid_images": data.num_images, "layout": data.describe()["layout"],
    }


def write_dsprites(path: Path, sizes=DSPRITES_SIZES) -> None:
    """dSprites in the official layout, streamed into the zip (never the whole array in memory)."""
    from betasweep.data import Shapes

    shapes = Shapes()
    grid_n = int(np.prod(sizes))
    full = (3, 6, 40, 32, 32)
    step = tuple(f // s for f, s in zip(full, sizes))  # a coarser grid in quick mode
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("imgs.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (grid_n, 64, 64)})
            for start in range(0, grid_n, 8192):
                flat = np.arange(start, min(start + 8192, grid_n))
                factors = np.stack(np.unravel_index(flat, sizes), axis=1) * step
                f.write(shapes.images_from_factors(factors)[:, 0].astype(np.uint8).tobytes())
        grid = np.stack(np.unravel_index(np.arange(grid_n), sizes), axis=1)
        classes = np.concatenate([np.zeros((grid_n, 1), np.int64), grid], axis=1)
        for key, array in (("latents_classes", classes), ("latents_values", classes.astype(np.float64))):
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array)
        del grid, classes
        metadata = np.array({"latents_sizes": np.array((1, *sizes)),
                             "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY")}, dtype=object)
        with zf.open("metadata.npy", "w") as f:
            np.lib.format.write_array(f, metadata, allow_pickle=True)


def write_shapes3d(path: Path, n: int = 480_000) -> None:
    """3dshapes in the official layout: a contiguous uint8 images dataset written in chunks, float64 labels."""
    import h5py

    sizes = tuple(len(v) for v in SHAPES3D_VALUES)
    if n != int(np.prod(sizes)):  # quick mode: fewer orientations... keep the official first five factors
        sizes = (*sizes[:5], n // int(np.prod(sizes[:5])))
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", shape=(n, 64, 64, 3), dtype=np.uint8)
        labels = f.create_dataset("labels", shape=(n, 6), dtype=np.float64)
        pattern = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        for start in range(0, n, 10_000):
            stop = min(start + 10_000, n)
            grid = np.stack(np.unravel_index(np.arange(start, stop), sizes), axis=1)
            images[start:stop] = pattern[None] + (np.arange(start, stop) % 251).astype(np.uint8)[:, None, None, None]
            labels[start:stop] = np.stack([SHAPES3D_VALUES[i][grid[:, i]] for i in range(6)], axis=1)


def _child(name: str, path: Path, touch: int, cache: Path) -> dict:
    env = {**os.environ, "BETASWEEP_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", name, str(path), str(touch)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, tmp_root: str | None = None) -> dict:
    """Generate the files, measure in child processes, clean up; returns the figures."""
    tmp_root = tmp_root or tempfile.gettempdir()
    free = shutil.disk_usage(tmp_root).free
    needed = DISK_NEEDED // 16 if quick else DISK_NEEDED
    if free < needed:
        raise RuntimeError(f"{tmp_root}: {free / 1e9:.1f} GB free, this benchmark needs {needed / 1e9:.1f} GB")
    folder = Path(tempfile.mkdtemp(prefix="betasweep-dataset-memory-", dir=tmp_root))
    try:
        rows = []
        start = time.perf_counter()
        npz = folder / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
        write_dsprites(npz, (3, 6, 10, 16, 16) if quick else DSPRITES_SIZES)
        h5 = folder / "3dshapes.h5"
        write_shapes3d(h5, 32_000 if quick else 480_000)
        generate_s = time.perf_counter() - start
        touch = TOUCH
        cache = folder / "cache"
        for label, name, path in (("dsprites, first open (writes the cache copy)", "dsprites", npz),
                                  ("dsprites, cache present", "dsprites", npz),
                                  ("3dshapes h5", "3dshapes", h5)):
            row = _child(name, path, touch, cache)
            row["case"] = label
            row["ratio"] = round(row["peak_rss_growth_bytes"] / row["touched_bytes"], 3)
            rows.append(row)
        files = {"dsprites_npz_bytes": npz.stat().st_size, "shapes3d_h5_bytes": h5.stat().st_size,
                 "dsprites_cache_bytes": sum(p.stat().st_size for p in cache.glob("*.npy"))}
        return {"rows": rows, "files": files, "generate_s": round(generate_s, 1), "touch": touch}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_dataset_memory(ctx) -> dict:
    """Peak RSS growth / image bytes touched, full-size dSprites npz and 3dshapes h5 (see the module docstring)."""
    from _harness import record

    result = run(ctx.quick)
    worst = max(result["rows"], key=lambda row: row["ratio"])
    return record(
        "dataset_memory", ours=worst["peak_rss_growth_bytes"], baseline=worst["touched_bytes"],
        unit="bytes (peak RSS growth vs image bytes touched)", ratio=worst["ratio"], target="<= 1.5 for every case",
        met=all(row["ratio"] <= 1.5 for row in result["rows"]), ctx=ctx, worst_case=worst["case"], **result,
        ratio_desc=f"peak RSS growth of a fresh process that opens the file and touches {result['touch']} random "
                   f"images (batches of {BATCH}) / the touched images' bytes in the file; the worst of the cases",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", nargs=3, metavar=("NAME", "PATH", "N"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.measure:
        name, path, n = args.measure
        print(json.dumps(measure(name, path, int(n))))
    else:
        print(json.dumps(run(args.quick), indent=2))
