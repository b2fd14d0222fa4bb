"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_ai_provider import __version__

# The runtime image released with this version of the package (docker/runtime.Dockerfile): the
# runtime_image option's default. Declared here, not in config.py, because Airflow calls
# get_provider_info while it loads its configuration, before config.py's imports can complete.
DEFAULT_RUNTIME_IMAGE = f"airflow-ai-provider-runtime:{__version__}"

# The docs site (mkdocs.yml); the how-to guides below are its pages, as pyproject.toml's Documentation URL.
DOCS_URL = "https://airflow-ai-provider.github.io/airflow-ai-provider/"


def _guides(*pages: str) -> list[str]:
    """Absolute URLs of docs site pages, given as paths under the site (``operators/training/``)."""
    return [DOCS_URL + page for page in pages]


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata in Airflow's provider info schema (``airflow/provider_info.schema.json``).

    ``versions`` lists the releases, newest first: the first is ``airflow_ai_provider.__version__``
    (a unit test checks it), and the older ones stay as they were released. Each config option's
    ``version_added`` is the release that introduced it, so it stays literal when the version moves on.
    """
    return {
        "package-name": "airflow-ai-provider",
        "name": "AI Provider",
        "description": (
            "Run model inference, retraining and validation as KubernetesPodOperator pods or local "
            "subprocesses, recorded in MLflow and chained with Assets."
        ),
        # Release history, newest first; a release adds its number at the head (see the docstring).
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "how-to-guide": _guides(
                    "operators/batch_inference/",
                    "operators/training/",
                    "operators/data_validation/",
                    "operators/quality_gate/",
                    "operators/drift/",
                    "operators/promotion/",
                    "connections/",
                    "lineage/",
                ),
                "tags": ["machine-learning", "software"],
            },
            {
                "integration-name": "Object storage",
                "external-doc-url": (
                    "https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/objectstorage.html"
                ),
                "how-to-guide": _guides("templates/churn_ingest/", "deploy/s3_iam/"),
                "tags": ["software"],
            },
            {
                "integration-name": "Kubernetes",
                "external-doc-url": "https://kubernetes.io/",
                "how-to-guide": _guides("kubernetes/", "runtime_image/", "deploy/"),
                "tags": ["software"],
            },
        ],
        "operators": [
            {
                "integration-name": "MLflow",
                "python-modules": [
                    "airflow_ai_provider.operators.inference",
                    "airflow_ai_provider.operators.training",
                    "airflow_ai_provider.operators.data_validation",
                    "airflow_ai_provider.operators.quality_gate",
                    "airflow_ai_provider.operators.drift",
                    "airflow_ai_provider.operators.promotion",
                ],
            }
        ],
        "hooks": [
            {"integration-name": "MLflow", "python-modules": ["airflow_ai_provider.hooks.mlflow"]},
        ],
        "triggers": [
            {
                "integration-name": "Object storage",
                "python-modules": ["airflow_ai_provider.triggers.landed_files"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_ai_provider.hooks.mlflow.MlflowHook",
                "hook-name": "MLflow",
                "connection-type": "mlflow",
                "conn-fields": {
                    "registry_uri": {
                        "label": "Model registry URI",
                        "description": "Only when the registry is not the tracking server.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "experiment_name": {
                        "label": "Default experiment",
                        "description": "Experiment for DAG runs; default airflow/<dag_id>.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "token": {
                        "label": "Bearer token",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "insecure_tls": {
                        "label": "Skip TLS verification",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "host": "Tracking URI",
                        "login": "Username",
                        "password": "Password",
                    },
                    "placeholders": {
                        "host": "https://mlflow.example.com",
                        "login": "basic-auth user (optional)",
                        "password": "basic-auth password (optional)",
                    },
                },
            }
        ],
        "extra-links": ["airflow_ai_provider.links.MlflowRunLink"],
        "asset-uris": [
            {
                "schemes": ["mlflow-model"],
                "handler": "airflow_ai_provider.assets.sanitize_uri",
                "factory": "airflow_ai_provider.assets.create_asset",
                "to_openlineage_converter": "airflow_ai_provider.openlineage.convert_model_asset",
            }
        ],
        "config": {
            "ai_provider": {
                "description": "Defaults for the AI provider's operators.",
                "options": {
                    "execution_mode": {
                        "description": (
                            "Where AI jobs run when an operator does not say: ``local`` (a subprocess "
                            "of the worker) or ``kubernetes`` (a pod through KubernetesPodOperator)."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "kubernetes",
                        "default": "local",
                    },
                    "runtime_image": {
                        "description": "Runtime image for kubernetes mode when an operator names none.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "registry.example.com/ml/churn-runtime:1.4.0",
                        "default": DEFAULT_RUNTIME_IMAGE,
                    },
                    "service_timeout": {
                        "description": (
                            "Seconds one try may wait on an MLflow or S3 endpoint that does not answer "
                            "(all attempts of a request included) before it fails and is retried. The "
                            "worker's MLflow calls and the runtime's MLflow and S3 clients derive their "
                            "timeouts and retries from it; the runtime gets it as "
                            "AI_PROVIDER_SERVICE_TIMEOUT. MLFLOW_HTTP_* variables set in the environment "
                            "win for MLflow."
                        ),
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "60",
                        "default": "20",
                    },
                    "model_cache_dir": {
                        "description": (
                            "Folder where local runtimes keep the model versions they downloaded, shared "
                            "by every shard and task on the worker (checked by checksum on each use, "
                            "filled once when shards start together). Unset: "
                            "<temp dir>/airflow-ai-model-cache-<uid>; 'off' turns the cache off. The "
                            "runtime gets it as AI_PROVIDER_MODEL_CACHE. Pods use a cache only when "
                            "they mount a volume at /var/cache/airflow-ai-models (docs/kubernetes.md)."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/cache/airflow-ai-models",
                        "default": None,
                    },
                    "model_cache_max_mb": {
                        "description": (
                            "Megabytes the model cache may hold; after each download the least recently "
                            "used versions are removed until it fits (never one a job is loading)."
                        ),
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "8192",
                        "default": "2048",
                    },
                    "warm_runtime": {
                        "description": (
                            "Start local runtimes in a warm runtime server: one process per worker, "
                            "interpreter and package build that imported numpy, pyarrow, pandas, "
                            "scikit-learn, MLflow and Great Expectations once and forks one child per "
                            "job (its own process group, environment, scratch folder and exit code), so "
                            "a job does not pay those imports. The first task of a DAG with local AI "
                            "tasks starts the server in the background. A job falls back to a new process "
                            "when the server cannot be used, and an interpreter that is a script (a "
                            "wrapper) runs every job itself."
                        ),
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "warm_runtime_idle_seconds": {
                        "description": "Seconds the warm runtime server stays up without a job before it exits.",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "1800",
                        "default": "600",
                    },
                    "default_resources_infer": {
                        "description": (
                            "Kubernetes resources (JSON with ``requests`` and ``limits``) of batch inference "
                            "pods, for each resource the operator's ``container_resources`` leaves out."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}',
                        "default": '{"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}',
                    },
                    "default_resources_train": {
                        "description": (
                            "Kubernetes resources (JSON with ``requests`` and ``limits``) of training "
                            "pods, for each resource the operator's ``container_resources`` leaves out."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "32Gi"}}',
                        "default": '{"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}',
                    },
                    "default_resources_validate": {
                        "description": (
                            "Kubernetes resources (JSON with ``requests`` and ``limits``) of data validation "
                            "pods, for each resource the operator's ``container_resources`` leaves out."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}',
                        "default": '{"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}',
                    },
                    "default_resources_evaluate": {
                        "description": (
                            "Kubernetes resources (JSON with ``requests`` and ``limits``) of model evaluation (quality gate) "
                            "pods, for each resource the operator's ``container_resources`` leaves out."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}',
                        "default": '{"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}',
                    },
                    "default_resources_drift": {
                        "description": (
                            "Kubernetes resources (JSON with ``requests`` and ``limits``) of drift detection "
                            "pods, for each resource the operator's ``container_resources`` leaves out."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "6Gi"}}',
                        "default": '{"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}',
                    },
                    "gpu_node_selector": {
                        "description": (
                            "Node selector (JSON) added to pods of operators given ``gpus=``, unless "
                            "the operator sets ``gpu_node_selector``. Empty: none."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": '{"nvidia.com/gpu.present": "true"}',
                        "default": "",
                    },
                    "run_as_user": {
                        "description": (
                            "Non-root uid (also gid and fsGroup) that AI job pods run as unless their "
                            "security context says otherwise; the runtime image's user."
                        ),
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "1000",
                        "default": "1000",
                    },
                    "scratch_size_limit": {
                        "description": (
                            "Size limit of the emptyDir mounted at /tmp in AI job pods (a Kubernetes "
                            "quantity). Empty: no limit beyond the node's."
                        ),
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "20Gi",
                        "default": "",
                    },
                    "cost_per_cpu_hour": {
                        "description": (
                            "Price of one CPU core for one hour, for each AI task's cost estimate (the "
                            "cost.estimate metric on its MLflow run, summed on the DAG run's parent run, "
                            "and the cost in its Asset event). 0: the CPU-seconds are recorded, priced 0."
                        ),
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "0.04",
                        "default": "0",
                    },
                    "cost_per_gb_memory_hour": {
                        "description": (
                            "Price of one GiB of memory for one hour in the cost estimate (pods: the "
                            "memory request, else the limit; local runs: the runtime's peak RSS)."
                        ),
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "0.005",
                        "default": "0",
                    },
                    "cost_per_gpu_hour": {
                        "description": "Price of one GPU for one hour in the cost estimate (pods only).",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "2.5",
                        "default": "0",
                    },
                    "cost_currency": {
                        "description": "Currency of the cost prices, recorded with every estimate.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "EUR",
                        "default": "USD",
                    },
                },
            }
        },
    }
