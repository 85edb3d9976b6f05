"""Sweeps: the sweep spec, the Optuna objective, studies, workers and the report."""
