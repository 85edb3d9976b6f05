"""The model half of the Python API: :func:`load_model` reads a checkpoint (a file, or a logged one), :func:`load_data`
its dataset, :func:`evaluate` scores it with the metric panel; what ``betasweep evaluate`` and ``traverse`` use.

Light on purpose: a checkpoint file is read without optuna or mlflow (``betasweep evaluate FILE`` starts in a
fraction of the time); mlflow is imported only to fetch a ``runs:/`` or ``models:/`` URI.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from betasweep.data import load_dataset
from betasweep.errors import ConfigError
from betasweep.metrics import DEFAULT_PANEL, PANEL_METRICS, MetricConfig, evaluate_model
from betasweep.scoring import conditional_metrics
from betasweep.training import load_checkpoint, resolve_device

__all__ = ["LoadedModel", "evaluate", "load_data", "load_model"]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
"""Where ``runs:/`` and ``models:/`` URIs are looked up by default (:data:`betasweep.tracking.DEFAULT_TRACKING_URI`)."""


@dataclass
class LoadedModel:
    """A model read from a checkpoint by :func:`load_model`.

    Attributes:
        model: the β-VAE (a ``torch.nn.Module`` in eval mode, on the best device): ``model.encode(x)`` gives
            mu, logvar of shape (batch, latent_dim) for images x of shape (batch, channels, 64, 64), float32 in [0, 1].
        state: the checkpoint's dict: ``model_config``, ``train_config`` (``beta``, ``batch_size``, ...), ``step``
            (optimiser steps), ``data`` (dataset name, recorded path, subsample, metric config).
        path: the local checkpoint file (downloaded for ``runs:/`` and ``models:/`` URIs).
    """

    model: Any
    state: dict[str, Any]
    path: Path

    @property
    def dataset(self) -> str:
        """The name of the dataset it was trained on (``shapes``, ``dsprites``, ...)."""
        return (self.state.get("data") or {}).get("dataset", "shapes")

    @property
    def recorded_data_path(self) -> str | None:
        """The data path the checkpoint records (read only when the caller confirms it: :func:`load_data`)."""
        return (self.state.get("data") or {}).get("data_path")


def load_model(uri: str | os.PathLike, *, tracking_uri: str = DEFAULT_TRACKING_URI) -> LoadedModel:
    """Read a checkpoint: a file, ``runs:/RUN_ID/checkpoint`` (e.g. :attr:`BestTrial.checkpoint`) or
    ``models:/betasweep-STUDY@best`` (registered by :func:`report`). Only tensors and plain containers are
    unpickled (``torch.load(weights_only=True)``).

    Raises:
        DataError: the file is missing or not a readable checkpoint.
        TrackingError: the URI cannot be fetched from ``tracking_uri``.

    >>> import betasweep as bs
    >>> loaded = bs.load_model(result.best.checkpoint)  # doctest: +SKIP
    >>> loaded.model.config.latent_dim  # doctest: +SKIP
    10
    """
    path = str(uri)
    if path.startswith(("runs:/", "models:/")):
        from betasweep.tracking import download_checkpoint  # mlflow only for a logged checkpoint: start-up time

        path = download_checkpoint(path, tracking_uri, tempfile.mkdtemp(prefix="betasweep-checkpoint-"))
    model, state = load_checkpoint(path, map_location=resolve_device("auto"))
    return LoadedModel(model=model, state=state, path=Path(path))


def load_data(loaded: LoadedModel, data_path: str | os.PathLike | None = None, *, data_from_checkpoint: bool = False):
    """The dataset of a loaded checkpoint: at ``data_path``, or at the path the checkpoint records when
    ``data_from_checkpoint`` (a checkpoint made elsewhere may name any file). A procedural dataset needs neither.

    Raises:
        ConfigError: the checkpoint records a path and neither was given.
        DataError: the data file is missing or malformed.

    >>> import betasweep as bs
    >>> loaded = bs.load_model("models:/betasweep-dsprites-beta@best")  # doctest: +SKIP
    >>> data = bs.load_data(loaded, "../shared/data/dsprites.npz")  # doctest: +SKIP
    >>> bs.evaluate(loaded, data, panel="beta_vae,mig")["mig"]  # doctest: +SKIP
    """
    path = data_path
    if path is None and loaded.recorded_data_path:
        if not data_from_checkpoint:
            raise ConfigError(f"{loaded.path} records its {loaded.dataset} data at {loaded.recorded_data_path}: pass "
                              "data_path (or data_from_checkpoint=True to read the recorded path)")
        path = loaded.recorded_data_path
    return load_dataset(loaded.dataset, path, subsample=(loaded.state.get("data") or {}).get("subsample"))


def evaluate(model: LoadedModel | Any, data=None, *, panel: str | tuple[str, ...] | None = None, metric_seed: int = 0,
             num_train: int = 10_000, num_eval: int = 5_000, metric_batch_size: int = 64,
             num_stat_samples: int = 4096) -> dict[str, Any]:
    """Score a model: the metric panel, Higgins train/eval accuracy, recon loss, KL, KL per dimension, active units;
    as ``betasweep evaluate``.

    Args:
        model: a :class:`LoadedModel` (from :func:`load_model`) or a β-VAE module.
        data: the dataset (``betasweep.data.load_dataset``); None: the checkpoint's own, when it needs no
            path (procedural shapes); see :func:`load_data` otherwise.
        panel: metric names (``"all"``, a comma-separated str or a tuple; beta_vae, factor_vae, mig, sap, dci, ...);
            default the panel stored with the checkpoint, else beta_vae, factor_vae, mig, sap.
        metric_seed: seed of the metrics' factor pairs; num_train, num_eval: the metrics' sample counts.

    Returns:
        ``{metric: value}``; accuracies and scores in [0, 1], recon_loss and kl in nats per image,
        ``kl_per_dim`` a list of latent_dim floats; a cvae adds its leakage AUCs.

    Raises:
        ConfigError: an unknown metric name.

    >>> import betasweep as bs
    >>> loaded = bs.load_model("run/checkpoint.pt")  # doctest: +SKIP
    >>> bs.evaluate(loaded, num_train=500, num_eval=250)["beta_vae"]  # doctest: +SKIP
    0.84
    """
    state = model.state if isinstance(model, LoadedModel) else {}
    if data is None:
        if not isinstance(model, LoadedModel):
            raise ConfigError("data: expected a dataset (betasweep.data.load_dataset) for a model without a checkpoint")
        data = load_data(model)
    module = model.model if isinstance(model, LoadedModel) else model
    if panel is None:
        stored = ((state.get("data") or {}).get("metric_config") or {}).get("panel")
        names = tuple(stored) if stored else DEFAULT_PANEL
    elif isinstance(panel, str):
        names = PANEL_METRICS if panel.strip() == "all" else tuple(n.strip() for n in panel.split(",") if n.strip())
    else:
        names = tuple(panel)
    config = MetricConfig(seed=metric_seed, batch_size=metric_batch_size, num_train=num_train, num_eval=num_eval,
                          panel=names, num_stat_samples=num_stat_samples)
    result = evaluate_model(module, data, config)
    if getattr(module, "conditional", False):  # cvae: leakage (ROC AUC of z per conditioned label) on held-out data
        result.update(conditional_metrics(module, data, None, np.random.default_rng(metric_seed)))
    return result
