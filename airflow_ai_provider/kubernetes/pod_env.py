"""What an AI job's pod carries about its task: lookup labels, annotations and environment."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.config import model_cache_env, service_timeout
from airflow_ai_provider.runtime.contract import SERVICE_TIMEOUT_ENV

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context

    from airflow_ai_provider.runtime.contract.spec import JobSpec

LABEL_PREFIX = "ai.airflow.apache.org/"
#: Mount a volume here (emptyDir, hostPath or PVC) and the pod's runtime keeps its model cache on it.
MODEL_CACHE_MOUNT = "/var/cache/airflow-ai-models"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")


def safe_label_value(value: Any) -> str:
    """A valid Kubernetes label value (<= 63 chars of ``[A-Za-z0-9._-]``, alphanumeric at both ends).

    Other characters become ``_``; a longer value keeps its start and gets a short hash of the whole.
    """
    text = _LABEL_VALUE.sub("_", str(value)).strip("._-")
    if len(text) > 63:
        digest = hashlib.sha256(str(value).encode()).hexdigest()[:10]
        text = f"{text[:52].rstrip('._-')}-{digest}"
    return text


def _prefixed(values: dict[str, Any], convert: Callable[[Any], str]) -> dict[str, str]:
    """The ``values`` that are set, as ``ai.airflow.apache.org/<name-with-dashes>`` keys."""
    return {
        f"{LABEL_PREFIX}{key.replace('_', '-')}": convert(value) for key, value in values.items() if value
    }


def trace_env(carrier: dict[str, str] | None, openlineage_parent_id: str | None = None) -> dict[str, str]:
    """Environment that carries the task's trace and lineage context into the pod.

    ``TRACEPARENT``/``TRACESTATE`` (W3C trace context, the variables OpenTelemetry SDKs read) come
    from the carrier; ``OPENLINEAGE_PARENT_ID`` (``<namespace>/<job>/<run id>``) from the
    OpenLineage provider when it is installed.
    """
    env: dict[str, str] = {}
    carrier = {str(k).lower(): str(v) for k, v in (carrier or {}).items()}
    if carrier.get("traceparent"):
        env["TRACEPARENT"] = carrier["traceparent"]
        if carrier.get("tracestate"):
            env["TRACESTATE"] = carrier["tracestate"]
    if openlineage_parent_id:
        env["OPENLINEAGE_PARENT_ID"] = openlineage_parent_id
    return env


def trace_carrier(ti: Any) -> dict[str, str]:
    """W3C trace context of the running task: its current span, else the carrier Airflow gave the task."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    if "traceparent" not in carrier:
        carrier = dict(getattr(ti, "context_carrier", None) or {})
    return carrier


def openlineage_parent_id(ti: Any) -> str | None:
    """``<namespace>/<job>/<run id>`` of the task's OpenLineage run, when the provider is installed."""
    try:
        from airflow.providers.openlineage.plugins.macros import lineage_parent_id
    except ImportError:
        return None
    try:
        return lineage_parent_id(ti)
    except Exception:  # lineage is best effort: never fail the job for it
        return None


def task_keys(context: Context | None, task: BaseOperator) -> dict[str, str | None]:
    """DAG, task and run ids of ``task``; without a context (a dry run) the run id is unknown."""
    if context is not None:
        ti = context["ti"]
        return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id}
    return {"dag_id": task.dag_id if task.has_dag() else None, "task_id": task.task_id, "run_id": None}


def pod_labels(keys: dict[str, str | None], job: str, spec: JobSpec | None) -> dict[str, str]:
    """Labels to find an AI job's pods by DAG, task, run (``keys``), job type and model of ``spec``.

    Values are made valid label values (:func:`safe_label_value`); the annotations keep them whole.
    """
    if spec is None:
        return _prefixed({**keys, "job": job}, safe_label_value)
    if spec.model is not None:
        model = {"model_name": spec.model.name, "model_version": str(spec.model.version)}
    else:
        model = {"model_name": spec.params.get("model_name")}
    return _prefixed({**keys, "job": spec.job, **model}, safe_label_value)


def pod_annotations(keys: dict[str, str | None], spec: JobSpec | None) -> dict[str, str]:
    """Annotations with the full, unshortened task ``keys``, MLflow run and model URI of ``spec``."""
    if spec is None:
        return _prefixed(keys, str)
    model = spec.model
    return _prefixed(
        {
            **keys,
            "mlflow_run_id": spec.mlflow.run_id,
            "model_uri": f"models:/{model.name}/{model.version}" if model is not None else None,
        },
        str,
    )


def task_env(context: Context | None) -> dict[str, str]:
    """Airflow identity, service timeout, W3C trace context and OpenLineage parent, for the pod."""
    if context is None:
        return {}
    ti = context["ti"]
    env = {
        "AIRFLOW_CTX_DAG_ID": str(ti.dag_id),
        "AIRFLOW_CTX_TASK_ID": str(ti.task_id),
        "AIRFLOW_CTX_DAG_RUN_ID": str(ti.run_id),
        "AIRFLOW_CTX_TRY_NUMBER": str(ti.try_number),
        SERVICE_TIMEOUT_ENV: str(service_timeout()),
    }
    return {**env, **trace_env(trace_carrier(ti), openlineage_parent_id(ti))}


def pod_model_cache_env(container: dict[str, Any]) -> dict[str, str]:
    """``$AI_PROVIDER_MODEL_CACHE`` for a main ``container`` that mounts a writable volume at
    :data:`MODEL_CACHE_MOUNT` (the cache goes to its ``models`` subfolder, which the runtime's user
    creates; size limit ``[ai_provider] model_cache_max_mb``); empty when nothing is mounted there."""
    for mount in container.get("volumeMounts") or []:
        if str(mount.get("mountPath", "")).rstrip("/") == MODEL_CACHE_MOUNT and not mount.get("readOnly"):
            return model_cache_env(f"{MODEL_CACHE_MOUNT}/models")
    return {}
