"""The runtime's MLflow access: process bounds, the server probe, the client, and one error mapping.

Every job talks to the tracking server and registry through these functions, so an MLflow failure
reads the same whichever job met it: refused credentials and bad requests are bad input (never
retried), an overloaded, failing or silent server is retryable.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from airflow_ai_provider.runtime.contract.errors import JobError, JobInputError, JobServiceError, one_line
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.contract.timeouts import (
    MLFLOW_ACCESS_CODES,
    MLFLOW_SERVICE_CODES,
    mlflow_unavailable,
    process_bounds,
)
from airflow_ai_provider.runtime.scratch import storage_full

ENV_DEFAULTS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
#: Text of MLflow's own HTTP layer when it gave up on a server that did not answer.
_TRANSPORT_MARKERS = ("Max retries exceeded", "failed with exception")


def set_process_defaults() -> None:
    """Bound MLflow's HTTP retries and timeouts for this process by ``$AI_PROVIDER_SERVICE_TIMEOUT``.

    MLflow's own default is 7 retries with exponential back-off and a 120 s timeout. Set with
    ``setdefault``: a variable the environment already sets wins.
    """
    for name, value in {**process_bounds().mlflow_env(), **ENV_DEFAULTS}.items():
        os.environ.setdefault(name, value)


def probe_tracking_server(tracking_uri: str, timeout: float | None = None) -> None:
    """Fail fast with :class:`JobServiceError` when an HTTP tracking server does not accept connections.

    ``timeout`` defaults to the connect timeout of the process's service bounds. Other URI kinds
    (``sqlite:``, ``file:``, ``databricks``) are not probed.
    """
    if timeout is None:
        timeout = process_bounds().connect_timeout
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or one_line(err)
        raise JobServiceError(f"MLflow tracking server unreachable at {tracking_uri}: {reason}") from None


def probe_servers(ref: MlflowRef) -> None:
    """Probe the spec's tracking server and, when it is another one, its registry."""
    for uri in dict.fromkeys([ref.tracking_uri, ref.registry_uri or ref.tracking_uri]):
        probe_tracking_server(uri)


def configure_mlflow(ref: MlflowRef) -> None:
    """Point MLflow at the spec's tracking server and registry, whatever the environment says."""
    import mlflow

    mlflow.set_tracking_uri(ref.tracking_uri)
    mlflow.set_registry_uri(ref.registry_uri or ref.tracking_uri)


def client(ref: MlflowRef) -> Any:
    """An ``MlflowClient`` for the spec's tracking server and registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=ref.tracking_uri, registry_uri=ref.registry_uri)


def error_code(err: BaseException) -> str | None:
    """The MLflow error code of ``err`` (``RESOURCE_DOES_NOT_EXIST``...), ``None`` for other errors."""
    return getattr(err, "error_code", None)


def mlflow_error(err: BaseException, what: str, tracking_uri: str, missing: str | None = None) -> JobError:
    """The one-line job error for an MLflow failure while doing ``what``.

    - refused credentials: bad input naming the server;
    - ``RESOURCE_DOES_NOT_EXIST`` with a ``missing`` text: bad input with that text;
    - a server error code, a transport error or any non-MLflow error (HTTP, artifact store): retryable;
    - any other MLflow error (a bad request): bad input.
    """
    if isinstance(err, JobError):
        return err
    code = error_code(err)
    if code in MLFLOW_ACCESS_CODES:
        return JobInputError(
            f"{what}: access denied by {tracking_uri} ({code}); check the MLflow credentials"
        )
    if code == "RESOURCE_DOES_NOT_EXIST" and missing:
        return JobInputError(missing)
    if code is None or code in MLFLOW_SERVICE_CODES or any(text in str(err) for text in _TRANSPORT_MARKERS):
        return mlflow_unavailable(what, tracking_uri, err)
    return JobInputError(f"{what}: {one_line(err)}")


@contextmanager
def mlflow_errors(what: str, tracking_uri: str, missing: str | None = None) -> Iterator[None]:
    """Raise :func:`mlflow_error` for MLflow and transport failures inside the block.

    Job errors pass through, and so does any other exception: a failure of the caller's own code
    (a model that cannot be pickled) is not the server's. Callers that talk to artifact stores whose
    errors are not ``OSError`` (boto) map with :func:`mlflow_error` themselves.
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except JobError:
        raise
    except (MlflowException, OSError) as err:  # requests' errors are OSError too
        raise mlflow_error(err, what, tracking_uri, missing) from None


@contextmanager
def run_client(ref: MlflowRef, what: str) -> Iterator[Any]:
    """A client for logging into the spec's run; any failure in the block is one mapped error.

    Every failure there is the server's or the artifact store's, so errors that are not ``OSError``,
    such as boto's from an S3 artifact store, are mapped too; a missing run is bad input naming it.
    """
    mlflow = client(ref)
    missing = f"MLflow run {ref.run_id} does not exist in {ref.tracking_uri}"
    try:
        yield mlflow
    except JobError:
        raise
    except Exception as err:
        raise mlflow_error(err, what, ref.tracking_uri, missing) from None


def log_texts(ref: MlflowRef, texts: dict[str, str], what: str) -> None:
    """Log ``texts`` (artifact name to text) into the spec's MLflow run, one mapped error on failure.

    An HTTP tracking server whose run stores its artifacts on the server (``mlflow-artifacts:``) or in
    a local folder gets them without MLflow's client (:mod:`.mlflow_rest`); other stores through it.
    """
    from airflow_ai_provider.runtime import mlflow_rest

    missing = f"MLflow run {ref.run_id} does not exist in {ref.tracking_uri}"
    try:
        if mlflow_rest.log_texts(ref, texts):
            return
    except mlflow_rest.RestError as err:
        if err.kind in mlflow_rest.NO_ANSWER:
            raise mlflow_rest.unavailable(what, ref.tracking_uri, err) from None
        raise mlflow_error(err, what, ref.tracking_uri, missing) from None
    except OSError as err:  # a local artifact folder that cannot be written
        full = storage_full(err, f"the artifacts of MLflow run {ref.run_id}", "free space there")
        raise full or mlflow_rest.unavailable(what, ref.tracking_uri, err) from None
    with run_client(ref, what) as mlflow:
        for name, text in texts.items():
            mlflow.log_text(ref.run_id, text, name)
