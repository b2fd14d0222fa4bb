"""Batch inference template: score a dataset with the champion model, one task per shard.

Trigger it from the Airflow UI; the trigger form shows the params below. The model reference is
pinned to one version for the whole DAG run, every shard writes its own Parquet part atomically, and
the ``predictions`` Asset event carries the model version, MLflow run and row count.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Asset, Param

from airflow_ai_provider.operators.inference import BatchInferenceOperator

# ---- Config: adapt to your model and data -------------------------------------------------------
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")
MODEL = "churn@champion"
INPUT_URI = f"file://{DATA_ROOT}/scoring/customers"
OUTPUT_ROOT = f"file://{DATA_ROOT}/predictions"
SHARDS = 2
PREDICTIONS = Asset(name="churn_predictions", uri=OUTPUT_ROOT)
# --------------------------------------------------------------------------------------------------

with DAG(
    dag_id="ai_batch_inference",
    schedule=None,
    catchup=False,
    tags=["ai", "inference", "template"],
    params={
        "model": Param(MODEL, type="string", description="name@alias, name/version or name"),
        "input_uri": Param(INPUT_URI, type="string", description="file, folder or glob; file:// or s3://"),
        "output_root": Param(OUTPUT_ROOT, type="string", description="predictions go to <root>/<run_id>/"),
        "id_columns": Param(["customer_id"], type="array", description="columns kept next to predictions"),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:
    BatchInferenceOperator.partial(
        task_id="score",
        model="{{ params.model }}",
        input_uri="{{ params.input_uri }}",
        output_uri="{{ params.output_root }}/{{ run_id }}",
        id_columns="{{ params.id_columns }}",
        shard_count=SHARDS,
        outlets=[PREDICTIONS],
    ).expand(shard_index=list(range(SHARDS)))
