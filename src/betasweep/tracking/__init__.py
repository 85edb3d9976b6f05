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

__all__ = ["DEFAULT_TRACKING_URI", "Tracker", "TrackingError", "TrialRun", "check_reachable", "download_checkpoint", "flatten_metrics"]
