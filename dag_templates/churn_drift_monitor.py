"""Drift monitor: compare recent scoring data with the champion's training profile, hourly.

PSI and Kolmogorov-Smirnov per feature against the reference profile stored with the model when it
was trained. Only when drift exceeds the thresholds does it update the ``mlflow-model://<name>/drift``
Asset, on which the retraining template is scheduled; the report and plot go to MLflow either way.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, CronTriggerTimetable, Param
from kubernetes.client import models as k8s

from airflow_ai_provider.assets import drift_asset
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.operators.drift import DriftDetectionOperator
from airflow_ai_provider.storage import data_uri

# ---- Config: adapt to your model and data -------------------------------------------------------
DAG_ID = "churn_drift_monitor"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")  # a folder or s3://...
MODEL_NAME = "churn"
CURRENT_DATA = data_uri(DATA_ROOT, "scoring/customers")
PSI_THRESHOLD = 0.2
FEATURES = None  # None: every feature in the model's training profile; or a list to check
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's code; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
DRIFT_RESOURCES = k8s.V1ResourceRequirements(
    requests={"cpu": "1", "memory": "2Gi"},
    limits={"memory": "4Gi"},
)
# Notifications (docs/templates/README.md#notifications): Airflow notifiers (BaseNotifier instances,
# e.g. SmtpNotifier or SlackNotifier of their providers); none by default.
ON_FAILURE_CALLBACK = None  # a notifier or a list of them: every task calls it when it fails for good
# --------------------------------------------------------------------------------------------------

AI_JOBS = ai_job_arguments(
    image=IMAGE,
    s3_secret=S3_SECRET,
    runtime_configmap=RUNTIME_CONFIGMAP,
    service_account=SERVICE_ACCOUNT,
    mlflow_conn_id=MLFLOW_CONN_ID,
    aws_conn_id=AWS_CONN_ID,
)

with DAG(
    dag_id=DAG_ID,
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
        "psi_threshold": Param(
            PSI_THRESHOLD, type=["number", "null"], description="a feature drifts above this PSI"
        ),
    },
    default_args={"on_failure_callback": ON_FAILURE_CALLBACK},
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:
    DriftDetectionOperator(
        task_id="detect_drift",
        model="{{ params.model or '" + MODEL_NAME + "@champion' }}",
        input_uri="{{ params.input_uri or '" + CURRENT_DATA + "' }}",
        psi_threshold="{{ params.psi_threshold if params.psi_threshold is not none else "
        + str(PSI_THRESHOLD)
        + " }}",
        features=FEATURES,
        drift_asset=drift_asset(MODEL_NAME),
        container_resources=DRIFT_RESOURCES,
        **AI_JOBS,
    )
