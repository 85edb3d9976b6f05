"""What the training loop may do to go faster on this machine: bfloat16 autocast, threads, device data.

Each is a :class:`~betasweep.training.TrainConfig` field; this module only answers whether the
machine supports it and applies the setting for the length of a run.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Iterator

import torch

__all__ = ["cpu_has_bf16", "autocast_dtype", "intra_op_threads", "wants_device_data", "has_factor_grid"]

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 processors with native bfloat16 arithmetic (oneDNN uses them for bf16 convolutions)."""


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively: AVX-512 BF16 or AMX (``/proc/cpuinfo`` flags).

    Without them bfloat16 on the CPU is emulated and slower than float32, so ``cpu_bf16=None`` stays off.
    Only x86 Linux is recognised (elsewhere: False). ``torch.backends.cpu.get_cpu_capability()``
    says ``AVX512`` also for processors without BF16, so it is checked first and the flags decide.
    """
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in BF16_FLAGS)


def autocast_dtype(config, device: torch.device) -> torch.dtype | None:
    """``torch.bfloat16`` when ``config`` autocasts on ``device`` (``bf16`` on CUDA, ``cpu_bf16`` on the CPU), else None."""
    if device.type == "cuda":
        return torch.bfloat16 if config.bf16 else None
    if device.type == "cpu":
        wanted = cpu_has_bf16() if config.cpu_bf16 is None else config.cpu_bf16
        return torch.bfloat16 if wanted else None
    return None


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, restored after (0: leave it)."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def has_factor_grid(data) -> bool:
    """Whether ``data`` is ground-truth data with a finite factor grid (what :class:`DeviceImages` needs)."""
    base = getattr(data, "data", data)  # WithoutPoints wraps the full dataset
    return all(hasattr(base, name) for name in ("factor_sizes", "factors_from_flat_index", "flat_index",
                                                 "images_from_factors")) and hasattr(data, "sample_factors")


def wants_device_data(setting: bool | None, device: torch.device, data) -> bool:
    """``data_on_device``: True/False as given; None: on CUDA when ``data`` has a factor grid."""
    if setting is None:
        return device.type == "cuda" and has_factor_grid(data)
    return bool(setting)
