"""Everything MLflow: runs, params and metrics, artifacts, the model registry. The only package that imports mlflow."""

from betasweep.tracking.mlflow_tracker import (
    DEFAULT_TRACKING_URI,
    Tracker,
    TrackingError,
    TrackingUnavailable,
    TrialRun,
    call_with_retry,
    retry_seconds,
    check_reachable,
    download_checkpoint,
    flatten_metrics,
)
from betasweep.tracking.ui import artifact_link, experiment_link, run_link, ui_base, ui_command

__all__ = ["DEFAULT_TRACKING_URI", "Tracker", "TrackingError", "TrackingUnavailable", "call_with_retry", "retry_seconds", "TrialRun", "check_reachable", "download_checkpoint", "flatten_metrics",
           "artifact_link", "experiment_link", "run_link", "ui_base", "ui_command"]
