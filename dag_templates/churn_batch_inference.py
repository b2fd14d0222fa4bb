"""Batch inference: score new data with exactly the model version a promotion announced.

Scheduled on the model's ``mlflow-model://<name>`` Asset (a promotion) or on new scoring data. A
promotion-triggered run scores with the version carried by the triggering event, never "whatever
the alias says now"; a run for new data uses the champion, pinned once for the whole run. The input
is split into shards, one task (one pod in kubernetes mode) per shard. If the model cannot be loaded,
the previous champion scores instead and the predictions say so. For a classifier, predictions below
the confidence threshold go to a review file and a human-in-the-loop review task (no answer within
the timeout means the predictions are accepted as they are); a regression model's predictions have
no confidence column, so nothing is routed to review. The predictions Asset is updated at the end
either way.

Inference runs at high priority in the ``ai_inference`` pool, so training cannot starve it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Asset, AssetAny, Param, task
from kubernetes.client import models as k8s

from airflow_ai_provider.assets import model_asset
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.storage import data_uri

# ---- Config: adapt to your model and data -------------------------------------------------------
DAG_ID = "churn_batch_inference"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")  # a folder or s3://...
MODEL_NAME = "churn"
TASK_TYPE = "classification"  # or "regression": no confidence column, so no review routing
ID_COLUMNS = ["customer_id"]  # copied next to each prediction to join it back
EXTRA_COLUMNS = "error"  # the features come from the model's signature; "ignore" drops other columns
SCORING_DATA = Asset(name="churn_scoring_data", uri=data_uri(DATA_ROOT, "scoring/customers"))
PREDICTIONS = Asset(name="churn_predictions", uri=data_uri(DATA_ROOT, "predictions"))
SHARDS = 2
CONFIDENCE_THRESHOLD = 0.6  # classification: rows below go to human review
REVIEW_SUBJECT = "Review low-confidence churn predictions"
REVIEW_TIMEOUT = timedelta(minutes=float(os.environ.get("AI_TEMPLATES_REVIEW_TIMEOUT_MIN", "60")))
INFERENCE_POOL = os.environ.get("AI_TEMPLATES_INFERENCE_POOL", "ai_inference")
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's code; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
SCORE_RESOURCES = k8s.V1ResourceRequirements(  # each shard's pod
    requests={"cpu": "1", "memory": "2Gi"},
    limits={"memory": "4Gi"},
)
# GPUs: None, or e.g. 1 (one NVIDIA GPU: its limit, a NoSchedule toleration and [ai_provider]
# gpu_node_selector) or {"count": 2, "vendor": "amd"}; see docs/kubernetes.md.
SCORE_GPUS = None
# Notifications (docs/templates/README.md#notifications): Airflow notifiers (BaseNotifier instances,
# e.g. SmtpNotifier or SlackNotifier of their providers); none by default.
REVIEW_NOTIFIERS = []  # called when the review starts waiting for an answer
REVIEW_ASSIGNED_USERS = None  # e.g. [{"id": "alice", "name": "Alice"}]: only they may answer; None: anyone
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

RUN_FOLDER = "{{ run_id | replace(':', '-') | replace('+', '-') }}"
CONFIDENCE = "confidence"  # the column a classifier's predictions carry

with DAG(
    dag_id=DAG_ID,
    schedule=AssetAny(model_asset(MODEL_NAME), SCORING_DATA),
    catchup=False,
    max_active_runs=1,
    tags=["ai", "inference", "template"],
    params={
        "model": Param(
            f"{MODEL_NAME}@champion",
            type=["string", "null"],
            description="used when no promotion triggered",
        ),
        "input_uri": Param(
            SCORING_DATA.uri,
            type=["string", "null"],
            description="file, folder or glob; file:// or s3://",
        ),
        "output_root": Param(
            PREDICTIONS.uri, type=["string", "null"], description="predictions go to <root>/<run>/"
        ),
        "confidence_threshold": Param(
            CONFIDENCE_THRESHOLD,
            type=["number", "null"],
            description="classification: rows below go to human review",
        ),
    },
    default_args={"on_failure_callback": ON_FAILURE_CALLBACK},
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:

    @task
    def pin_model(params=None, triggering_asset_events=None) -> str:
        """The promoted version from the triggering event, or the champion reference."""
        events = list(triggering_asset_events[model_asset(MODEL_NAME)]) if triggering_asset_events else []
        if events:
            return f"{events[-1].extra['model_name']}/{events[-1].extra['model_version']}"
        return params["model"] or f"{MODEL_NAME}@champion"

    score = BatchInferenceOperator.partial(
        task_id="score",
        model="{{ ti.xcom_pull(task_ids='pin_model') }}",
        fallback_model=f"{MODEL_NAME}@champion_previous",
        input_uri="{{ params.input_uri or '" + SCORING_DATA.uri + "' }}",
        output_uri="{{ params.output_root or '" + PREDICTIONS.uri + "' }}/" + RUN_FOLDER,
        id_columns=ID_COLUMNS,
        extra_columns=EXTRA_COLUMNS,
        shard_count=SHARDS,
        pool=INFERENCE_POOL,
        priority_weight=10,
        container_resources=SCORE_RESOURCES,
        gpus=SCORE_GPUS,
        **AI_JOBS,
    ).expand(shard_index=list(range(SHARDS)))

    @task
    def route_low_confidence(params=None, ti=None) -> dict:
        """Copy predictions below the threshold to <output>/review/low_confidence.parquet (only when
        the predictions carry a confidence column: a regression model's do not)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from airflow_ai_provider import storage

        threshold = params["confidence_threshold"]
        threshold = CONFIDENCE_THRESHOLD if threshold is None else threshold
        results = [r for r in ti.xcom_pull(task_ids="score", map_indexes=range(SHARDS)) if r]
        parts = [out["uri"] for r in results for out in r["outputs"]]
        low = []
        for uri in parts:
            reading = storage.filesystem(uri, what="cannot read predictions", aws_conn_id=AWS_CONN_ID)
            with reading as (fs, path):
                if CONFIDENCE not in pq.read_schema(path, filesystem=fs).names:
                    continue
                table = pq.read_table(path, filesystem=fs)
            low.append(table.filter(pc.less(table[CONFIDENCE], threshold)))
        rows = sum(t.num_rows for t in low)
        output_uri = parts[0].rsplit("/", 1)[0] if parts else ""
        review_uri = ""
        if rows:
            review_uri = data_uri(output_uri, "review", "low_confidence.parquet")
            sink = pa.BufferOutputStream()
            pq.write_table(pa.concat_tables(low), sink)
            storage.write_bytes(review_uri, sink.getvalue().to_pybytes(), aws_conn_id=AWS_CONN_ID)
        first = results[0]
        return {
            "low_confidence_rows": rows,
            "review_file": review_uri,
            "reviewable": bool(low),
            "rows": sum(r["rows_out"] for r in results),
            "model_name": first["model"]["name"],
            "model_version": first["model"]["version"],
            "fallback": any(r.get("fallback") for r in results),
            "output_uri": output_uri,
            "mlflow_run_ids": [r["mlflow_run_id"] for r in results],
        }

    routed = route_low_confidence()

    review = HITLOperator(
        task_id="review_low_confidence",
        subject=REVIEW_SUBJECT,
        body="{{ ti.xcom_pull(task_ids='route_low_confidence')['low_confidence_rows'] }} rows below the "
        "threshold are in {{ ti.xcom_pull(task_ids='route_low_confidence')['review_file'] }}.",
        options=["Accept", "Hold"],
        defaults=["Accept"],
        response_timeout=REVIEW_TIMEOUT,
        notifiers=REVIEW_NOTIFIERS,
        assigned_users=REVIEW_ASSIGNED_USERS,
    )

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def needs_review(ti=None) -> bool:
        return ti.xcom_pull(task_ids="route_low_confidence")["low_confidence_rows"] > 0

    @task(outlets=[PREDICTIONS], trigger_rule="none_failed")
    def publish(ti=None, outlet_events=None) -> dict:
        """Announce the predictions with the exact model version that made them."""
        summary = ti.xcom_pull(task_ids="route_low_confidence")
        answer = ti.xcom_pull(task_ids="review_low_confidence") or {}
        if answer.get("chosen_options") == ["Hold"]:
            raise RuntimeError("a reviewer put these predictions on hold")
        default = ["Accept"] if summary["reviewable"] else ["none"]  # "none": nothing to review
        outlet_events[PREDICTIONS].extra = {**summary, "review": answer.get("chosen_options", default)[0]}
        return summary

    pin_model() >> score >> routed >> needs_review() >> review >> publish()
