"""The templates adapted to another user's model: a regression model on scikit-learn's bundled
diabetes data, scored by the batch-inference template with ``dag.test()`` against a real
``mlflow server``, in local execution mode; and the ingest template as shipped, on what a trigger
from the UI meets (an empty landing folder, unlabelled data, a YAML suite)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import asset_event, task_tries

MODEL = "diabetes"


def _patients():
    """The bundled diabetes data (442 patients, ten features, a numeric target) with an id column."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.insert(0, "patient_id", [f"P{i:04d}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def registered_regressor(mlflow_server) -> dict:
    """A ridge regression of disease progression, registered as ``diabetes@champion``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    from tests._support.churn_sample import mlflow_uris

    frame = _patients()
    features = frame.drop(columns=["patient_id", "target"])
    model = Ridge(alpha=0.1).fit(features, frame["target"])
    with mlflow_uris(mlflow_server.url):
        mlflow.set_experiment("diabetes-training")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=MODEL,
                signature=infer_signature(features, model.predict(features)),
                pip_requirements=["mlflow", "scikit-learn"],
                serialization_format="cloudpickle",
            )
    version = str(info.registered_model_version)
    MlflowClient(tracking_uri=mlflow_server.url).set_registered_model_alias(MODEL, "champion", version)
    return {"version": version, "model": model, "features": list(features.columns)}


@pytest.mark.parametrize("shards", [2, 1])
def test_batch_inference_template_adapted_to_a_regression_model_predicts_and_publishes_without_review(
    registered_regressor, mlflow_connection, shards
):
    """With one shard too: the route step then reads the single mapped result as a list of one."""
    import os
    import shutil

    from tests._support.airflow_records import dag_run_outcomes
    from tests.dags import adapted_template_dags

    assert adapted_template_dags.SHARDS == 2
    adapted = {2: "diabetes_batch_inference", 1: "diabetes_batch_inference_one_shard"}[shards]

    patients = _patients()
    # The adapted DAG's data root, as its file fixes it at parse time (tests/dags/adapted_template_dags.py).
    root = Path(os.environ["AI_TEMPLATES_DATA_ROOT"]) / "adapted-diabetes"
    shutil.rmtree(root, ignore_errors=True)
    scoring = root / "scoring" / "patients"
    scoring.mkdir(parents=True)
    unlabelled = patients.drop(columns=["target"])
    for shard in range(shards):  # one file per shard: files are the unit shards split
        unlabelled.iloc[shard::shards].to_parquet(scoring / f"patients-{shard}.parquet", index=False)

    dag = getattr(adapted_template_dags, adapted)()
    dag_run = dag.test()

    assert dag_run.state == "success"
    states = {outcome.task_id: outcome.state for outcome in dag_run_outcomes(dag.dag_id, dag_run.run_id)}
    assert states["route_low_confidence"] == "success"
    assert states["review_low_confidence"] == "skipped"  # a regression has no confidence to review
    assert states["publish"] == "success"
    assert task_tries(dag_run.run_id, "score") == [1] * shards

    # Predictions: every patient once, equal to the model's own predictions, no confidence column.
    folder = root / "predictions" / dag_run.run_id.replace(":", "-").replace("+", "-")
    parts = sorted(folder.glob("part-*.parquet"))
    assert len(parts) == shards
    predictions = pd.concat([pq.read_table(part).to_pandas() for part in parts], ignore_index=True)
    assert "confidence" not in predictions.columns
    assert len(predictions) == len(patients) and predictions["patient_id"].is_unique
    merged = patients.merge(predictions, on="patient_id")
    expected = registered_regressor["model"].predict(merged[registered_regressor["features"]])
    assert (abs(merged["prediction"].to_numpy() - expected) < 1e-6).all()
    assert not (folder / "review").exists()

    # Published: the predictions Asset names the regression model's version and carries no review.
    _, extra = asset_event("diabetes_predictions", dag_run.run_id)
    assert extra["model_name"] == MODEL and extra["model_version"] == registered_regressor["version"]
    assert extra["rows"] == len(patients)
    assert extra["low_confidence_rows"] == 0 and extra["review"] == "none"


# --- the ingest template as shipped: what a trigger from the UI with its defaults meets ------------


def test_ingest_of_an_empty_landing_folder_fails_once_in_one_line_saying_how_to_land_files(
    mlflow_connection, tmp_path, capfd
):
    from dag_templates.churn_ingest import dag

    landing = tmp_path / "landing"
    landing.mkdir()
    dag_run = dag.test(run_conf={"landing": str(landing)})

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id, "ingest") == [1]  # retries=2, none used
    out = capfd.readouterr().out
    message = f"no .parquet or .csv files in the landing folder {landing}: land files there"
    (line,) = [line for line in out.splitlines() if message in line]
    assert f"churn_sample write {landing}" in line and "trigger churn_ingest again" in line


def test_ingest_of_unlabelled_training_data_fails_validation_naming_the_label(
    mlflow_connection, tmp_path, capfd
):
    from dag_templates.churn_ingest import dag
    from tests._support.churn_sample import write_customers

    landing = tmp_path / "landing"
    write_customers(str(landing), 500, seed=4, with_label=False)
    dag_run = dag.test(run_conf={"landing": str(landing)})

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id, "validate") == [1]
    assert "names column(s) 'churned' not in the data" in capfd.readouterr().out


def test_ingest_with_a_yaml_suite_and_for_training_off_accepts_unlabelled_data(mlflow_connection, tmp_path):
    import json

    import yaml

    from dag_templates.churn_ingest import SUITE, dag
    from tests._support.churn_sample import write_customers

    suite = tmp_path / "customers.yaml"
    suite.write_text(yaml.safe_dump(json.loads(Path(SUITE).read_text())))
    landing = tmp_path / "landing"
    write_customers(str(landing), 500, seed=4, with_label=False)
    dag_run = dag.test(run_conf={"landing": str(landing), "suite": str(suite), "for_training": False})

    assert dag_run.state == "success"
