"""Shared pieces of ``benchmarks/run.py``: the run context, the record format, interleaved timing.

Every figure is a ratio against a baseline measured in the same process, with the repetitions of
ours and of the baseline alternated (ours first on even repetitions, the baseline first on odd
ones) and summarised by their medians, so that load from other jobs on a shared machine hits both
sides alike.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DSPRITES = REPO.parent / "shared" / "data" / "dsprites" / "dsprites_downsampled.npz"

REQUIRED_KEYS = ("name", "ours", "baseline", "unit", "ratio", "target", "met")


class BenchmarkSkipped(Exception):
    """A benchmark cannot run here (e.g. its data file is missing); the message says why."""


@dataclass
class Context:
    """What every benchmark gets: the mode, the data paths and the device."""

    quick: bool
    dsprites_path: Path
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    _dsprites: Any = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    def dsprites(self):
        """The real dSprites grid (loaded once per run)."""
        if self._dsprites is None:
            if not self.dsprites_path.is_file():
                raise BenchmarkSkipped(f"real dSprites not found at {self.dsprites_path} (pass --dsprites PATH)")
            from betasweep.data import DSprites

            self._dsprites = DSprites(self.dsprites_path)
        return self._dsprites

    def sync(self) -> None:
        """Wait for queued CUDA work before reading a clock (no-op on the CPU)."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


def record(name: str, *, ours: float, baseline: float, unit: str, ratio: float, target: str, met: bool,
           ctx: Context, **extra: Any) -> dict[str, Any]:
    """One output line: the required keys first, then the run's context, then ``extra``."""
    return {
        "name": name,
        "ours": ours,
        "baseline": baseline,
        "unit": unit,
        "ratio": ratio,
        "target": target,
        "met": bool(met),
        "mode": ctx.mode,
        "device": ctx.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        **extra,
    }


def interleaved(ours: Callable[[int], float], baseline: Callable[[int], float], reps: int) -> tuple[list[float], list[float]]:
    """Run ``ours(rep)`` and ``baseline(rep)`` ``reps`` times each, alternating which goes first.

    Each callable returns one measurement (e.g. images/s or seconds). Returns both lists in
    repetition order.
    """
    ours_values, baseline_values = [], []
    for rep in range(reps):
        if rep % 2 == 0:
            ours_values.append(ours(rep))
            baseline_values.append(baseline(rep))
        else:
            baseline_values.append(baseline(rep))
            ours_values.append(ours(rep))
    return ours_values, baseline_values


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def rounded(values: list[float], digits: int = 4) -> list[float]:
    return [round(v, digits) for v in values]


def is_positive_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


class Stopwatch:
    """``with Stopwatch(ctx) as sw: ...``; ``sw.seconds`` afterwards (CUDA synchronised at both ends)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.seconds = float("nan")

    def __enter__(self):
        self.ctx.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ctx.sync()
        self.seconds = time.perf_counter() - self._start
        return False
