"""Promotion DAGs whose arguments come from the DAG run's conf, for the bad-input and retry tests.

Every task allows two retries, so a test can tell "failed once, not retried" from "retried".
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, task

from airflow_ai_provider.operators.promotion import PromoteModelOperator, RollbackModelOperator

_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=0)}


def _model() -> str:
    return os.environ.get("AI_TEST_MODEL", "churn")


def promote_templated() -> DAG:
    """Promote ``conf['model']`` (default the challenger) to ``conf['alias']`` (default champion),
    after a plain task that is no approval step."""
    with DAG("promote_templated", schedule=None) as dag:

        @task
        def not_an_approval() -> str:
            return "yes"

        not_an_approval() >> PromoteModelOperator(
            task_id="promote",
            model=f"{{{{ dag_run.conf.get('model', '{_model()}@challenger') }}}}",
            alias="{{ dag_run.conf.get('alias', 'champion') }}",
            approval_task_id="{{ dag_run.conf.get('approval_task_id', '') }}",
            **_RETRIES,
        )
    return dag


def promote_then_rollback() -> DAG:
    """Promote, then roll back naming the model ``conf['rollback_model']``."""
    with DAG("promote_then_rollback", schedule=None) as dag:
        promote = PromoteModelOperator(task_id="promote", model=f"{_model()}@challenger", retries=0)
        rollback = RollbackModelOperator(
            task_id="rollback",
            promote_task_id="promote",
            model="{{ dag_run.conf['rollback_model'] }}",
            **_RETRIES,
        )
        promote >> rollback
    return dag


promote_templated()
promote_then_rollback()
