"""DAGs that run the data validation operator with ``dag.test()``. Settings come from environment
variables the tests set (see tests/integration/test_data_validation.py)."""

from __future__ import annotations

import os

from airflow.sdk import DAG, Asset

from airflow_ai_provider.operators.data_validation import DataValidationOperator


def s3_data_validation() -> DAG:
    """Validate customer data on S3 with a suite file on S3; a validated-data Asset on success."""
    bucket = os.environ.get("AI_TEST_BUCKET", "bucket")
    with DAG("s3_data_validation", schedule=None) as dag:
        DataValidationOperator(
            task_id="validate",
            input_uri=os.environ.get("AI_TEST_INPUT", f"s3://{bucket}/customers/"),
            suite_uri=f"s3://{bucket}/suites/churn_expectations.json",
            batch_size=os.environ.get("AI_TEST_BATCH_SIZE", "200000"),  # a string renders as a template
            aws_conn_id="aws_test",
            execution_mode="local",
            outlets=[Asset(name=f"validated-customers-{bucket}", uri=f"s3://{bucket}/customers")],
            retries=int(os.environ.get("AI_TEST_RETRIES", "0")),
        )
    return dag


s3_data_validation()
