"""Drift monitor: compare recent scoring data with the champion's training profile, hourly.

PSI and Kolmogorov-Smirnov per feature against the reference profile stored with the model when it
was trained. Only when drift exceeds the thresholds does it update the ``mlflow-model://churn/drift``
Asset, on which the retraining template is scheduled; the report and plot go to MLflow either way.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, CronTriggerTimetable, Param

from airflow_ai_provider.assets import drift_asset
from airflow_ai_provider.operators.drift import DriftDetectionOperator

# ---- Config: adapt to your model and data -------------------------------------------------------
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")
MODEL_NAME = "churn"
CURRENT_DATA = f"file://{DATA_ROOT}/scoring/customers"
# --------------------------------------------------------------------------------------------------

with DAG(
    dag_id="churn_drift_monitor",
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ai", "monitoring", "template"],
    params={
        "model": Param(
            f"{MODEL_NAME}@champion",
            type=["string", "null"],
            description="model whose profile is the reference",
        ),
        "input_uri": Param(CURRENT_DATA, type=["string", "null"], description="recent data to check"),
        "psi_threshold": Param(0.2, type=["number", "null"], description="a feature drifts above this PSI"),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:
    DriftDetectionOperator(
        task_id="detect_drift",
        model="{{ params.model }}",
        input_uri="{{ params.input_uri }}",
        psi_threshold="{{ params.psi_threshold }}",
        drift_asset=drift_asset(MODEL_NAME),
    )
