"""The runtime's few MLflow calls over plain HTTP, without importing MLflow: a version, text artifacts.

Only for ``http(s)`` tracking servers, with the credentials (``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) and TLS settings (``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``) MLflow reads; a client certificate leaves the call to MLflow's
client. Each request waits at most the process's MLflow request timeout, and a transport failure,
``429`` or ``5xx`` is tried again within the process's attempts
(:func:`~.contract.timeouts.process_bounds`). Errors carry MLflow's ``error_code`` so that
:func:`~.tracking.mlflow_error` maps them as it maps the client's.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobServiceError
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.contract.timeouts import failure_text, process_bounds
from airflow_ai_provider.runtime.scratch import write_atomic

#: MLflow's error code for an HTTP status that came without one.
_STATUS_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    429: "REQUEST_LIMIT_EXCEEDED",
}
_RETRY_PAUSE_S = 1.0


class RestError(Exception):
    """An MLflow server's error answer: HTTP ``status`` and MLflow ``error_code``."""

    def __init__(self, status: int, error_code: str | None, message: str) -> None:
        super().__init__(f"{error_code or 'HTTP ' + str(status)}: {message}")
        self.status = status
        self.error_code = error_code


def unavailable(what: str, uri: str, err: OSError) -> JobServiceError:
    """The retryable error for a server that did not answer these calls (with their own wait)."""
    return JobServiceError(f"{what}: MLflow at {uri} {failure_text(err, process_bounds().mlflow_worst_case)}")


def usable(uri: str) -> bool:
    """Whether ``uri`` is a server this module talks to (``http(s)``, no client certificate)."""
    return urllib.parse.urlparse(uri).scheme in ("http", "https") and not os.environ.get(
        "MLFLOW_TRACKING_CLIENT_CERT_PATH"
    )


def call(
    base: str, method: str, path: str, query: dict[str, str] | None = None, data: bytes | None = None
) -> dict[str, Any]:
    """One REST call to ``base`` + ``path``; the JSON answer (``{}`` for an empty one).

    :raises RestError: the server answered with an error.
    :raises OSError: no answer (refused, timed out) after every attempt.
    """
    url = f"{base.rstrip('/')}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in _headers().items():
        request.add_header(name, value)
    bounds = process_bounds()
    for attempt in range(1, bounds.attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=bounds.mlflow_timeout, context=_tls(base)) as answer:
                body = answer.read()
            return json.loads(body) if body.strip() else {}
        except urllib.error.HTTPError as err:
            failure: Exception = _rest_error(err)
            if err.code != 429 and err.code < 500:
                raise failure from None
        except OSError as err:  # refused, reset, timed out
            failure = err
        if attempt == bounds.attempts:
            raise failure
        time.sleep(_RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def model_version(ref: MlflowRef, name: str, version: str) -> dict[str, Any] | None:
    """The registry's ``model_version`` record; ``None`` for any answer but a plain success (the caller
    then asks through MLflow's client, which names the problem).

    :raises OSError: the registry did not answer (refused, timed out) after every attempt.
    """
    registry = ref.registry_uri or ref.tracking_uri
    if not usable(registry):
        return None
    try:
        answer = call(
            registry, "GET", "/api/2.0/mlflow/model-versions/get", {"name": name, "version": version}
        )
    except (RestError, ValueError):
        return None
    record = answer.get("model_version")
    return record if isinstance(record, dict) and record.get("version") == str(version) else None


def log_texts(ref: MlflowRef, texts: dict[str, str]) -> bool:
    """Store ``texts`` (artifact name to text) in the run's artifacts; ``False`` (nothing done) when
    the run's artifact store is neither the server's (``mlflow-artifacts:``) nor a local folder.

    :raises RestError: the server refused (unknown run, credentials...).
    :raises OSError: the server did not answer, or the local folder cannot be written.
    """
    if not usable(ref.tracking_uri) or not ref.run_id:
        return False
    run = call(ref.tracking_uri, "GET", "/api/2.0/mlflow/runs/get", {"run_id": ref.run_id})
    artifact_uri = str(((run.get("run") or {}).get("info") or {}).get("artifact_uri") or "")
    parsed = urllib.parse.urlparse(artifact_uri)
    if parsed.scheme == "mlflow-artifacts":
        for name, text in texts.items():
            path = urllib.parse.quote(f"{parsed.path.strip('/')}/{name}")
            call(ref.tracking_uri, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", data=text.encode())
        return True
    if parsed.scheme == "file" or (artifact_uri.startswith("/") and not parsed.scheme):
        folder = urllib.parse.unquote(parsed.path) if parsed.scheme else artifact_uri
        for name, text in texts.items():
            write_atomic(os.path.join(folder, name), text.encode())
        return True
    return False


def _headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        return {"Authorization": f"Bearer {token}"}
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _tls(base: str) -> ssl.SSLContext | None:
    if urllib.parse.urlparse(base).scheme != "https":
        return None
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() == "true":
        return ssl._create_unverified_context()  # asked for, as in MLflow
    return ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)


def _rest_error(err: urllib.error.HTTPError) -> RestError:
    """The server's error answer, with MLflow's ``error_code`` (from its JSON, else from the status)."""
    try:
        body = json.loads(err.read() or b"{}")
    except (OSError, ValueError):
        body = {}
    body = body if isinstance(body, dict) else {}
    code = (
        body.get("error_code")
        or _STATUS_CODES.get(err.code)
        or ("TEMPORARILY_UNAVAILABLE" if err.code >= 500 else None)
    )
    return RestError(err.code, code, str(body.get("message") or err.reason or "").strip()[:300])
