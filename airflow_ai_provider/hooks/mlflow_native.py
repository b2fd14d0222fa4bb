"""MLflow's own client for stores that are not an HTTP server, raising the control plane's MLflow error."""

from __future__ import annotations

import re
from typing import Any

from airflow_ai_provider.hooks.mlflow_entities import (
    ACCESS,
    ANSWERED,
    TIMEOUT,
    UNREACHABLE,
    MlflowApiError,
    to_mlflow,
)
from airflow_ai_provider.runtime.contract.timeouts import MLFLOW_ACCESS_CODES, is_timeout


def api_error(err: Exception) -> MlflowApiError:
    """``err``, an ``MlflowException``, as :class:`MlflowApiError` with the same message and code.

    A ``RestException`` was answered by a server; any other MLflow error is classified by its text
    (MLflow wraps refused credentials, timeouts and refused connections in plain ``MlflowException``).
    """
    from mlflow.exceptions import RestException

    message = str(err)
    code = getattr(err, "error_code", None)
    status = getattr(err, "get_http_status_code", lambda: None)()
    if isinstance(err, RestException):
        kind = ACCESS if code in MLFLOW_ACCESS_CODES else ANSWERED
    elif re.search(r"error code (401|403)\b", message):
        kind = ACCESS
    elif is_timeout(err):
        kind = TIMEOUT
    elif "Max retries exceeded" in message or "Connection" in message:
        kind = UNREACHABLE
    else:
        kind = ANSWERED
    return MlflowApiError(message, code, status, kind)


class NativeClient:
    """``MlflowClient`` whose every method takes this package's records and raises :class:`MlflowApiError`.

    Used for ``sqlite:``/``file:``/database tracking stores (embedded setups, some tests), where no
    REST API exists; importing it imports mlflow.

    :param client: the ``MlflowClient`` to wrap.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            from mlflow.exceptions import MlflowException

            try:
                return attribute(
                    *[to_mlflow(arg) for arg in args], **{key: to_mlflow(arg) for key, arg in kwargs.items()}
                )
            except MlflowException as err:
                raise api_error(err) from err

        call.__name__, call.__doc__ = name, attribute.__doc__
        return call


def native_client(tracking_uri: str, registry_uri: str | None) -> NativeClient:
    """MLflow's client for these stores, wrapped (imports mlflow)."""
    from mlflow import MlflowClient

    return NativeClient(MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri))
