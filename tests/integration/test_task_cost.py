"""The cost estimate of AI tasks in local mode: a real ``dag.test()`` of sharded batch inference (two
mapped tasks), a real ``mlflow server`` and a moto S3 server; the runtime's usage as the kernel
counted it for the subprocess."""

from __future__ import annotations

import pytest

from airflow_ai_provider import cost
from tests._support.airflow_records import dag_run_mlflow_runs
from tests._support.churn_sample import train_and_register, write_customers

SHARDS = 2


@pytest.fixture
def priced_inference(monkeypatch, mlflow_server, mlflow_connection, aws_connection, s3_server, s3_bucket):
    train_and_register(mlflow_server.url, "churn", alias="champion", n_rows=2_000)
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    monkeypatch.setenv("AI_TEST_SHARDS", str(SHARDS))
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_CPU_HOUR", "0.36")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_GB_MEMORY_HOUR", "0.036")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_CURRENCY", "EUR")
    options = {"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"}
    write_customers(f"s3://{s3_bucket}/scoring", 4_000, seed=3, n_files=2, storage_options=options)
    return s3_bucket


def test_each_inference_task_records_its_cost_and_the_parent_run_holds_their_sum(
    priced_inference, mlflow_server
):
    from tests.dags.ai_test_dags import s3_batch_inference

    dag_run = s3_batch_inference().test()
    assert dag_run.state == "success"

    tasks = dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, role="task")
    (parent,) = dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, role="dag_run")
    assert len(tasks) == SHARDS
    for task in tasks:
        metrics = task.data.metrics
        # The runtime imports pandas, pyarrow and the model: it uses CPU time and far more than 50 MiB.
        assert metrics[cost.CPU_SECONDS] > 0
        assert metrics[cost.MEMORY_GB_SECONDS] > 0.05 * metrics["duration_s"]
        assert metrics[cost.GPU_SECONDS] == 0
        expected = (metrics[cost.CPU_SECONDS] * 0.36 + metrics[cost.MEMORY_GB_SECONDS] * 0.036) / 3600
        assert metrics[cost.ESTIMATE] == pytest.approx(expected, rel=1e-3, abs=1e-6)
        assert task.data.tags[cost.CURRENCY_TAG] == "EUR"

    assert parent.data.metrics[cost.TASKS] == SHARDS
    for key in (cost.CPU_SECONDS, cost.MEMORY_GB_SECONDS, cost.GPU_SECONDS, cost.ESTIMATE):
        total = sum(task.data.metrics[key] for task in tasks)
        assert parent.data.metrics[key] == pytest.approx(total, rel=1e-6, abs=1e-6), key
    assert parent.data.tags[cost.CURRENCY_TAG] == "EUR"

    # Each shard's Asset event carries its own task's cost.
    by_run = {task.info.run_id: task.data.metrics for task in tasks}
    extras = _asset_event_extras(f"predictions-{priced_inference}", dag_run.run_id)
    assert sorted(extra["mlflow_run_id"] for extra in extras) == sorted(by_run)
    for extra in extras:
        metrics = by_run[extra["mlflow_run_id"]]
        assert extra["cost"] == {
            "cpu_seconds": metrics[cost.CPU_SECONDS],
            "memory_gb_seconds": metrics[cost.MEMORY_GB_SECONDS],
            "gpu_seconds": 0.0,
            "estimate": metrics[cost.ESTIMATE],
            "currency": "EUR",
        }


def _asset_event_extras(asset_name: str, run_id: str) -> list[dict]:
    """The extras of every event the DAG run ``run_id`` emitted for the Asset ``asset_name``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == asset_name, AssetEvent.source_run_id == run_id)
        ).all()
        return [dict(event.extra) for event in events]
