"""Retraining end to end: ``RetrainModelOperator`` in real Airflow DAGs (``dag.test()``), local execution
mode, against a real ``mlflow server`` and a real S3-compatible server (moto)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.churn_sample import FEATURES, write_customers

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = 3_000


@pytest.fixture
def training_code_importable(monkeypatch):
    """The local runtime imports the training function from the repository, as a worker would from
    its DAG bundle or an installed package."""
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))


@pytest.fixture
def s3_training_data(
    monkeypatch, training_code_importable, mlflow_connection, aws_connection, s3_server, s3_bucket
):
    """Labelled customers in S3; the worker itself has no AWS credentials, only the connection."""
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    monkeypatch.setenv("AI_TEST_MODEL_NAME", "churn-retrained-s3")
    write_customers(
        f"s3://{s3_bucket}/training",
        ROWS,
        seed=21,
        n_files=2,
        with_label=True,
        storage_options={"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"},
    )
    return s3_bucket


def test_retraining_from_s3_registers_the_challenger_with_its_records(s3_training_data, mlflow_server):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from mlflow import MlflowClient
    from sqlalchemy import select

    from tests._support.airflow_records import dag_run_outcomes
    from tests.dags.training_dags import s3_retraining

    dag_run = s3_retraining().test()
    assert dag_run.state == "success"
    bucket, name = s3_training_data, "churn-retrained-s3"

    # XCom: the runtime's result, with the version and where everything is.
    (outcome,) = dag_run_outcomes(dag_run.dag_id, dag_run.run_id)
    result = outcome.result
    client = MlflowClient(tracking_uri=mlflow_server.url)
    (task_run,) = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name=f"airflow/{dag_run.dag_id}", role="task"
    )
    run_id = task_run.info.run_id
    digest = result["input_digest"]
    assert result["status"] == "success" and result["mlflow_run_id"] == run_id
    assert result["model"] == {"name": name, "version": "1", "alias": "challenger"}
    assert result["details"] == {
        "model_name": name,
        "version": "1",
        "alias": "challenger",
        "model_uri": f"models:/{name}/1",
        "run_id": run_id,
        "training_data_digest": digest,
        "rows": ROWS,
        "features": list(FEATURES),
        "label": "churned",
        "reference_profile_uri": f"runs:/{run_id}/reference_profile.json",
        "model_card_artifact": f"runs:/{run_id}/model_card.md",
        "reused": False,
    }
    assert result["metrics"]["accuracy"] > 0.7

    # Registry: the version, its alias, lineage tags and the model card as description.
    version = client.get_model_version_by_alias(name, "challenger")
    assert str(version.version) == "1" and version.run_id == run_id
    assert version.tags["airflow.dag_id"] == "s3_retraining"
    assert version.tags["airflow.run_id"] == dag_run.run_id
    assert version.tags["ai.training_key"] == f"s3_retraining/{dag_run.run_id}/train/-1"
    assert version.tags["ai.training_data_uri"] == f"s3://{bucket}/training/"
    assert version.tags["ai.training_data_digest"] == digest
    assert version.tags["ai.image"] == f"local:{sys.executable}"
    assert version.tags["ai.reference_profile"] == f"runs:/{run_id}/reference_profile.json"
    assert "Churn risk ranking, retrained by s3_retraining." in version.description  # templated
    assert "Synthetic customers only." in version.description

    # The task's run: artifacts, dataset input, metrics and tags, ended by the operator.
    artifacts = {item.path for item in client.list_artifacts(run_id)}
    assert {
        "model_card.md",
        "reference_profile.json",
        "training_summary.json",
        "job_result.json",
    } <= artifacts
    assert task_run.info.status == "FINISHED"
    assert task_run.data.tags["ai.model_version"] == "1"
    assert task_run.data.params == {"max_iter": "30", "learning_rate": "0.2"}
    (dataset_input,) = task_run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == digest[:32]
    assert f"s3://{bucket}/training/" in dataset_input.dataset.source

    # The Asset event says which version was trained, from which data.
    with create_session() as session:
        (event,) = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == f"trained-{name}", AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        extra = event.extra
    cost = extra.pop("cost")  # the task's estimate (airflow_ai_provider.cost), local usage unpriced
    assert set(cost) == {"cpu_seconds", "memory_gb_seconds", "gpu_seconds", "estimate", "currency"}
    assert cost["cpu_seconds"] > 0 and cost["gpu_seconds"] == 0 and cost["estimate"] == 0
    assert extra == {
        "model_name": name,
        "version": "1",
        "model_version": "1",
        "alias": "challenger",
        "mlflow_run_id": run_id,
        "training_data_digest": digest,
        "rows": ROWS,
    }


def test_retried_training_reuses_its_version_and_run(
    training_code_importable, mlflow_connection, mlflow_server, flaky_python, tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    from tests._support.airflow_records import dag_run_outcomes
    from tests.dags.training_dags import retried_training

    name = "churn-retried"
    write_customers(tmp_path / "training", 1_000, seed=5, with_label=True)
    monkeypatch.setenv("AI_TEST_FAKE_PYTHON", flaky_python)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MODEL_NAME", name)

    dag_run = retried_training().test()

    assert dag_run.state == "success"
    assert task_tries(dag_run.run_id) == [2]
    client = MlflowClient(tracking_uri=mlflow_server.url)
    versions = client.search_model_versions(f"name = '{name}'")
    assert [str(version.version) for version in versions] == ["1"]
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    (task_run,) = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name=f"airflow/{dag_run.dag_id}", role="task"
    )
    assert task_run.info.status == "FINISHED"
    (outcome,) = dag_run_outcomes(dag_run.dag_id, dag_run.run_id)
    assert outcome.result["details"]["reused"] is True
    assert outcome.result["details"]["version"] == "1"
    assert outcome.result["details"]["run_id"] == task_run.info.run_id
    assert outcome.result["metrics"]["accuracy"] > 0.6


def test_training_data_with_missing_labels_fails_once_and_registers_nothing(
    training_code_importable, mlflow_connection, mlflow_server, tmp_path, monkeypatch, capfd
):
    """The label check comes before the training function runs; bad input is not retried (one retry
    is allowed), registers no version and leaves the task's MLflow run FAILED, not RUNNING."""
    from mlflow import MlflowClient

    from tests._support.churn_sample import make_customers
    from tests.dags.training_dags import retried_training

    name = "churn-missing-labels"
    frame = make_customers(400, seed=8).astype({"churned": "float64"})
    frame.loc[[0, 10, 20, 30], "churned"] = float("nan")
    (tmp_path / "training").mkdir()
    frame.to_parquet(tmp_path / "training" / "customers.parquet", index=False)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MODEL_NAME", name)
    monkeypatch.delenv("AI_TEST_FAKE_PYTHON", raising=False)

    dag_run = retried_training().test()

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]
    assert "label column 'churned' has 4 missing value(s) (null or NaN) of 400 rows" in capfd.readouterr().out
    client = MlflowClient(tracking_uri=mlflow_server.url)
    assert client.search_model_versions(f"name = '{name}'") == []
    (task_run,) = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name=f"airflow/{dag_run.dag_id}", role="task"
    )
    assert task_run.info.status == "FAILED"
