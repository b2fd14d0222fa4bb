"""Promotion, rollback and approval DAGs run by the tests. Settings come from environment variables."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Asset, task

from airflow_ai_provider.operators.promotion import (
    ModelApprovalOperator,
    PromoteModelOperator,
    RollbackModelOperator,
)
from airflow_ai_provider.operators.quality_gate import QualityGateOperator


def _model() -> str:
    return os.environ.get("AI_TEST_MODEL", "churn")


def promote_then_check() -> DAG:
    """Promote the challenger, run a post-promotion check, roll back if the check fails."""
    with DAG("promote_then_check", schedule=None) as dag:
        promote = PromoteModelOperator(
            task_id="promote",
            model=f"{_model()}@challenger",
            reason="quality gate passed",
            outlets=[Asset(name=f"model-{_model()}")],
            retries=0,
        )

        @task(retries=0)
        def smoke_test() -> None:
            if os.environ.get("AI_TEST_SMOKE_FAIL") == "1":
                raise ValueError("post-promotion smoke test failed")

        rollback = RollbackModelOperator(
            task_id="rollback", promote_task_id="promote", trigger_rule="one_failed", retries=0
        )
        promote >> smoke_test() >> rollback
    return dag


def approve_then_promote() -> DAG:
    """A human approves (or not) before the promotion."""
    with DAG("approve_then_promote", schedule=None) as dag:
        approve = ModelApprovalOperator(
            task_id="approve",
            subject=f"Promote {_model()}@challenger to champion?",
            body="The quality gate passed.",
            response_timeout=timedelta(seconds=float(os.environ.get("AI_TEST_APPROVAL_TIMEOUT", "3600"))),
        )
        promote = PromoteModelOperator(
            task_id="promote", model=f"{_model()}@challenger", approval_task_id="approve", retries=0
        )
        approve >> promote
    return dag


def gate_then_promote() -> DAG:
    """Gate the challenger, let ``AI_TEST_MOVE_CHAMPION_TO`` (a version) move champion, promote.

    The middle task stands for anyone else moving the alias between this DAG run's gate and its
    promotion; with the variable unset it changes nothing.
    """
    with DAG("gate_then_promote", schedule=None) as dag:
        gate = QualityGateOperator(
            task_id="gate",
            challenger=f"{_model()}@challenger",
            holdout_uri=os.environ.get("AI_TEST_HOLDOUT", "/tmp/holdout"),
            label_column="churned",
            min_metrics={"accuracy": 0.0},
            execution_mode="local",
            retries=0,
        )

        @task(retries=0)
        def meanwhile() -> None:
            version = os.environ.get("AI_TEST_MOVE_CHAMPION_TO")
            if version:
                from airflow_ai_provider.hooks.mlflow import MlflowHook

                with MlflowHook().client() as client:
                    client.set_registered_model_alias(_model(), "champion", version)

        promote = PromoteModelOperator(
            task_id="promote",
            model=f"{_model()}@challenger",
            reason="quality gate passed",
            retries=1,
            retry_delay=timedelta(seconds=1),
        )
        gate >> meanwhile() >> promote
    return dag


promote_then_check()
approve_then_promote()
gate_then_promote()
