"""A DAG the observability tests run with ``dag.test()``: local batch inference in several batches."""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_ai_provider.operators.inference import BatchInferenceOperator


def observed_inference() -> DAG:
    """Local inference of ``$AI_TEST_DATA/scoring`` in batches of 1000 rows."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG("observed_inference", schedule=None) as dag:
        BatchInferenceOperator(
            task_id="score",
            model=os.environ.get("AI_TEST_MODEL", "churn@champion"),
            input_uri=f"{data}/scoring",
            output_uri=f"file://{data}/predictions/{{{{ run_id }}}}",
            id_columns=["customer_id"],
            batch_size=1000,
            execution_mode="local",
            retries=0,
        )
    return dag


observed_inference()
