"""Ingestion + data validation: landed files -> raw zone -> Great Expectations -> Asset.

New files arrive in the landing folder (in your deployment an upstream system writes them; for the
sample data, ``SAMPLE_COMMAND`` in the config block, run from the repository root). This DAG moves them into a run-specific raw folder,
validates them with the suite file (``SUITE``) plus, when the data is meant for training, checks that
the label column is there and filled, and on success updates the validated-data Asset with the data
digest, row count and suite name. The retraining template is scheduled on that Asset. A failed
validation fails the run loudly and updates nothing; an empty landing folder fails at once, without
retries, saying where to land files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import DAG, Asset, Param, task
from airflow.sdk.exceptions import AirflowFailException
from kubernetes.client import models as k8s

from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.operators.data_validation import DataValidationOperator

# ---- Config: adapt to your data -----------------------------------------------------------------
DAG_ID = "churn_ingest"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")
LANDING = f"{DATA_ROOT}/landing/customers"
RAW_ROOT = f"{DATA_ROOT}/raw/customers"
SUITE = str(Path(__file__).parent / "include" / "churn_expectations.json")
VALIDATED_DATA = Asset(name="churn_validated_data", uri=f"file://{DATA_ROOT}/raw/customers")
TASK_TYPE = "classification"  # or "regression"
LABEL = "churned"  # required when the data is meant for training
LABEL_VALUES = [0, 1]  # classification: the allowed label values
SAMPLE_COMMAND = "python -m tests._support.churn_sample write {landing} --rows 20000 --files 2 --with-label"
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's code; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
VALIDATE_RESOURCES = k8s.V1ResourceRequirements(
    requests={"cpu": "1", "memory": "2Gi"},
    limits={"memory": "4Gi"},
)
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
    schedule=None,
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
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:

    @task(retries=2)
    def ingest(params=None, run_id=None) -> str:
        """Move the landed files into raw/<run id>/ (a retry finds them already there)."""
        landing = Path(params["landing"] or LANDING)
        target = Path(RAW_ROOT) / run_id.replace(":", "-").replace("+", "-")
        moved = [path for path in sorted(landing.glob("*")) if path.suffix in (".parquet", ".csv")]
        if not moved and not (target.is_dir() and any(target.iterdir())):
            raise AirflowFailException(
                f"no .parquet or .csv files in the landing folder {landing}: land files there "
                f"(sample data: {SAMPLE_COMMAND.format(landing=landing)}) and trigger {DAG_ID} again"
            )
        target.mkdir(parents=True, exist_ok=True)
        for path in moved:
            path.rename(target / path.name)
        return f"file://{target}"

    @task
    def suite(params=None) -> dict:
        """The suite file's expectations, plus the label checks when the data is for training."""
        import yaml

        path = Path(params["suite"] or SUITE)
        try:
            text = path.read_text()
            loaded = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError) as error:
            raise AirflowFailException(f"suite {path} cannot be read: {error}") from None
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
        return {"name": name or path.stem, "expectations": expectations}

    DataValidationOperator(
        task_id="validate",
        input_uri="{{ ti.xcom_pull(task_ids='ingest') }}",
        expectations="{{ ti.xcom_pull(task_ids='suite') }}",
        outlets=[VALIDATED_DATA],
        priority_weight=5,
        container_resources=VALIDATE_RESOURCES,
        **AI_JOBS,
    ).set_upstream([ingest(), suite()])
