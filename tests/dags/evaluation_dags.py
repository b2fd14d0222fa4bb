"""Quality gate and drift detection DAGs run by the tests. Settings come from environment variables;
``AI_TEST_JOB_KWARGS`` (JSON, by DAG id) overrides operator arguments.

``dag.test()`` runs only DAGs that live in a DAG bundle; this folder is one (see tests/conftest.py).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.sdk import DAG, task

from airflow_ai_provider.assets import drift_asset
from airflow_ai_provider.operators.drift import DriftDetectionOperator
from airflow_ai_provider.operators.quality_gate import QualityGateOperator

#: ``mlflow-model://drift_churn/drift``: the drift asset of the model the drift test uses.
DRIFT_ASSET = drift_asset("drift_churn")


def _overrides(dag_id: str) -> dict[str, Any]:
    return json.loads(os.environ.get("AI_TEST_JOB_KWARGS", "{}")).get(dag_id, {})


def evaluation_gate() -> DAG:
    """Evaluate the challenger and branch on the decision: promote it or keep the champion."""
    with DAG("evaluation_gate", schedule=None) as dag:
        gate = QualityGateOperator(
            **{
                "task_id": "gate",
                "challenger": os.environ.get("AI_TEST_CHALLENGER", "churn@challenger"),
                "holdout_uri": os.environ.get("AI_TEST_HOLDOUT", "/tmp/holdout"),
                "label_column": "churned",
                "min_metrics": {"accuracy": 0.75},
                "max_degradation": {"accuracy": 0.01},
                "execution_mode": "local",
                "retries": 0,
                **_overrides("evaluation_gate"),
            }
        )

        @task.branch
        def route(result: dict[str, Any]) -> str:
            return "promote" if result["details"]["decision"] == "promote" else "keep_champion"

        @task
        def promote() -> str:
            return "promoted"

        @task
        def keep_champion() -> str:
            return "kept"

        route(gate.output) >> [promote(), keep_champion()]
    return dag


def drift_check() -> DAG:
    """Check current data for drift; an event on DRIFT_ASSET only when drift is found."""
    with DAG("drift_check", schedule=None) as dag:
        DriftDetectionOperator(
            **{
                "task_id": "drift",
                "model": os.environ.get("AI_TEST_DRIFT_MODEL", "churn@champion"),
                "input_uri": os.environ.get("AI_TEST_CURRENT", "/tmp/current"),
                "drift_asset": DRIFT_ASSET,
                "execution_mode": "local",
                "retries": 0,
                **_overrides("drift_check"),
            }
        )
    return dag


evaluation_gate()
drift_check()
