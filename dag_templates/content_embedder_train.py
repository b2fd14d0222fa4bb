"""Embedding model training: corpus -> train + register a text embedder -> champion -> model Asset.

Trains the embedding model of the content re-embedding template with ``TRAINING_FUNCTION`` (by
default TF-IDF + truncated SVD, ``dag_templates/include/text_embedding.py``) on the corpus, registers
it as a new version (alias ``challenger``), and moves ``champion`` to it. The promotion updates the
``mlflow-model://<name>`` Asset with the new version, and ``content_reembed``, scheduled on it,
re-embeds all content with that version. The training function refuses a model whose documents'
nearest neighbours share their ``LABEL`` less often than ``min_topic_accuracy``: then nothing is
registered and the champion stays. Trigger it when you want a new model (or give it a schedule).
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
from kubernetes.client import models as k8s

from airflow_ai_provider.assets import model_asset
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments
from airflow_ai_provider.operators.promotion import PromoteModelOperator
from airflow_ai_provider.operators.training import RetrainModelOperator
from airflow_ai_provider.storage import data_uri

# ---- Config: adapt to your corpus and model -----------------------------------------------------
DAG_ID = "content_embedder_train"
DATA_ROOT = os.environ.get("AI_TEMPLATES_DATA_ROOT", "/tmp/airflow-ai-provider")  # a folder or s3://...
MODEL_NAME = "text_embedder"
TRAINING_FUNCTION = "dag_templates.include.text_embedding:train"
CORPUS = data_uri(DATA_ROOT, "content/documents")  # the content itself, or a corpus like it
ID_COLUMNS = ["doc_id"]
TEXT_COLUMNS = ["text"]  # the model's input
LABEL = "topic"  # a category per document: the training metric checks neighbours share it
HYPERPARAMETERS = {"dimensions": 64, "max_features": 20000, "seed": 0, "min_topic_accuracy": 0.5}
INTENDED_USE = "Embed documents for similarity search within this corpus; not a general-purpose encoder."
TRAINING_POOL = os.environ.get("AI_TEMPLATES_TRAINING_POOL", "ai_training")
MLFLOW_CONN_ID = os.environ.get("AI_TEMPLATES_MLFLOW_CONN_ID", "mlflow_default")
AWS_CONN_ID = os.environ.get("AI_TEMPLATES_AWS_CONN_ID")  # S3 for the worker and local runtimes, not pods
# Kubernetes mode only (AIRFLOW__AI_PROVIDER__EXECUTION_MODE=kubernetes); local mode ignores these.
IMAGE = os.environ.get("AI_TEMPLATES_IMAGE")  # with the model's code; None: [ai_provider] runtime_image
S3_SECRET = os.environ.get("AI_TEMPLATES_S3_SECRET")  # Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
RUNTIME_CONFIGMAP = os.environ.get("AI_TEMPLATES_RUNTIME_CONFIGMAP")  # ConfigMap: AWS_ENDPOINT_URL, ...
SERVICE_ACCOUNT = os.environ.get("AI_TEMPLATES_SERVICE_ACCOUNT")  # e.g. bound to a cloud role (IRSA)
TRAIN_RESOURCES = k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "2Gi"}, limits={"memory": "4Gi"})
TRAIN_GPUS = None  # e.g. 1 to fine-tune a transformer; see docs/kubernetes.md
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

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["ai", "embedding", "training", "template"],
    params={
        "corpus_uri": Param(CORPUS, type=["string", "null"], description="training corpus; file:// or s3://"),
    },
    default_args={"on_failure_callback": ON_FAILURE_CALLBACK},
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:
    train = RetrainModelOperator(
        task_id="train",
        training_function=TRAINING_FUNCTION,
        input_uri="{{ params.corpus_uri or '" + CORPUS + "' }}",
        label_column=LABEL,
        id_columns=ID_COLUMNS,
        feature_columns=TEXT_COLUMNS,
        model_name=MODEL_NAME,
        hyperparameters=HYPERPARAMETERS,
        intended_use=INTENDED_USE,
        pool=TRAINING_POOL,
        container_resources=TRAIN_RESOURCES,
        gpus=TRAIN_GPUS,
        **AI_JOBS,
    )

    promote = PromoteModelOperator(
        task_id="promote",
        model=f"{MODEL_NAME}/{VERSION}",
        reason="trained on {{ params.corpus_uri or '" + CORPUS + "' }}",
        outlets=[model_asset(MODEL_NAME)],  # content_reembed re-embeds everything with it
        mlflow_conn_id=MLFLOW_CONN_ID,
    )

    train >> promote
