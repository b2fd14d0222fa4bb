"""Retraining DAGs the tests run with ``dag.test()``. Settings come from environment variables the tests
set; the training function is the churn sample's, imported by the runtime from the repository root
(on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Asset

from airflow_ai_provider.operators.training import RetrainModelOperator

CHURN_TRAIN = "dag_templates.include.churn_training:train"


def s3_retraining() -> DAG:
    """Train the churn model on labelled customers in S3 and register it as the challenger."""
    bucket = os.environ.get("AI_TEST_BUCKET", "bucket")
    model = os.environ.get("AI_TEST_MODEL_NAME", "churn-retrained")
    with DAG("s3_retraining", schedule=None) as dag:
        RetrainModelOperator(
            task_id="train",
            training_function=CHURN_TRAIN,
            input_uri=f"s3://{bucket}/training/",
            label_column="churned",
            id_columns=["customer_id"],
            model_name=model,
            hyperparameters={"max_iter": 30, "learning_rate": 0.2},
            intended_use="Churn risk ranking, retrained by {{ dag.dag_id }}.",
            limitations="Synthetic customers only.",
            aws_conn_id="aws_test",
            execution_mode="local",
            outlets=[Asset(name=f"trained-{model}")],
            retries=0,
        )
    return dag


def retried_training() -> DAG:
    """A training task whose first try fails after the version was registered."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG("retried_training", schedule=None) as dag:
        RetrainModelOperator(
            task_id="train",
            training_function=CHURN_TRAIN,
            input_uri=f"{data}/training",
            label_column="churned",
            id_columns=["customer_id"],
            model_name=os.environ.get("AI_TEST_MODEL_NAME", "churn-retried"),
            hyperparameters={"max_iter": 10},
            python=os.environ.get("AI_TEST_FAKE_PYTHON"),
            execution_mode="local",
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    return dag


s3_retraining()
retried_training()
