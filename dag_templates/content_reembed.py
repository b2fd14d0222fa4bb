"""Content re-embedding: new content or a new embedding model -> vectors (+ a vector index) -> Asset.

Scheduled on the content Asset OR the embedding model's ``mlflow-model://<name>`` Asset (which the
``content_embedder_train`` template updates when it promotes a model). A run started by a promotion
embeds with exactly the version that event carries; any other run pins the champion once for the
whole run. The run finds the previous vectors output (the latest event of this template's own
vectors Asset, read from Airflow's metadata database), then embeds the content into a new folder
``<vectors>/<run>/``: Parquet with the id columns, ``content_hash`` and the vector column. Rows whose
id and content hash are unchanged since the previous output, scored by the same model version, are
copied from it instead of embedded again, so an edit of a few documents costs a few predictions and
a new model version recomputes everything. With ``BUILD_INDEX`` a FAISS index of the vectors is
written next to them, after a search check (a sample of documents must find themselves). The vectors
Asset is then updated with the model version, the rows reused and predicted, and the content digest.
The data root may be a local folder or ``s3://bucket/prefix``.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Asset, Param, task
from kubernetes.client import models as k8s

from airflow_ai_provider.assets import model_asset
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.storage import data_uri

# ---- Config: adapt to your content and model ----------------------------------------------------
DAG_ID = "content_reembed"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")  # a folder or s3://...
MODEL_NAME = "text_embedder"  # registered by content_embedder_train (or any pyfunc returning vectors)
CONTENT = Asset(name="content_documents", uri=data_uri(DATA_ROOT, "content/documents"))
VECTORS = Asset(name="content_vectors", uri=data_uri(DATA_ROOT, "vectors"))
ID_COLUMNS = ["doc_id"]  # identify a document across runs
CONTENT_COLUMNS = ["text"]  # a change in any of them re-embeds the document
VECTOR_COLUMN = "embedding"  # the model's output, one fixed-size list column
VECTOR_TYPE = "float32"  # or "float64"
BUILD_INDEX = True  # a FAISS index next to the vectors, checked by searching for sample documents
EXTRA_COLUMNS = "ignore"  # input columns that are neither ids nor model inputs are left out
BATCH_SIZE = None  # rows per batch; None: sized from BATCH_MEMORY_MB and the input's metadata
BATCH_MEMORY_MB = None  # memory budget of one batch (e.g. 512 for a large transformer); None: default
INFERENCE_POOL = os.environ.get("AI_TEMPLATES_INFERENCE_POOL", "ai_inference")
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's libraries; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
EMBED_RESOURCES = k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"}, limits={"memory": "4Gi"})
# GPUs: None, or e.g. 1 for a sentence-transformers model (one NVIDIA GPU: its limit, a NoSchedule
# toleration and [ai_provider] gpu_node_selector) or {"count": 2, "vendor": "amd"}; see docs/kubernetes.md.
EMBED_GPUS = None
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

MODEL = model_asset(MODEL_NAME)
RUN_FOLDER = "{{ run_id | replace(':', '-') | replace('+', '-') }}"


def _reported(result: dict, name: str) -> object:
    """A value the embed job reports, in its result's details or metrics."""
    for part in (result.get("details") or {}, result.get("metrics") or {}, result):
        if part.get(name) is not None:
            return part[name]
    return None


with DAG(
    dag_id=DAG_ID,
    schedule=(CONTENT | MODEL),
    catchup=False,
    max_active_runs=1,  # each run reuses the previous run's vectors
    tags=["ai", "embedding", "template"],
    params={
        "model": Param(
            f"{MODEL_NAME}@champion", type=["string", "null"], description="used when no promotion triggered"
        ),
        "input_uri": Param(
            CONTENT.uri,
            type=["string", "null"],
            description="content: file, folder or glob; file:// or s3://",
        ),
        "recompute_all": Param(
            False, type=["boolean", "null"], description="embed every document, reusing nothing"
        ),
    },
    default_args={"on_failure_callback": ON_FAILURE_CALLBACK},
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:

    @task
    def pin_model(params=None, triggering_asset_events=None) -> str:
        """The promoted version from the triggering model event, or the champion reference."""
        events = list(triggering_asset_events[MODEL]) if triggering_asset_events else []
        if events:
            return f"{events[-1].extra['model_name']}/{events[-1].extra['model_version']}"
        return params["model"] or f"{MODEL_NAME}@champion"

    @task(inlets=[VECTORS])
    def find_previous(params=None, inlet_events=None) -> str | None:
        """The output folder of the latest vectors event, or ``None`` (first run, or recompute_all)."""
        events = list(inlet_events[VECTORS])
        if params["recompute_all"] or not events:
            return None
        return events[-1].extra.get("output_uri") or None

    embed = BatchInferenceOperator(
        task_id="embed",
        model="{{ ti.xcom_pull(task_ids='pin_model') }}",
        input_uri="{{ params.input_uri or '" + CONTENT.uri + "' }}",
        output_uri=data_uri(VECTORS.uri, RUN_FOLDER),
        id_columns=ID_COLUMNS,
        content_columns=CONTENT_COLUMNS,
        output_columns=[VECTOR_COLUMN],
        vector_type=VECTOR_TYPE,
        previous_output="{{ ti.xcom_pull(task_ids='find_previous') }}",
        vector_index=VECTOR_COLUMN if BUILD_INDEX else None,
        extra_columns=EXTRA_COLUMNS,
        batch_size=BATCH_SIZE,
        batch_memory_mb=BATCH_MEMORY_MB,
        pool=INFERENCE_POOL,
        priority_weight=10,
        container_resources=EMBED_RESOURCES,
        gpus=EMBED_GPUS,
        **AI_JOBS,
    )

    @task(outlets=[VECTORS])
    def publish(run_id=None, ti=None, outlet_events=None) -> dict:
        """Announce the vectors with the model version, what was reused and the content digest."""
        result = ti.xcom_pull(task_ids="embed")
        rows = int(result.get("rows_out", 0))
        reused = int(_reported(result, "rows_reused") or 0)
        predicted = _reported(result, "rows_predicted")
        summary = {
            "model_name": result["model"]["name"],
            "model_version": result["model"]["version"],
            "mlflow_run_id": result.get("mlflow_run_id"),
            "output_uri": data_uri(VECTORS.uri, run_id.replace(":", "-").replace("+", "-")),
            "output_files": [out["uri"] for out in result.get("outputs", [])],
            "rows": rows,
            "rows_reused": reused,
            "rows_predicted": rows - reused if predicted is None else int(predicted),
            "recompute_reason": _reported(result, "recompute_reason"),
            "content_digest": _reported(result, "content_digest") or result.get("input_digest"),
            "previous_output": ti.xcom_pull(task_ids="find_previous"),
            "vector_column": VECTOR_COLUMN,
            "index_files": _reported(result, "index_files") or [],
        }
        outlet_events[VECTORS].extra = summary
        return summary

    [pin_model(), find_previous()] >> embed >> publish()
