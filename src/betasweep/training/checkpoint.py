"""Checkpoints: one file holding everything needed to rebuild the model and resume training."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch

from betasweep.errors import DataError
from betasweep.models import ModelConfig, VAEFamily, build_model

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_state", "read_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: to a temporary file beside ``path``, fsynced, then renamed over it.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one; the data reaches
    the disk before the rename (and the rename before this returns: the folder is fsynced too), so a
    power cut cannot leave a renamed but empty file. A failed write (a full disk, a lost mount)
    removes its temporary file and raises. ``state`` must hold only tensors, numbers, strings,
    lists and dicts so that ``torch.load(weights_only=True)`` can read it back.

    Raises:
        OSError: the folder cannot be created or the file cannot be written (the temporary file removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a filesystem that cannot fsync a folder is left as is."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_state(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors (no arbitrary code runs).

    A file holding anything but tensors and plain data (a pickled object: code would run to build
    it) is refused by ``weights_only`` and reported in one line; it is never loaded another way.

    Raises:
        DataError: ``"<what> not found: <path>"``, a folder given, the file cannot be read, it is not a
            torch checkpoint, or it holds objects ``weights_only`` refuses.
    """
    import pickle

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what} file")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message advises weights_only=False: never repeated here (a file from elsewhere runs code so)
        found = re.search(r"unsupported global:? (GLOBAL )?([\w.]+)", str(error), re.IGNORECASE)
        if found:
            raise DataError(f"{path}: refused: it holds a {found.group(2)} object, not only tensors and plain "
                            f"data (a {what} must load with weights_only=True)") from None
        raise DataError(f"{path}: not a readable {what} (not a torch file of tensors and plain data)") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    except Exception as error:  # torch raises zip/runtime errors for foreign files
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{path}: not a readable {what} ({type(error).__name__}: {first})") from None


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` (no arbitrary code runs).

    Raises:
        DataError: the file is missing or is not a betasweep checkpoint.
    """
    state = load_state(path, map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model_config" not in state:
        raise DataError(f"{path}: not a betasweep checkpoint (expected format {CHECKPOINT_FORMAT} with a model_config)")
    return state


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[VAEFamily, dict[str, Any]]:
    """Rebuild the model of any family from the checkpoint alone.

    ``model_config["model"]`` names the family (:func:`~betasweep.models.build_model`); checkpoints
    written before families existed have no such field and load as ``beta_vae``.

    Returns:
        ``(model, state)``: the model in eval mode with its weights, and the whole
        checkpoint dict (``model_config``, ``train_config``, ``data``, ``step``, ``samples_seen``,
        ``metrics``, ``history``, ...).

    Raises:
        DataError: see :func:`read_checkpoint`.
    """
    state = read_checkpoint(path, map_location)
    known = {f for f in ModelConfig.__dataclass_fields__}
    unknown = sorted(set(state["model_config"]) - known)
    if unknown:
        raise DataError(f"{path}: model_config field {unknown[0]!r} is unknown to this version of betasweep")
    model = build_model(ModelConfig(**state["model_config"]))
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as error:  # weights of another architecture than this version builds
        raise DataError(f"{path}: its weights do not fit the {model.config.model} this version builds "
                        f"({str(error).splitlines()[0]})") from None
    model.to(map_location).eval()
    return model, state
