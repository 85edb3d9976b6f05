"""Exceptions shared across betasweep.

Every error a user can cause by passing bad input derives from :class:`BetasweepError`; the
command line turns these into a one-line message and exit code 2 instead of a traceback.
"""

from __future__ import annotations

__all__ = ["BetasweepError", "ConfigError", "DataError", "DivergenceError", "in_chain"]


class BetasweepError(Exception):
    """Base class of the errors betasweep raises on bad input or a failed run."""


class ConfigError(BetasweepError, ValueError):
    """A configuration value (CLI option, spec key, config field) is out of its allowed range."""


class DataError(BetasweepError, ValueError):
    """A dataset file is missing, malformed or not what the loader expects."""


class DivergenceError(BetasweepError, FloatingPointError):
    """Training produced a non-finite loss.

    Attributes:
        step: the optimiser step (0-based) whose loss was not finite.
        loss: the offending loss value (``nan``, ``inf`` or ``-inf``).
    """

    def __init__(self, step: int, loss: float):
        self.step = step
        self.loss = loss
        super().__init__(f"training diverged: loss is {loss} at step {step}")


def in_chain(error: BaseException | None, kinds: type[BaseException] | tuple[type[BaseException], ...]):
    """The first exception of type ``kinds`` in ``error``'s chain (itself, its ``__cause__`` or ``__context__``),
    or None. A ``raise ... from None`` ends the chain (its context is hidden on purpose)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            return error
        seen.add(id(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None
