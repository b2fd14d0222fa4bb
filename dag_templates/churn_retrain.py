"""Retraining: validated data (or drift, or the nightly cron) -> train -> quality gate -> approval
-> promote -> post-promotion smoke test, with automatic rollback when the smoke test fails.

The training data is exactly the data named by the triggering validated-data event (its URI and
digest); a drift- or cron-triggered run takes the latest validated data. The challenger is
registered as a new version with alias ``challenger``, compared with the champion on the holdout
set, and promoted only if the gate says so (and, with ``require_approval``, a human approves within
the timeout; no answer means reject). The gate's metric and thresholds follow ``TASK_TYPE``
(classification: accuracy; regression: r2). Once the new champion passes the smoke test, the
``mlflow-model://<name>`` Asset that the batch inference template waits for is updated with the
promoted version; if the smoke test fails, the promotion is rolled back and nothing is announced.

Training runs in the ``ai_training`` pool at low priority so it cannot starve inference (create the
pool: ``airflow pools set ai_training 1 "model training"``). In kubernetes mode each job runs in a pod
of the image, resources and GPUs set in the config block, with S3 credentials by reference only (a
Secret and a ConfigMap by name, or a service account); local mode ignores those pod settings.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import (
    DAG,
    Asset,
    AssetAny,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from airflow_ai_provider.assets import drift_asset, model_asset
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.operators.promotion import (
    ModelApprovalOperator,
    PromoteModelOperator,
    RollbackModelOperator,
)
from airflow_ai_provider.operators.quality_gate import QualityGateOperator
from airflow_ai_provider.operators.training import RetrainModelOperator
from airflow_ai_provider.storage import data_uri

# ---- Config: adapt to your model and data -------------------------------------------------------
DAG_ID = "churn_retrain"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")  # a folder or s3://...
MODEL_NAME = "churn"
TASK_TYPE = "classification"  # or "regression"
TRAINING_FUNCTION = "dag_templates.include.churn_training:train"
LABEL = "churned"
ID_COLUMNS = ["customer_id"]  # neither features nor label
FEATURES = None  # None: every column but the label and the id columns
HYPERPARAMETERS = {"max_iter": 100, "learning_rate": 0.1}
INTENDED_USE = "Rank customers by churn risk for retention campaigns; not for pricing decisions."
HOLDOUT = data_uri(DATA_ROOT, "holdout/customers")
VALIDATED_DATA = Asset(name="churn_validated_data", uri=data_uri(DATA_ROOT, "raw/customers"))
# The gate per task type: (metric, its minimum, the largest drop allowed against the champion).
GATES = {"classification": ("accuracy", 0.7, 0.02), "regression": ("r2", 0.3, 0.05)}
APPROVAL_TIMEOUT = timedelta(minutes=float(os.environ.get("AI_TEMPLATES_APPROVAL_TIMEOUT_MIN", "60")))
TRAINING_POOL = os.environ.get("AI_TEMPLATES_TRAINING_POOL", "ai_training")
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's code; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
TRAIN_RESOURCES = k8s.V1ResourceRequirements(
    requests={"cpu": "2", "memory": "4Gi"},
    limits={"memory": "8Gi"},  # no CPU limit: CPU limits throttle
)
# GPUs: None, or e.g. 1 (one NVIDIA GPU: its limit, a NoSchedule toleration and [ai_provider]
# gpu_node_selector) or {"count": 2, "vendor": "amd"}; see docs/kubernetes.md.
TRAIN_GPUS = None
SCORING_RESOURCES = k8s.V1ResourceRequirements(  # the quality gate and the smoke test score the model
    requests={"cpu": "1", "memory": "2Gi"},
    limits={"memory": "4Gi"},
)
SCORING_GPUS = None
# Notifications (docs/templates/README.md#notifications): Airflow notifiers (BaseNotifier instances,
# e.g. SmtpNotifier or SlackNotifier of their providers); none by default.
APPROVAL_NOTIFIERS = []  # called when the approval starts waiting for an answer
APPROVAL_ASSIGNED_USERS = None  # e.g. [{"id": "alice", "name": "Alice"}]: only they may answer; None: anyone
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

VERSION = "{{ ti.xcom_pull(task_ids='train')['details']['version'] }}"
GATE_METRIC, MIN_METRIC, MAX_METRIC_DROP = GATES[TASK_TYPE]
MIN_PARAM, DROP_PARAM = f"min_{GATE_METRIC}", f"max_{GATE_METRIC}_drop"
# An Airflow Variable of this name overrides the minimum for asset-triggered runs (no trigger form).
MIN_VARIABLE = f"{MODEL_NAME}_min_{GATE_METRIC}"


def _param(name: str, default: object) -> str:
    """Jinja for a param, or its default when the trigger form left it empty."""
    return f"(params[{name!r}] if params[{name!r}] is not none else {default!r})"


HOLDOUT_URI = "{{ " + _param("holdout_uri", HOLDOUT) + " }}"

with DAG(
    dag_id=DAG_ID,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"),
        assets=AssetAny(VALIDATED_DATA, drift_asset(MODEL_NAME)),
    ),
    catchup=False,
    max_active_runs=1,
    tags=["ai", "training", "template"],
    params={
        "holdout_uri": Param(HOLDOUT, type=["string", "null"], description="labelled data the gate scores"),
        MIN_PARAM: Param(
            MIN_METRIC, type=["number", "null"], description=f"gate: minimum challenger {GATE_METRIC}"
        ),
        DROP_PARAM: Param(
            MAX_METRIC_DROP,
            type=["number", "null"],
            description=f"gate: allowed {GATE_METRIC} drop vs champion",
        ),
        "require_approval": Param(
            False, type=["boolean", "null"], description="ask a human before promoting"
        ),
        "fail_smoke_test": Param(
            False, type=["boolean", "null"], description="exercise the automatic rollback"
        ),
    },
    default_args={"on_failure_callback": ON_FAILURE_CALLBACK},
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:

    @task(inlets=[VALIDATED_DATA])
    def pick_training_data(triggering_asset_events=None, inlet_events=None) -> dict:
        """The validated data this run trains on: the triggering event's, else the latest one."""
        events = list(triggering_asset_events[VALIDATED_DATA]) if triggering_asset_events else []
        events = events or list(inlet_events[VALIDATED_DATA])
        if not events:
            raise AirflowSkipException(
                f"no validated data yet in {VALIDATED_DATA.name}: run the ingest DAG first"
            )
        extra = events[-1].extra
        return {"uri": extra["input_uri"], "digest": extra["data_digest"], "rows": extra["row_count"]}

    training_data = pick_training_data()

    train = RetrainModelOperator(
        task_id="train",
        training_function=TRAINING_FUNCTION,
        input_uri="{{ ti.xcom_pull(task_ids='pick_training_data')['uri'] }}",
        label_column=LABEL,
        id_columns=ID_COLUMNS,
        feature_columns=FEATURES,
        model_name=MODEL_NAME,
        hyperparameters=HYPERPARAMETERS,
        intended_use=INTENDED_USE,
        pool=TRAINING_POOL,
        priority_weight=1,
        container_resources=TRAIN_RESOURCES,
        gpus=TRAIN_GPUS,
        **AI_JOBS,
    )

    gate = QualityGateOperator(
        task_id="quality_gate",
        challenger=f"{MODEL_NAME}/{VERSION}",
        holdout_uri=HOLDOUT_URI,
        label_column=LABEL,
        task_type=TASK_TYPE,
        min_metrics={
            GATE_METRIC: f"{{{{ var.value.get({MIN_VARIABLE!r}, {_param(MIN_PARAM, MIN_METRIC)}) | float }}}}"
        },
        max_degradation={GATE_METRIC: f"{{{{ {_param(DROP_PARAM, MAX_METRIC_DROP)} | float }}}}"},
        container_resources=SCORING_RESOURCES,
        gpus=SCORING_GPUS,
        **AI_JOBS,
    )

    @task.branch
    def decide(params=None, ti=None) -> str:
        decision = ti.xcom_pull(task_ids="quality_gate")["details"]["decision"]
        if decision != "promote":
            return "keep_champion"
        return "approve" if params["require_approval"] else "promote"

    @task
    def keep_champion(ti=None) -> list[str]:
        """The gate rejected the challenger: nothing is promoted, the reasons stay in MLflow."""
        return ti.xcom_pull(task_ids="quality_gate")["details"]["reasons"]

    approve = ModelApprovalOperator(
        task_id="approve",
        subject=f"Promote {MODEL_NAME} version {VERSION} to champion?",
        body="Quality gate: {{ ti.xcom_pull(task_ids='quality_gate')['details']['reasons'] }}",
        response_timeout=APPROVAL_TIMEOUT,
        notifiers=APPROVAL_NOTIFIERS,
        assigned_users=APPROVAL_ASSIGNED_USERS,
    )

    promote = PromoteModelOperator(
        task_id="promote",
        model=f"{MODEL_NAME}/{VERSION}",
        reason="quality gate: {{ ti.xcom_pull(task_ids='quality_gate')['details']['reasons'] }}",
        approval_task_id="{{ 'approve' if params.require_approval else '' }}",
        trigger_rule="none_failed_min_one_success",
        mlflow_conn_id=MLFLOW_CONN_ID,
    )

    smoke_score = BatchInferenceOperator(
        task_id="smoke_score",
        model=f"{MODEL_NAME}/{VERSION}",
        input_uri=HOLDOUT_URI,
        output_uri=data_uri(DATA_ROOT, "smoke", "{{ run_id | replace(':', '-') | replace('+', '-') }}"),
        id_columns=[*ID_COLUMNS, LABEL],
        retries=0,
        container_resources=SCORING_RESOURCES,
        gpus=SCORING_GPUS,
        **AI_JOBS,
    )

    @task(retries=0)
    def smoke_test(params=None, ti=None) -> None:
        """Post-promotion check: the new champion scores the holdout completely and sensibly."""
        result = ti.xcom_pull(task_ids="smoke_score")
        if params["fail_smoke_test"] or not result or result["rows_out"] != result["rows_in"]:
            raise AirflowFailException(
                f"smoke test failed for the new champion: {result and result['metrics']}"
            )

    rollback = RollbackModelOperator(
        task_id="rollback",
        promote_task_id="promote",
        trigger_rule="one_failed",
        mlflow_conn_id=MLFLOW_CONN_ID,
    )

    @task(outlets=[model_asset(MODEL_NAME)])
    def announce(ti=None, outlet_events=None) -> dict:
        """Only a champion that passed the smoke test is announced to the inference DAG."""
        promoted = ti.xcom_pull(task_ids="promote")
        outlet_events[model_asset(MODEL_NAME)].extra = promoted
        return promoted

    route = decide()
    training_data >> train >> gate >> route
    route >> [approve, promote, keep_champion()]
    checked = smoke_test()
    approve >> promote >> smoke_score >> checked >> [rollback, announce()]
