"""Ingestion + data validation: landed customer files -> raw zone -> Great Expectations -> Asset.

New files arrive in the landing folder (``python -m tests._support.churn_sample write`` writes
sample ones; in your deployment an upstream system does). This DAG moves them into a run-specific raw
folder, validates them with the suite in ``include/churn_expectations.json``, and on success updates
the ``churn_validated_data`` Asset with the data digest, row count and suite name. The retraining
template is scheduled on that Asset. A failed validation fails the run loudly and updates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import DAG, Asset, Param, task

from airflow_ai_provider.operators.data_validation import DataValidationOperator

# ---- Config: adapt to your data -----------------------------------------------------------------
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")
LANDING = f"{DATA_ROOT}/landing/customers"
RAW_ROOT = f"{DATA_ROOT}/raw/customers"
SUITE = str(Path(__file__).parent / "include" / "churn_expectations.json")
VALIDATED_DATA = Asset(name="churn_validated_data", uri=f"file://{DATA_ROOT}/raw/customers")
# --------------------------------------------------------------------------------------------------

with DAG(
    dag_id="churn_ingest",
    schedule=None,
    catchup=False,
    tags=["ai", "data", "template"],
    params={
        "landing": Param(LANDING, type="string", description="folder where new customer files land"),
        "suite": Param(SUITE, type="string", description="Great Expectations suite (JSON or YAML)"),
    },
    doc_md=__doc__,
) as dag:

    @task(retries=2)
    def ingest(params=None, run_id=None) -> str:
        """Move the landed files into raw/<run id>/ (a retry finds them already there)."""
        landing = Path(params["landing"])
        target = Path(RAW_ROOT) / run_id.replace(":", "-").replace("+", "-")
        target.mkdir(parents=True, exist_ok=True)
        moved = [path for path in sorted(landing.glob("*")) if path.suffix in (".parquet", ".csv")]
        for path in moved:
            path.rename(target / path.name)
        if not any(target.iterdir()):
            raise FileNotFoundError(f"no .parquet or .csv files landed in {landing}")
        return f"file://{target}"

    DataValidationOperator(
        task_id="validate",
        input_uri="{{ ti.xcom_pull(task_ids='ingest') }}",
        suite_uri="{{ params.suite }}",
        outlets=[VALIDATED_DATA],
        priority_weight=5,
    ).set_upstream(ingest())
