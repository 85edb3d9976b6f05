"""betasweep: choose β (and latent size, width, batch size) for a β-VAE by a disentanglement metric.

The Python API (:mod:`betasweep.api`) is re-exported here, imported on first use (PEP 562) so that
``import betasweep`` stays light::

    import betasweep as bs
    result = bs.sweep(overrides={"n_trials": 2}, jobs=1)
    print("\\n".join(result.verdict))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

API_NAMES = ("BestTrial", "CreatedStudy", "LoadedModel", "RaceOutcome", "Report", "SweepResult", "WorkerResult",
             "create_study", "evaluate", "load_data", "load_model", "race", "report", "resolve_spec", "sweep", "work")
"""The names of :mod:`betasweep.api` that ``betasweep.NAME`` gives."""

__all__ = ["__version__", *API_NAMES]


def __getattr__(name: str) -> Any:
    """``betasweep.NAME`` for a name of :mod:`betasweep.api`, imported on first use."""
    if name in API_NAMES:
        return getattr(importlib.import_module("betasweep.api"), name)
    raise AttributeError(f"module 'betasweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API_NAMES])
