"""What the control plane and the runtime agree on: exit codes, environment, result, tags, keys.

Both sides import this module; it loads no heavy library and nothing outside ``runtime/``. The
error classes live in :mod:`.errors`, the job spec and result in :mod:`.spec`, and each job's
parameters in :mod:`.params`; this module holds the names and numbers that tie them together.
"""

from __future__ import annotations

from typing import Final

RUNTIME_MODULE: Final = "airflow_ai_provider.runtime"

# --- process ---------------------------------------------------------------------------------------
EXIT_OK: Final = 0
EXIT_UNEXPECTED: Final = 1
#: Bad input or configuration: never retried.
EXIT_INPUT: Final = 2
#: A service could not be reached, did not answer in time, or the job was stopped: retried.
EXIT_SERVICE: Final = 3

SPEC_ENV: Final = "AI_PROVIDER_JOB_SPEC"
RESULT_PATH_ENV: Final = "AI_PROVIDER_RESULT_PATH"
#: Where the KubernetesPodOperator XCom sidecar reads the result.
DEFAULT_RESULT_PATH: Final = "/airflow/xcom/return.json"
#: Seconds every call to MLflow or object storage may wait in all (``[ai_provider] service_timeout``).
SERVICE_TIMEOUT_ENV: Final = "AI_PROVIDER_SERVICE_TIMEOUT"
#: A per-task-instance marker in the environment of every process of a local job.
MARKER_ENV: Final = "AI_PROVIDER_TASK_MARKER"
#: The worker's model cache for the runtime: ``<folder>`` or ``<folder>:<max MB>`` (unset: no cache).
MODEL_CACHE_ENV: Final = "AI_PROVIDER_MODEL_CACHE"
#: ``1``: the runtime ends with the interpreter's normal shutdown (``atexit`` handlers) instead of
#: ``os._exit`` right after the result is written.
FULL_EXIT_ENV: Final = "AI_PROVIDER_RUNTIME_FULL_EXIT"
#: The guard that closes a dead task's MLflow runs, and the line the task writes when it closed them.
RUN_GUARD_MODULE: Final = f"{RUNTIME_MODULE}.run_guard"
RUN_GUARD_DONE: Final = "done"

# --- result ----------------------------------------------------------------------------------------
STATUS_SUCCESS: Final = "success"
STATUS_FAILED: Final = "failed"


class Tag:
    """MLflow tag keys written by the provider (runs and model versions)."""

    ROLE: Final = "airflow.role"
    DAG_ID: Final = "airflow.dag_id"
    RUN_ID: Final = "airflow.run_id"
    TASK_ID: Final = "airflow.task_id"
    MAP_INDEX: Final = "airflow.map_index"
    TRY_NUMBER: Final = "airflow.try_number"
    LOGICAL_DATE: Final = "airflow.logical_date"
    AIRFLOW_URL: Final = "airflow.url"
    PARENT_RUN_ID: Final = "mlflow.parentRunId"
    RUN_NAME: Final = "mlflow.runName"

    JOB: Final = "ai.job"
    EXECUTION_MODE: Final = "ai.execution_mode"
    IMAGE: Final = "ai.image"
    PYTHON: Final = "ai.python"
    ERROR: Final = "ai.error"
    MODEL_NAME: Final = "ai.model_name"
    MODEL_VERSION: Final = "ai.model_version"
    MODEL_ALIAS: Final = "ai.model_alias"
    MODEL_URI: Final = "ai.model_uri"
    #: The device the model ran on (``cpu``, ``cuda:0``), as the runtime reports it.
    DEVICE: Final = "ai.device"
    INPUT_DIGEST: Final = "ai.input_digest"
    OUTPUT_URI: Final = "ai.output_uri"
    OUTPUTS: Final = "ai.outputs"
    FALLBACK_USED: Final = "ai.fallback_used"
    FALLBACK_REASON: Final = "ai.fallback_reason"
    #: An embedding output's order-independent digest of its (ids, content_hash) rows.
    CONTENT_DIGEST: Final = "ai.content_digest"
    #: Why every row was computed (``first run``, ``model version changed from N``), or ``none``.
    RECOMPUTE_REASON: Final = "ai.recompute_reason"

    # Lineage: what ``airflow-ai lineage`` reads back. A trained model version (and its run):
    CODE_REFERENCE: Final = "ai.code_reference"
    TRAINING_DATA_URI: Final = "ai.training_data_uri"
    TRAINING_DATA_DIGEST: Final = "ai.training_data_digest"
    # A data validation run:
    SUITE: Final = "ai.suite"
    VALIDATION_SUCCESS: Final = "ai.validation_success"
    REPORT_URI: Final = "ai.report_uri"
    # A quality gate run:
    DECISION: Final = "ai.decision"
    CHALLENGER_NAME: Final = "ai.challenger_name"
    CHALLENGER_VERSION: Final = "ai.challenger_version"
    CHAMPION_VERSION: Final = "ai.champion_version"
    # A promotion run records its result as ``ai.<key>`` tags; the alias moved and its new version:
    ALIAS: Final = "ai.alias"
    VERSION: Final = "ai.version"
    # The version an alias moved to (approval and promotion) or away from (rollback):
    APPROVED_BY: Final = "ai.approved_by"
    APPROVED_AT: Final = "ai.approved_at"
    APPROVAL_COMMENT: Final = "ai.approval_comment"
    PROMOTED_AT: Final = "ai.promoted_at"
    PROMOTED_BY_DAG_RUN: Final = "ai.promoted_by_dag_run"
    PROMOTION_REASON: Final = "ai.promotion_reason"
    REPLACED_VERSION: Final = "ai.replaced_version"
    ROLLED_BACK_AT: Final = "ai.rolled_back_at"
    ROLLED_BACK_BY_DAG_RUN: Final = "ai.rolled_back_by_dag_run"
    ROLLBACK_REASON: Final = "ai.rollback_reason"


class Artifact:
    """Artifact names in a task's MLflow run."""

    JOB_RESULT: Final = "job_result.json"


class EventKey:
    """Keys of the ``extra`` of the Asset events the operators emit."""

    MODEL_NAME: Final = "model_name"
    MODEL_VERSION: Final = "model_version"
    MODEL_ALIAS: Final = "model_alias"
    MLFLOW_RUN_ID: Final = "mlflow_run_id"
    ROW_COUNT: Final = "row_count"
    OUTPUT_URI: Final = "output_uri"
    INPUT_DIGEST: Final = "input_digest"
    ROWS_PREDICTED: Final = "rows_predicted"
    ROWS_REUSED: Final = "rows_reused"
    CONTENT_DIGEST: Final = "content_digest"
    RECOMPUTE_REASON: Final = "recompute_reason"
