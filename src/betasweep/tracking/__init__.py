"""Everything MLflow: runs, params and metrics, artifacts, the model registry. The only package that imports mlflow."""
