"""Ingestion + data validation: landed files -> raw zone -> Great Expectations -> Asset.

New files arrive in the landing folder (in your deployment an upstream system writes them; for the
sample data, ``SAMPLE_COMMAND`` in the config block, run from the repository root). The DAG starts by
itself when they have landed: an Asset watcher in the triggerer lists the folder every
``POLL_SECONDS`` and, once files have kept their size for ``SETTLE_SECONDS`` (or a ``MARKER`` file is
there), updates the landing Asset the DAG is scheduled on. The run moves exactly those files into a
run-specific raw folder, validates them with the suite file (``SUITE``) plus, when the data is meant
for training, checks that the label column is there and filled, and on success updates the
validated-data Asset with the data digest, row count and suite name. The retraining template is
scheduled on that Asset. A failed validation fails the run loudly and updates nothing. A manual run
takes every file in the landing folder; with none there it fails at once, without retries, saying
where to land files. The data root may be a local folder or ``s3://bucket/prefix``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import DAG, Asset, AssetWatcher, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.landing import announced_files, take_landed
from airflow_ai_provider.operators.data_validation import DataValidationOperator
from airflow_ai_provider.storage import data_uri, read_bytes
from airflow_ai_provider.triggers.landed_files import LandedFilesTrigger

# ---- Config: adapt to your data -----------------------------------------------------------------
DAG_ID = "churn_ingest"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")
LANDING = data_uri(DATA_ROOT, "landing", "customers")
RAW_ROOT = data_uri(DATA_ROOT, "raw", "customers")
SUITE = str(Path(__file__).parent / "include" / "churn_expectations.json")
VALIDATED_DATA = Asset(name="churn_validated_data", uri=data_uri(DATA_ROOT, "raw", "customers"))
TASK_TYPE = "classification"  # or "regression"
LABEL = "churned"  # required when the data is meant for training
LABEL_VALUES = [0, 1]  # classification: the allowed label values
SAMPLE_COMMAND = "python -m tests._support.churn_sample write {landing} --rows 20000 --files 2 --with-label"
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# The landing watcher (runs in the triggerer while the DAG is unpaused): files landed in LANDING start a run.
POLL_SECONDS = float(os.environ.get("AI_TEMPLATES_POLL_SECONDS", "15"))  # how often LANDING is listed
SETTLE_SECONDS = float(os.environ.get("AI_TEMPLATES_SETTLE_SECONDS", "30"))  # unchanged this long: landed
MARKER = None  # e.g. "_SUCCESS": upstream writes it last; files count as landed once it is there
LANDED_NAME = "churn_landed_customers"  # the Asset the landing watcher updates, URI LANDING
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's code; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
VALIDATE_RESOURCES = k8s.V1ResourceRequirements(
    requests={"cpu": "1", "memory": "2Gi"},
    limits={"memory": "4Gi"},
)
# Notifications (docs/templates/README.md#notifications): Airflow notifiers (BaseNotifier instances,
# e.g. SmtpNotifier or SlackNotifier of their providers); none by default.
ON_FAILURE_CALLBACK = None  # a notifier or a list of them: every task calls it when it fails for good
# --------------------------------------------------------------------------------------------------

LANDED_FILES = Asset(
    name=LANDED_NAME,
    uri=LANDING,
    watchers=[
        AssetWatcher(
            name=f"{LANDED_NAME}_watcher",
            trigger=LandedFilesTrigger(
                landing=LANDING,
                poll_interval=POLL_SECONDS,
                settle_seconds=SETTLE_SECONDS,
                marker=MARKER,
                aws_conn_id=AWS_CONN_ID,
            ),
        )
    ],
)

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
    schedule=[LANDED_FILES],  # the watcher's events; a manual trigger works too
    catchup=False,
    tags=["ai", "data", "template"],
    params={
        "landing": Param(LANDING, type=["string", "null"], description="folder where new files land"),
        "suite": Param(
            SUITE, type=["string", "null"], description="Great Expectations suite file (JSON or YAML)"
        ),
        "for_training": Param(
            True, type=["boolean", "null"], description=f"the data must carry the label {LABEL!r}"
        ),
    },
    default_args={"on_failure_callback": ON_FAILURE_CALLBACK},
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:

    @task(retries=2)
    def ingest(params=None, run_id=None, triggering_asset_events=None) -> str:
        """Move the landed files into raw/<run id>/ and return that folder (a retry finds them there).

        A run started by the watcher takes the files its events announced; a manual run takes all.
        """
        landing = params["landing"] or LANDING
        target = data_uri(RAW_ROOT, run_id.replace(":", "-").replace("+", "-"))
        announced = announced_files(triggering_asset_events, data_uri(landing))
        if take_landed(landing, target, announced=announced, marker=MARKER, aws_conn_id=AWS_CONN_ID):
            return target
        if announced is not None:  # another run took them first: nothing left for this one
            raise AirflowSkipException(f"the files announced in {landing} are no longer there")
        raise AirflowFailException(
            f"no .parquet or .csv files in the landing folder {landing}: land files there "
            f"(sample data: {SAMPLE_COMMAND.format(landing=landing)}) and trigger {DAG_ID} again"
        )

    @task(retries=2)
    def suite(params=None) -> dict:
        """The suite file's expectations, plus the label checks when the data is for training."""
        import yaml

        uri = data_uri(params["suite"] or SUITE)
        try:
            text = read_bytes(uri, aws_conn_id=AWS_CONN_ID).decode()
            loaded = yaml.safe_load(text) if uri.endswith((".yaml", ".yml")) else json.loads(text)
        except (AiProviderConfigError, ValueError, yaml.YAMLError) as error:
            raise AirflowFailException(f"suite {uri} cannot be read: {error}") from None
        expectations = list(loaded["expectations"] if isinstance(loaded, dict) else loaded)
        if params["for_training"] is not False:
            expectations += [
                {"type": "expect_column_to_exist", "kwargs": {"column": LABEL}},
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": LABEL}},
            ]
            if TASK_TYPE == "classification":
                expectations.append(
                    {
                        "type": "expect_column_values_to_be_in_set",
                        "kwargs": {"column": LABEL, "value_set": LABEL_VALUES},
                    }
                )
        name = loaded.get("name") if isinstance(loaded, dict) else None
        return {"name": name or uri.rsplit("/", 1)[-1].rsplit(".", 1)[0], "expectations": expectations}

    DataValidationOperator(
        task_id="validate",
        input_uri="{{ ti.xcom_pull(task_ids='ingest') }}",
        expectations="{{ ti.xcom_pull(task_ids='suite') }}",
        outlets=[VALIDATED_DATA],
        priority_weight=5,
        container_resources=VALIDATE_RESOURCES,
        **AI_JOBS,
    ).set_upstream([ingest(), suite()])
