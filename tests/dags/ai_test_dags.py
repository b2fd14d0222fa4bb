"""DAGs the tests run with ``dag.test()``. Settings come from environment variables the tests set.

``dag.test()`` runs only DAGs that live in a DAG bundle; this folder is one (see tests/conftest.py).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Asset, task

from airflow_ai_provider.operators.inference import BatchInferenceOperator


def local_timeout() -> DAG:
    """A job that outlives its execution_timeout."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG("local_timeout", schedule=None) as dag:
        BatchInferenceOperator(
            task_id="score",
            model="churn/1",
            input_uri=data,
            output_uri=f"{data}/out",
            python=os.environ.get("AI_TEST_FAKE_PYTHON"),
            execution_mode="local",
            execution_timeout=timedelta(seconds=3),
            retries=0,
        )
    return dag


def s3_batch_inference() -> DAG:
    """Sharded batch inference from S3 to S3, with a predictions Asset."""
    bucket = os.environ.get("AI_TEST_BUCKET", "bucket")
    shards = int(os.environ.get("AI_TEST_SHARDS", "2"))
    with DAG("s3_batch_inference", schedule=None, render_template_as_native_obj=True) as dag:
        BatchInferenceOperator.partial(
            task_id="score",
            model=os.environ.get("AI_TEST_MODEL", "churn@champion"),
            input_uri=os.environ.get("AI_TEST_INPUT", f"s3://{bucket}/scoring/"),
            output_uri=f"s3://{bucket}/predictions/{{{{ run_id }}}}",
            id_columns=["customer_id"],
            aws_conn_id="aws_test",
            execution_mode="local",
            shard_count=shards,
            fallback_model=os.environ.get("AI_TEST_FALLBACK") or None,
            outlets=[Asset(name=f"predictions-{bucket}", uri=f"s3://{bucket}/predictions")],
            retries=int(os.environ.get("AI_TEST_RETRIES", "0")),
        ).expand(shard_index=list(range(shards)))
    return dag


def warm_started_inference() -> DAG:
    """A plain first task that reports the warm runtime servers running under the worker's scratch
    root (waiting up to 10 s for one), then local batch inference from S3 to S3."""
    bucket = os.environ.get("AI_TEST_BUCKET", "bucket")
    with DAG("warm_started_inference", schedule=None) as dag:

        @task
        def servers_running() -> list[int]:
            from airflow_ai_provider.execution.local import default_scratch_root
            from tests._support.warm_servers import started_servers_under

            return started_servers_under(default_scratch_root())

        servers_running() >> BatchInferenceOperator(
            task_id="score",
            model=os.environ.get("AI_TEST_MODEL", "churn@champion"),
            input_uri=f"s3://{bucket}/scoring/",
            output_uri=f"s3://{bucket}/predictions/{{{{ run_id }}}}",
            id_columns=["customer_id"],
            aws_conn_id="aws_test",
            execution_mode="local",
            retries=0,
        )
    return dag


def retried_inference(
    dag_id: str = "retried_inference", *, retries: int = 1, batch_size: int | None = None
) -> DAG:
    """One local inference task of ``$AI_TEST_DATA/scoring``; with ``$AI_TEST_FAKE_PYTHON``, its first
    try fails after publishing its output (the retry tests), else it runs as it is (the observability
    tests, in batches of ``batch_size`` rows)."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG(dag_id, schedule=None) as dag:
        BatchInferenceOperator(
            task_id="score",
            model=os.environ.get("AI_TEST_MODEL", "churn@champion"),
            input_uri=f"{data}/scoring",
            output_uri=f"file://{data}/predictions/{{{{ run_id }}}}",
            id_columns=["customer_id"],
            batch_size=batch_size,
            python=os.environ.get("AI_TEST_FAKE_PYTHON"),
            execution_mode="local",
            retries=retries,
            retry_delay=timedelta(seconds=0),
        )
    return dag


local_timeout()
s3_batch_inference()
warm_started_inference()
retried_inference()
retried_inference("observed_inference", retries=0, batch_size=1000)
