"""A batch-inference DAG for the secret-leak probes; its operator arguments come from
``AI_TEST_OPERATOR_KWARGS`` (JSON), so a test can plant a credential in one of them (as a template:
a literal one already fails when this file is parsed)."""

from __future__ import annotations

import json
import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_ai_provider.operators.inference import BatchInferenceOperator


def secret_leaks() -> DAG:
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    kwargs = {
        "model": os.environ.get("AI_TEST_MODEL", "churn@champion"),
        "input_uri": f"{data}/scoring",
        "output_uri": f"{data}/predictions/{{{{ run_id }}}}",
        "id_columns": ["customer_id"],
        "execution_mode": "local",
        "python": os.environ.get("AI_TEST_PYTHON") or None,
        **json.loads(os.environ.get("AI_TEST_OPERATOR_KWARGS", "{}")),
    }
    with DAG("secret_leaks", schedule=None) as dag:
        BatchInferenceOperator(task_id="score", retries=2, retry_delay=timedelta(seconds=0), **kwargs)
    return dag


secret_leaks()
