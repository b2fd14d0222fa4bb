"""DAGs for the leftover tests: a local training job whose user code starts a helper in a new
session and then outlives its execution_timeout."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_ai_provider.operators.training import RetrainModelOperator


def training_timeout() -> DAG:
    """The training function (``AI_TEST_TRAINING_FUNCTION``) hangs; the task times out after 45 s (a loaded machine needs 20 s to get there)."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG("leftover_training_timeout", schedule=None) as dag:
        RetrainModelOperator(
            task_id="train",
            training_function=os.environ.get("AI_TEST_TRAINING_FUNCTION", "tests.missing:train"),
            input_uri=f"{data}/train.parquet",
            label_column="churned",
            id_columns=["customer_id"],
            model_name="leftovers",
            hyperparameters={
                "marker": os.environ.get("AI_TEST_MARKER", "none"),
                "pid_file": f"{data}/helper.pid",
            },
            execution_mode="local",
            execution_timeout=timedelta(seconds=45),
            retries=0,
        )
    return dag


training_timeout()
