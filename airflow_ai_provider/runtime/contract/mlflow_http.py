"""The one MLflow HTTP transport of both planes: bounded, retried REST calls, artifact writes, one error.

Standard library only (``urllib``), so the worker and the runtime talk to an ``http(s)`` tracking
server without importing MLflow or ``requests``. Credentials and TLS settings are read under MLflow's
variable names; proxies and ``.netrc`` of the environment are ignored.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from airflow_ai_provider.runtime.contract.files import write_atomic
from airflow_ai_provider.runtime.contract.timeouts import MLFLOW_ACCESS_CODES

#: How a call failed: the server answered an error, refused access, timed out or was unreachable,
#: or its TLS certificate failed verification (configuration: a retry meets the same certificate).
ANSWERED, ACCESS, TIMEOUT, UNREACHABLE, TLS = "answered", "access", "timeout", "unreachable", "tls"
#: The error code given to a certificate that failed verification.
TLS_VERIFICATION_FAILED = "TLS_VERIFICATION_FAILED"
#: The kinds where the server gave no usable answer (infrastructure, retried by the task).
NO_ANSWER = frozenset({TIMEOUT, UNREACHABLE})
#: MLflow's error code for an HTTP status that came without one.
STATUS_CODES = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    429: "REQUEST_LIMIT_EXCEEDED",
}
#: Answers worth another attempt: throttled or failing servers.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_API, _ARTIFACTS = "/api/2.0/mlflow/", "/api/2.0/mlflow-artifacts/artifacts/"


class MlflowHttpError(Exception):
    """An MLflow call failed. The message names the endpoint and, for an answer, the server's first
    line; never a header or credential.

    :param message: the server's message, or what went wrong.
    :param error_code: MLflow's error code (``RESOURCE_DOES_NOT_EXIST``...): the server's, else the
        one of its HTTP status (:data:`STATUS_CODES`, ``TEMPORARILY_UNAVAILABLE`` for 5xx).
    :param http_status: the HTTP status of the answer, when there was one.
    :param kind: :data:`ANSWERED`, :data:`ACCESS`, :data:`TIMEOUT`, :data:`UNREACHABLE` (also a
        429 or 5xx answer on every attempt) or :data:`TLS`.
    """

    def __init__(
        self,
        message: str,
        error_code: str | None = None,
        http_status: int | None = None,
        kind: str = ANSWERED,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.http_status = http_status
        self.kind = kind


def usable(*uris: str | None) -> bool:
    """Whether every given store is an ``http(s)://`` server, which :class:`MlflowHttp` talks to."""
    return all(urllib.parse.urlsplit(uri or "").scheme in ("http", "https") for uri in uris)


