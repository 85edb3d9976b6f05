"""Everything MLflow: runs, params and metrics, artifacts, the model registry. The only package that imports mlflow."""

from betasweep.tracking.mlflow_tracker import (
    DEFAULT_TRACKING_URI,
    Tracker,
    TrackingError,
    TrialRun,
    check_reachable,
    download_checkpoint,
    flatten_metrics,
)
from betasweep.tracking.ui import artifact_link, experiment_link, run_link, ui_base, ui_command

__all__ = ["DEFAULT_TRACKING_URI", "Tracker", "TrackingError", "TrialRun", "check_reachable", "download_checkpoint", "flatten_metrics",
           "artifact_link", "experiment_link", "run_link", "ui_base", "ui_command"]
