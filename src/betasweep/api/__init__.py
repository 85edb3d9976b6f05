"""The Python API: a sweep, its race, its report and its best model from a notebook, with one import.

>>> import betasweep as bs
>>> result = bs.sweep(overrides={"n_trials": 2}, jobs=1)  # doctest: +SKIP
>>> print("\\n".join(result.verdict))  # doctest: +SKIP

Each function does what the ``betasweep`` command of the same name does (the commands are thin shells
over these functions) and returns a result object (a dataclass) instead of printing it:

| function | command | returns |
| --- | --- | --- |
| :func:`~betasweep.api.study.sweep` | ``betasweep sweep`` | :class:`~betasweep.api.study.SweepResult` |
| :func:`~betasweep.api.study.race` | ``betasweep race`` | :class:`~betasweep.api.study.RaceOutcome` |
| :func:`~betasweep.api.study.report` | ``betasweep report`` | :class:`~betasweep.api.study.Report` |
| :func:`~betasweep.api.study.create_study` | ``betasweep study create`` | :class:`~betasweep.api.study.CreatedStudy` |
| :func:`~betasweep.api.study.work` | ``betasweep worker`` | :class:`~betasweep.api.study.WorkerResult` |
| :func:`~betasweep.api.model.load_model` | (``evaluate`` / ``traverse`` CHECKPOINT) | :class:`~betasweep.api.model.LoadedModel` |
| :func:`~betasweep.api.model.evaluate` | ``betasweep evaluate`` | ``dict`` of metrics |

Two modules: :mod:`betasweep.api.study` (optuna, mlflow) and the light :mod:`betasweep.api.model` (neither,
for a checkpoint file). Names are imported from them on first use (PEP 562), so ``import betasweep.api`` is light.
"""

from __future__ import annotations

import importlib
from typing import Any

HOMES = {
    **dict.fromkeys(("BestTrial", "CreatedStudy", "RaceOutcome", "Report", "SweepResult", "WorkerResult", "create_study",
                     "open_study", "race", "race_settings", "report", "resolve_spec", "summary", "sweep", "work"), "study"),
    **dict.fromkeys(("LoadedModel", "evaluate", "load_data", "load_model"), "model"),
}
"""Each public name of the API -> its module in :mod:`betasweep.api`."""

__all__ = sorted(HOMES)


def __getattr__(name: str) -> Any:
    """``betasweep.api.NAME``, imported from its module on first use."""
    if name in HOMES:
        return getattr(importlib.import_module(f"betasweep.api.{HOMES[name]}"), name)
    raise AttributeError(f"module 'betasweep.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *HOMES])
