"""The runtime's few MLflow calls over plain HTTP, without importing MLflow: a version, text artifacts.

Only for ``http(s)`` tracking servers, through the transport both planes share
(:class:`~.contract.mlflow_http.MlflowHttp`: MLflow's credential and TLS variables, client
certificates included), with this process's bounds (:func:`~.contract.timeouts.process_bounds`):
each request waits at most the MLflow request timeout, and a transport failure, ``429`` or ``5xx`` is
tried again within the attempts. Errors are :class:`RestError` with MLflow's ``error_code``, so that
:func:`~.tracking.mlflow_error` maps an answer as it maps the client's.
"""

from __future__ import annotations

import os
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobServiceError
from airflow_ai_provider.runtime.contract.mlflow_http import (
    NO_ANSWER,
    TLS,
    MlflowHttp,
    usable,
)
from airflow_ai_provider.runtime.contract.mlflow_http import MlflowHttpError as RestError
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.contract.timeouts import failure_text, process_bounds

_RETRY_PAUSE_S = 1.0


def unavailable(what: str, uri: str, err: BaseException) -> JobServiceError:
    """The retryable error for a server that did not answer these calls (with their own wait)."""
    return JobServiceError(f"{what}: MLflow at {uri} {failure_text(err, process_bounds().mlflow_worst_case)}")


def transport(ref: MlflowRef) -> MlflowHttp:
    """The transport to the spec's servers, with this process's bounds and environment."""
    bounds = process_bounds()
    return MlflowHttp(
        ref.tracking_uri,
        ref.registry_uri,
        os.environ,
        timeout=bounds.mlflow_timeout,
        attempts=bounds.attempts,
        pause=_RETRY_PAUSE_S,
    )


def model_version(ref: MlflowRef, name: str, version: str) -> dict[str, Any] | None:
    """The registry's ``model_version`` record; ``None`` for any answer but a plain success (the caller
    then asks through MLflow's client, which names the problem).

    :raises RestError: of a kind in :data:`NO_ANSWER`: the registry did not answer after every attempt;
        of kind :data:`TLS`: its certificate failed verification.
    """
    if not usable(ref.registry_uri or ref.tracking_uri):
        return None
    try:
        answer = transport(ref).call(
            "GET", "model-versions/get", {"name": name, "version": version}, registry=True
        )
    except RestError as err:
        if err.kind in NO_ANSWER or err.kind == TLS:
            raise
        return None
    record = answer.get("model_version")
    return record if isinstance(record, dict) and record.get("version") == str(version) else None


def log_texts(ref: MlflowRef, texts: dict[str, str]) -> bool:
    """Store ``texts`` (artifact name to text) in the run's artifacts; ``False`` (nothing done) when
    the run's artifact store is neither the server's (``mlflow-artifacts:``) nor a local folder.

    :raises RestError: the server refused (unknown run, credentials...) or did not answer
        (its ``kind`` in :data:`NO_ANSWER`).
    :raises OSError: the local folder cannot be written.
    """
    if not usable(ref.tracking_uri) or not ref.run_id:
        return False
    http = transport(ref)
    run = http.call("GET", "runs/get", {"run_id": ref.run_id})
    artifact_uri = str(((run.get("run") or {}).get("info") or {}).get("artifact_uri") or "")
    if not artifact_uri:
        return False
    return all(http.put_artifact(artifact_uri, name, text.encode()) for name, text in texts.items())
