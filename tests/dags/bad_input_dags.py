"""A batch-inference DAG whose operator arguments come from ``AI_TEST_OPERATOR_KWARGS`` (JSON).

The tests plant one bad argument at a time (literal or templated) and check that the task fails on
its first try, with one line naming the argument, before anything is written.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_ai_provider.operators.inference import BatchInferenceOperator


def operator_bad_input() -> DAG:
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    kwargs = {
        "model": "churn@champion",
        "input_uri": f"{data}/scoring",
        "output_uri": f"{data}/predictions/{{{{ run_id }}}}",
        "id_columns": ["customer_id"],
        "execution_mode": "local",
        **json.loads(os.environ.get("AI_TEST_OPERATOR_KWARGS", "{}")),
    }
    with DAG("operator_bad_input", schedule=None) as dag:
        BatchInferenceOperator(task_id="score", retries=3, retry_delay=timedelta(seconds=0), **kwargs)
    return dag


operator_bad_input()
