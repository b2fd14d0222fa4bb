"""Batch-inference DAGs for the secret-leak probes. The operator arguments come from
``AI_TEST_OPERATOR_KWARGS`` (JSON), so a test can plant a credential in one of them (as a template:
a literal one already fails when this file is parsed), or a mapped task's inputs from
``AI_TEST_EXPAND_URIS``."""

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


def secret_leaks_mapped() -> DAG:
    """The same task mapped over ``AI_TEST_EXPAND_URIS`` (a JSON list of input URIs)."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG("secret_leaks_mapped", schedule=None) as dag:
        BatchInferenceOperator.partial(
            task_id="score",
            model=os.environ.get("AI_TEST_MODEL", "churn@champion"),
            output_uri=f"{data}/predictions/{{{{ run_id }}}}",
            execution_mode="local",
            python=os.environ.get("AI_TEST_PYTHON") or None,
            retries=2,
            retry_delay=timedelta(seconds=0),
        ).expand(input_uri=json.loads(os.environ.get("AI_TEST_EXPAND_URIS", "[]")) or [f"{data}/scoring"])
    return dag


secret_leaks()
secret_leaks_mapped()
