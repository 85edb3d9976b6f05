"""Links into the MLflow UI: the training view of a local store's `mlflow ui` or of a tracking server."""

from __future__ import annotations

from betasweep.tracking import artifact_link, experiment_link, run_link, ui_base, ui_command


def test_a_local_store_links_to_mlflow_ui_and_says_how_to_start_it():
    assert ui_base("sqlite:///mlflow.db") == "http://127.0.0.1:5000"
    assert ui_command("sqlite:///mlflow.db") == "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    assert ui_command("sqlite:////data/my runs/mlflow.db") == "mlflow ui --backend-store-uri 'sqlite:////data/my runs/mlflow.db'"
    assert experiment_link("sqlite:///mlflow.db", "3") == "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"


def test_a_server_links_to_itself_and_needs_no_command():
    uri = "http://mlflow.example:5000/"
    assert ui_command(uri) is None
    assert run_link(uri, "7", "ab12") == "http://mlflow.example:5000/#/experiments/7/runs/ab12?workflowType=machine_learning"
    assert (artifact_link(uri, "7", "ab12", "figures/traversal.png")
            == "http://mlflow.example:5000/#/experiments/7/runs/ab12/artifacts/figures/traversal.png"
               "?workflowType=machine_learning")
