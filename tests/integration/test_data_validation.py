"""Data validation end to end: the operator in a real DAG (``dag.test()``), a real ``mlflow server``
and moto S3, in local execution mode, with the data and the suite file on S3."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.churn_sample import make_customers, write_customers

ROWS = 20_000
SUITE = Path(__file__).resolve().parents[2] / "dag_templates" / "include" / "churn_expectations.json"
REPORTS = "customers/_validation/churn_customers"
EXPERIMENT = "airflow/s3_data_validation"


@pytest.fixture
def airflow_env(monkeypatch, mlflow_connection, aws_connection, s3_server, s3_bucket):
    """Connections as a deployment would define them; the worker itself has no AWS credentials."""
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    monkeypatch.setenv("AI_TEST_BATCH_SIZE", "6000")
    s3_server.client().put_object(
        Bucket=s3_bucket, Key="suites/churn_expectations.json", Body=SUITE.read_bytes()
    )
    return s3_bucket


def _task_run(mlflow_server, dag_run_id: str):
    from mlflow import MlflowClient

    (run,) = dag_run_mlflow_runs(mlflow_server.url, dag_run_id, experiment_name=EXPERIMENT, role="task")
    return MlflowClient(tracking_uri=mlflow_server.url), run


def test_valid_data_emits_an_asset_event_with_digest_rows_and_suite(airflow_env, mlflow_server, s3_server):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests._support.airflow_records import dag_run_outcomes
    from tests.dags.validation_dags import s3_data_validation

    write_customers(
        f"s3://{airflow_env}/customers",
        ROWS,
        seed=11,
        n_files=2,
        storage_options={"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"},
    )

    dag_run = s3_data_validation().test()

    assert dag_run.state == "success"
    (outcome,) = [o for o in dag_run_outcomes(dag_run.dag_id, dag_run.run_id) if o.task_id == "validate"]
    result = outcome.result
    assert result["details"]["success"] is True and result["details"]["batches"] == 4
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetModel.name == f"validated-customers-{airflow_env}",
                AssetEvent.source_run_id == dag_run.run_id,
            )
        ).all()
        (extra,) = [event.extra for event in events]
    client, run = _task_run(mlflow_server, dag_run.run_id)
    cost = extra.pop("cost")  # the task's estimate (airflow_ai_provider.cost), local usage unpriced
    assert set(cost) == {"cpu_seconds", "memory_gb_seconds", "gpu_seconds", "estimate", "currency"}
    assert cost["cpu_seconds"] > 0 and cost["gpu_seconds"] == 0 and cost["estimate"] == 0
    assert extra == {
        "input_digest": result["input_digest"],
        "data_digest": result["input_digest"],
        "row_count": ROWS,
        "suite": "churn_customers",
        "input_uri": f"s3://{airflow_env}/customers/",
        "mlflow_run_id": run.info.run_id,
        "report_uri": f"s3://{airflow_env}/{REPORTS}",
    }
    assert len(extra["data_digest"]) == 64
    assert run.info.status == "FINISHED"
    assert run.data.tags["ai.validation_success"] == "true"
    assert run.data.metrics["successful_expectations"] == 17
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "validation_result.json",
        "validation_report.html",
        "job_result.json",
    }


def test_invalid_data_fails_without_retry_and_leaves_the_reports(
    airflow_env, mlflow_server, s3_server, monkeypatch, capfd
):
    from tests.dags.validation_dags import s3_data_validation

    frame = make_customers(ROWS, seed=12, with_label=False)
    frame.loc[[3, 15_000], "monthly_charges"] = [-4.2, 9999.0]
    frame.loc[[8, 9], "age"] = np.nan
    frame.loc[ROWS - 1, "customer_id"] = frame.loc[0, "customer_id"]
    s3 = s3_server.client()
    for index, part in enumerate((frame.iloc[: ROWS // 2], frame.iloc[ROWS // 2 :])):
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), sink)
        s3.put_object(Bucket=airflow_env, Key=f"customers/part-{index}.parquet", Body=sink.getvalue())
    monkeypatch.setenv("AI_TEST_RETRIES", "3")

    dag_run = s3_data_validation().test()

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]  # a failed validation is not retried
    log = capfd.readouterr().out
    assert (
        "validate job failed: data validation failed: 3 of 17 expectations (suite churn_customers): " in log
    )
    assert (
        f"expect_column_values_to_be_between(monthly_charges) 2 unexpected of {ROWS} (e.g. -4.2, 9999.0)"
        in log
    )
    assert "FAIL expect_column_values_to_be_unique(customer_id): 2 unexpected" in log

    stored = json.loads(
        s3.get_object(Bucket=airflow_env, Key=f"{REPORTS}/validation_result.json")["Body"].read()
    )
    assert stored["success"] is False and stored["statistics"]["unsuccessful_expectations"] == 3
    html = s3.get_object(Bucket=airflow_env, Key=f"{REPORTS}/validation_report.html")["Body"].read()
    assert b"monthly_charges" in html
    client, run = _task_run(mlflow_server, dag_run.run_id)
    assert run.info.status == "FAILED"
    local = client.download_artifacts(run.info.run_id, "validation_result.json")
    assert json.loads(Path(local).read_text()) == stored


def test_a_suite_source_is_required_exactly_once_when_the_dag_is_parsed():
    from airflow_ai_provider.exceptions import AiProviderConfigError
    from airflow_ai_provider.operators.data_validation import DataValidationOperator

    inline = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}]
    with pytest.raises(AiProviderConfigError, match="give exactly one of suite_uri"):
        DataValidationOperator(task_id="neither", input_uri="s3://b/data/")
    with pytest.raises(AiProviderConfigError, match="give exactly one of suite_uri"):
        DataValidationOperator(
            task_id="both", input_uri="s3://b/data/", suite_uri="s.json", expectations=inline
        )
    with pytest.raises(AiProviderConfigError, match=r"expectation #1 has no 'type'"):
        DataValidationOperator(task_id="typo", input_uri="s3://b/data/", expectations=[{"kwargs": {}}])
    operator = DataValidationOperator(task_id="ok", input_uri="s3://b/data/", expectations=inline)
    assert operator.retries == 3 and operator.retry_exponential_backoff


def test_batch_size_that_renders_to_text_fails_once_before_any_run_or_report(
    airflow_env, mlflow_server, s3_server, monkeypatch, capfd
):
    from tests.dags.validation_dags import s3_data_validation

    write_customers(
        f"s3://{airflow_env}/customers",
        500,
        seed=3,
        storage_options={"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"},
    )
    monkeypatch.setenv("AI_TEST_BATCH_SIZE", "{{ 'x' }}")
    monkeypatch.setenv("AI_TEST_RETRIES", "3")

    dag_run = s3_data_validation().test()

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]
    assert "validate: batch_size must be a positive integer, got 'x'" in capfd.readouterr().out
    listed = s3_server.client().list_objects_v2(Bucket=airflow_env, Prefix="customers/_validation/")
    assert listed.get("KeyCount", 0) == 0
    assert (
        dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=EXPERIMENT, role="task") == []
    )