class MlflowHttp:
    """Calls to an MLflow server's REST API, each bounded in time and retried within its attempts.

    Every request waits at most ``timeout`` seconds for the connection and for each read of the
    answer, and is sent at most ``attempts`` times in all (a refused or dropped connection, a timeout,
    HTTP 429 or 5xx), ``pause`` seconds apart; so one call waits at most
    ``attempts * timeout + (attempts - 1) * pause`` seconds. Refused credentials (401, 403) and any
    other error answer are not sent again.

    :param tracking_uri: ``http(s)://`` address of the tracking server, without credentials.
    :param registry_uri: the model registry's address (the tracking server when ``None``).
    :param env: where credentials and TLS settings are read, under MLflow's variable names:
        ``MLFLOW_TRACKING_TOKEN`` (bearer), ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (basic auth),
        ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (CA bundle) and
        ``MLFLOW_TRACKING_CLIENT_CERT_PATH`` (client certificate and key, PEM).
    :param timeout: seconds per wait (connect, each read).
    :param attempts: sends per request.
    :param pause: seconds between attempts.
    """

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None,
        env: Mapping[str, str],
        *,
        timeout: float,
        attempts: int,
        pause: float = 0.0,
    ) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self.registry_uri = (registry_uri or tracking_uri).rstrip("/")
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.pause = pause
        self._headers = _auth_headers(env)
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if any(uri.startswith("https:") for uri in (self.tracking_uri, self.registry_uri)):
            handlers.append(urllib.request.HTTPSHandler(context=_tls_context(env)))
        self._opener = urllib.request.build_opener(*handlers)

    def close(self) -> None:
        """Release the opener's handlers."""
        self._opener.close()

    def call(
        self, method: str, endpoint: str, body: Mapping[str, Any] | None = None, *, registry: bool = False
    ) -> dict[str, Any]:
        """Call ``/api/2.0/mlflow/<endpoint>``: GET sends ``body`` as query parameters, others as JSON
        (``None`` values left out); the JSON answer, ``{}`` for an empty one.

        :raises MlflowHttpError: the call failed (an answer that is not JSON is :data:`ANSWERED`).
        """
        base = self.registry_uri if registry else self.tracking_uri
        fields = {key: value for key, value in (body or {}).items() if value is not None}
        url, data = f"{base}{_API}{endpoint}", None
        if method == "GET":
            url += f"?{urllib.parse.urlencode(fields, doseq=True)}" if fields else ""
        else:
            data = json.dumps(fields).encode()
        answer = self._send(method, url, base, endpoint, data, "application/json")
        try:
            parsed = json.loads(answer) if answer.strip() else {}
        except ValueError:
            raise MlflowHttpError(
                f"MLflow at {base} answered something that is not JSON ({endpoint})"
            ) from None
        if not isinstance(parsed, dict):
            raise MlflowHttpError(f"MLflow at {base} answered JSON that is not an object ({endpoint})")
        return parsed

    def put_artifact(self, artifact_uri: str, name: str, data: bytes) -> bool:
        """Store ``data`` as artifact ``name`` under ``artifact_uri`` (a run's artifact root).

        ``mlflow-artifacts:`` (the server proxies artifacts; a host in the URI is that server's) is one
        PUT; a ``file:`` URI or a plain path is an atomic local write. Any other store: ``False``,
        nothing done, so that the caller uses a client for that store.

        :raises MlflowHttpError: the server refused or did not answer.
        :raises OSError: the local folder cannot be written.
        """
        location = urllib.parse.urlsplit(artifact_uri)
        if location.scheme == "mlflow-artifacts":
            base = self.tracking_uri
            if location.netloc:
                base = f"{urllib.parse.urlsplit(self.tracking_uri).scheme}://{location.netloc}"
            path = urllib.parse.quote(f"{location.path.strip('/')}/{name}")
            self._send("PUT", f"{base}{_ARTIFACTS}{path}", base, "mlflow-artifacts", data, None)
            return True
        if location.scheme in ("file", ""):
            folder = urllib.parse.unquote(location.path) if location.scheme else artifact_uri
            write_atomic(os.path.join(folder, name), data)
            return True
        return False

    def _send(
        self, method: str, url: str, base: str, where: str, data: bytes | None, content_type: str | None
    ) -> bytes:
        """Send one request within the bounds; the body of the successful answer."""
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers)
        if content_type and data is not None:
            request.add_header("Content-Type", content_type)
        failure: MlflowHttpError | None = None
        for attempt in range(self.attempts):
            if attempt and self.pause:
                time.sleep(self.pause)
            try:
                with self._opener.open(request, timeout=self.timeout) as answer:
                    return answer.read()
            except urllib.error.HTTPError as err:
                failure = _answer_error(err, where)
                if err.code not in RETRY_STATUS:
                    raise failure from None
                failure.kind = UNREACHABLE  # throttled or failing on every attempt: infrastructure
            except (OSError, http.client.HTTPException) as err:
                failure = _transport_error(err, base, where, self.timeout)
                if failure.kind == TLS:
                    raise failure from None
        assert failure is not None
        raise failure


def _transport_error(err: BaseException, base: str, where: str, timeout: float) -> MlflowHttpError:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, ssl.SSLCertVerificationError):
        return MlflowHttpError(
            f"the TLS certificate of MLflow at {base} failed verification ({reason.verify_message}, {where}): "
            "set MLFLOW_TRACKING_SERVER_CERT_PATH to its CA bundle, or insecure_tls in the connection",
            TLS_VERIFICATION_FAILED,
            kind=TLS,
        )
    if isinstance(reason, TimeoutError):
        return MlflowHttpError(
            f"MLflow at {base} timed out: no answer within {timeout} s ({where})", kind=TIMEOUT
        )
    return MlflowHttpError(
        f"MLflow at {base} is unreachable: connection refused or dropped ({type(reason).__name__}, {where})",
        kind=UNREACHABLE,
    )


def _answer_error(err: urllib.error.HTTPError, where: str) -> MlflowHttpError:
    """The error of an HTTP answer that is not a success; its message is the server's, cut to one line."""
    try:
        raw = err.read() or b""
    except (OSError, http.client.HTTPException):
        raw = b""
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    given = body.get("error_code")
    lines = str(body.get("message") or text or err.reason or "").strip().splitlines()
    first = lines[0] if lines else ""
    message = f"{given}: {first}" if given else f"HTTP {err.code}: {first}"
    code = given or STATUS_CODES.get(err.code) or ("TEMPORARILY_UNAVAILABLE" if err.code >= 500 else None)
    access = err.code in (401, 403) or code in MLFLOW_ACCESS_CODES
    return MlflowHttpError(f"{message[:300]} ({where})", code, err.code, ACCESS if access else ANSWERED)


def _auth_headers(env: Mapping[str, str]) -> dict[str, str]:
    if env.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
    if env.get("MLFLOW_TRACKING_USERNAME"):
        pair = f"{env['MLFLOW_TRACKING_USERNAME']}:{env.get('MLFLOW_TRACKING_PASSWORD', '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    return {}


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    if str(env.get("MLFLOW_TRACKING_INSECURE_TLS", "")).strip().lower() == "true":
        context = ssl._create_unverified_context()  # asked for, as in MLflow
    else:
        context = ssl.create_default_context(cafile=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        context.load_cert_chain(env["MLFLOW_TRACKING_CLIENT_CERT_PATH"])
    return context
