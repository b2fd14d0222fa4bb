"""The MLflow connection: location, credentials scoped to each call, bounds and the one error mapping."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowNotFoundException
from airflow.sdk import BaseHook

from airflow_ai_provider.config import service_timeout
from airflow_ai_provider.credentials import connection_env, mask_credentials, split_credentials
from airflow_ai_provider.exceptions import (
    AiProviderConfigError,
    MlflowUnavailableError,
    ModelReferenceError,
)
from airflow_ai_provider.hooks.mlflow_entities import ACCESS, TIMEOUT, TLS, UNREACHABLE, MlflowApiError
from airflow_ai_provider.runtime.contract import SERVICE_TIMEOUT_ENV
from airflow_ai_provider.runtime.contract.environment import scoped_environ
from airflow_ai_provider.runtime.contract.timeouts import (
    MLFLOW_ACCESS_CODES,
    ServiceBounds,
    mlflow_wait,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from airflow_ai_provider.hooks.mlflow_native import NativeClient
    from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient

# MLflow's client retries an unresponsive server for minutes by default; a try should fail within
# ``[ai_provider] service_timeout`` with a clear message and let Airflow's own retries take over.
#: Budget of the calls that record a failure (the failed result, the task run's end): one short
#: attempt, so that a server that stopped answering cannot hold the failing try as long again.
FAILURE_PATH_TIMEOUT = 5

#: The connection's fields that authenticate, and the variables MLflow reads them from.
_CONNECTION_ENV = {
    "login": "MLFLOW_TRACKING_USERNAME",
    "password": "MLFLOW_TRACKING_PASSWORD",
    "token": "MLFLOW_TRACKING_TOKEN",
}


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters (its type name when empty)."""
    text = str(err)
    return text.splitlines()[0][:limit] if text else type(err).__name__


def filter_value(value: str) -> str:
    """``value`` quoted for an MLflow search filter; one with a quote is refused."""
    if "'" in value:
        raise AiProviderConfigError(f"value {value!r} cannot be used in an MLflow run search (has a quote)")
    return f"'{value}'"


def answered_error(err: MlflowApiError, doing: str, registry_uri: str) -> Exception:
    """Classify an error the server answered while ``doing``: bad input is not retried, anything else is."""
    text = first_line(err)
    if err.error_code == "RESOURCE_DOES_NOT_EXIST":
        return ModelReferenceError(f"{doing}: {text} (registry {registry_uri})")
    if err.error_code == "INVALID_PARAMETER_VALUE" or err.error_code in MLFLOW_ACCESS_CODES:
        return AiProviderConfigError(f"{doing}: {text} (registry {registry_uri})")
    return MlflowUnavailableError(f"{doing}: registry {registry_uri} failed: {text}")


@dataclass(frozen=True)
class MlflowSettings:
    """Where MLflow is and how to authenticate. ``credentials`` are env vars MLflow reads itself."""

    tracking_uri: str
    registry_uri: str | None = None
    experiment_name: str | None = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)


def _split_mlflow_uri(uri: str, where: str) -> tuple[str, dict[str, str]]:
    """``uri`` without credentials, and the variables MLflow reads them from instead (masked in logs).

    Userinfo of an ``http(s)`` URI moves to ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``. A password in
    any other URI (a database store) and secret query parameters are refused: MLflow could not read
    them from anywhere else, and the URI travels in every job spec.
    """
    clean, found = split_credentials(uri)
    if not found:
        return uri, {}
    mask_credentials(found)
    if found.params:
        raise AiProviderConfigError(
            f"{where} {clean!r} carries {found.describe()}: MLflow sends credentials as headers, not in "
            "the URI; put them in the connection's login and password, or its token extra"
        )
    if not clean.startswith(("http://", "https://")):
        if not found.password:
            return uri, {}  # a database user name alone is no secret
        raise AiProviderConfigError(
            f"{where} {clean!r} carries a password, which would travel in every job spec: put an MLflow "
            "tracking server (http/https) in front of the database, or give the password through the "
            "database client's environment (e.g. PGPASSWORD)"
        )
    env = {"MLFLOW_TRACKING_USERNAME": found.username} if found.username else {}
    if found.password:
        env["MLFLOW_TRACKING_PASSWORD"] = found.password
    return clean, env


def embedded_tracking_uri() -> str:
    """The SQLite store under ``AIRFLOW_HOME`` used when nothing else is configured."""
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    return f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"


class MlflowHook(BaseHook):
    """Talks to an MLflow tracking server and model registry for Airflow tasks.

    The location comes from the ``mlflow`` connection (default ``mlflow_default``): *Tracking URI* in
    the host field, basic-auth user and password, and extras ``registry_uri``, ``experiment_name``,
    ``token`` and ``insecure_tls``. Without that connection it uses ``MLFLOW_TRACKING_URI`` and then an
    embedded SQLite store under ``AIRFLOW_HOME``. Credentials are put into ``os.environ`` only for the
    duration of one call and removed afterwards. A user and password inside the tracking or registry
    URI move out of it to ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (the URIs reach job specs and
    logs without them); credential query parameters, and a password in a database URI, are refused.

    Task runs are booked by :mod:`airflow_ai_provider.mlflow_runs`, model references resolved and
    pinned by :mod:`airflow_ai_provider.mlflow_registry`, aliases moved by
    :mod:`airflow_ai_provider.alias_ledger`; all of them through :meth:`client` and :meth:`errors`.
    An ``http(s)://`` server is spoken to over its REST API, so a task process never imports mlflow.

    :param mlflow_conn_id: connection id of type ``mlflow``.
    """

    conn_name_attr = "mlflow_conn_id"
    #: Set when the server did not answer in time: later calls of this try fail at once with it.
    _unanswered: str | None = None
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def settings(self) -> MlflowSettings:
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            if self.mlflow_conn_id != self.default_conn_name:
                raise AiProviderConfigError(
                    f"MLflow connection {self.mlflow_conn_id!r} does not exist: create it (type mlflow) "
                    "or leave mlflow_conn_id at its default"
                ) from None
            tracking_uri, credentials = _split_mlflow_uri(
                os.environ.get("MLFLOW_TRACKING_URI") or embedded_tracking_uri(), "MLFLOW_TRACKING_URI"
            )
            return MlflowSettings(tracking_uri=tracking_uri, credentials=credentials)
        if not conn.host:
            raise AiProviderConfigError(
                f"MLflow connection {self.mlflow_conn_id!r} has no Tracking URI (host field)"
            )
        tracking_uri = conn.host if "://" in conn.host else f"http://{conn.host}"
        if conn.port and "://" not in conn.host:
            tracking_uri = f"{tracking_uri}:{conn.port}"
        where = f"MLflow connection {self.mlflow_conn_id!r}"
        tracking_uri, credentials = _split_mlflow_uri(tracking_uri, f"{where} Tracking URI")
        extra = conn.extra_dejson
        registry_uri, from_registry = _split_mlflow_uri(
            extra.get("registry_uri") or "", f"{where} registry_uri"
        )
        if any(credentials.get(key, value) != value for key, value in from_registry.items()):
            raise AiProviderConfigError(
                f"{where}: registry_uri and the Tracking URI carry different credentials, but MLflow uses "
                "one set (MLFLOW_TRACKING_USERNAME/PASSWORD) for both; put them in the login and password"
            )
        credentials = {**from_registry, **credentials, **connection_env(conn, _CONNECTION_ENV)}
        mask_credentials(
            [credentials.get("MLFLOW_TRACKING_PASSWORD", ""), credentials.get("MLFLOW_TRACKING_TOKEN", "")]
        )
        if str(extra.get("insecure_tls", "")).lower() in ("true", "1"):
            credentials["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
        return MlflowSettings(
            tracking_uri=tracking_uri.rstrip("/"),
            registry_uri=registry_uri or None,
            experiment_name=extra.get("experiment_name") or None,
            credentials=credentials,
        )

    @property
    def tracking_uri(self) -> str:
        return self.settings.tracking_uri

    @property
    def registry_uri(self) -> str:
        return self.settings.registry_uri or self.settings.tracking_uri

    @cached_property
    def service_bounds(self) -> ServiceBounds:
        """Time bounds of MLflow calls, from ``[ai_provider] service_timeout``."""
        return ServiceBounds(service_timeout())

    def runtime_env(self) -> dict[str, str]:
        """Environment a local runtime subprocess needs for MLflow: credentials and the service timeout
        it derives its MLflow and S3 timeouts from."""
        return {SERVICE_TIMEOUT_ENV: str(self.service_bounds.budget), **self.settings.credentials}

    def _http_env(self, on_failure: bool) -> dict[str, str]:
        """MLflow's HTTP bounds for one call; ``MLFLOW_HTTP_*`` variables already set win."""
        bounds = self.service_bounds
        if on_failure:
            bounds = ServiceBounds(min(bounds.budget, FAILURE_PATH_TIMEOUT))
        return {k: os.environ.get(k, v) for k, v in bounds.mlflow_env().items()}

    @contextmanager
    def _authenticated(self, on_failure: bool = False) -> Iterator[None]:
        """Expose credentials and HTTP bounds to MLflow for one call, then restore ``os.environ`` exactly.

        ``MLFLOW_HTTP_*`` variables already in the environment win over the derived bounds.
        """
        overrides = {k: v for k, v in self._http_env(on_failure).items() if k not in os.environ}
        overrides.update(self.settings.credentials)
        with scoped_environ(overrides):
            yield

    def ask_again(self) -> None:
        """Forget that the server did not answer: a new try asks it again."""
        self._unanswered = None

    @contextmanager
    def client(self, *, on_failure: bool = False) -> Iterator[MlflowRestClient | NativeClient]:
        """A client for this connection; connection failures become one-line errors.

        For ``http(s)://`` stores it is :class:`~airflow_ai_provider.hooks.mlflow_rest.MlflowRestClient`
        (no mlflow import); for any other store MLflow's ``MlflowClient``, wrapped so that it raises
        :class:`~airflow_ai_provider.hooks.mlflow_entities.MlflowApiError` too. Each request waits at
        most ``[ai_provider] service_timeout`` in all (its attempts included). Once the server did not
        answer in time, later calls of this try fail at once. ``on_failure``: the call records a
        failure, and gets one attempt of at most :data:`FAILURE_PATH_TIMEOUT` s.

        :raises MlflowUnavailableError: the server refused, dropped or did not answer (retried).
        :raises AiProviderConfigError: the server refused the credentials (not retried).
        """
        from airflow_ai_provider.hooks.mlflow_rest import open_client

        if self._unanswered is not None:
            raise MlflowUnavailableError(f"{self._unanswered} (not asked again in this try)")
        store = self._sqlite_dir
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        http = self._http_env(on_failure)
        stores = (self.tracking_uri, self.registry_uri)
        with (
            self._authenticated(on_failure),
            self.errors(),
            open_client(*stores, self.settings.credentials, http) as client,
        ):
            yield client

    @contextmanager
    def mlflow_client(self) -> Iterator[MlflowClient]:
        """MLflow's own ``MlflowClient`` for the lineage command line: bounds, credentials and mapping as
        for :meth:`client`, but any other ``MlflowException`` passes unchanged (imports mlflow)."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from airflow_ai_provider.hooks.mlflow_native import api_error

        with self._authenticated():
            try:
                yield MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            except MlflowException as err:
                mapped = self.mlflow_error(api_error(err))
                if mapped is None:
                    raise
                raise mapped from None

    @contextmanager
    def errors(self, doing: str | None = None) -> Iterator[None]:
        """Raise the provider's error for an MLflow failure inside the block (:meth:`mlflow_error`).

        Without ``doing`` only connection failures and refused credentials are mapped; any other
        MLflow error (:class:`~airflow_ai_provider.hooks.mlflow_entities.MlflowApiError`) passes
        unchanged, for the caller to handle.
        """
        try:
            yield
        except MlflowApiError as err:
            mapped = self.mlflow_error(err, doing)
            if mapped is None:
                raise
            raise mapped from None

    def mlflow_error(self, err: MlflowApiError, doing: str | None = None) -> Exception | None:
        """The control plane's one mapping of an MLflow failure to a one-line provider error.

        - refused credentials (an access error code, HTTP 401/403): :class:`AiProviderConfigError`
          naming the connection (a retry sends the same ones);
        - a server certificate that failed verification: :class:`AiProviderConfigError` saying what
          to set (a retry meets the same certificate);
        - no answer in time: :class:`MlflowUnavailableError`, and later calls of this try fail at once;
        - refused or dropped connection: :class:`MlflowUnavailableError`;
        - any other error the server answered: classified by :func:`answered_error` while ``doing``
          something, else ``None`` (not mapped).
        """
        if err.kind == ACCESS:
            return self._access_refused(err)
        if err.kind == TLS:
            return AiProviderConfigError(f"connection {self.mlflow_conn_id!r}: {first_line(err)}")
        if err.kind == TIMEOUT:
            self._unanswered = (
                f"MLflow tracking server {self.tracking_uri} did not answer within {mlflow_wait()} s "
                "([ai_provider] service_timeout)"
            )
            return MlflowUnavailableError(f"{self._unanswered}: {first_line(err)}")
        if err.kind == UNREACHABLE:
            return MlflowUnavailableError(
                f"MLflow tracking server {self.tracking_uri} is unreachable: {first_line(err)}"
            )
        return None if doing is None else answered_error(err, doing, self.registry_uri)

    def _access_refused(self, err: Exception) -> AiProviderConfigError:
        """Wrong or missing credentials: a retry sends the same ones, so it is not retried."""
        return AiProviderConfigError(
            f"MLflow at {self.tracking_uri} refused the credentials of connection {self.mlflow_conn_id!r} "
            f"({first_line(err, 200)}): check its login and password or its token extra"
        )

    def get_conn(self) -> ScopedClient:
        """A client whose every call runs as one :meth:`client` call: credentials and bounds are in
        ``os.environ`` only while the call runs, and its failures are mapped the same way."""
        return ScopedClient(self)

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.client() as client:
                client.search_experiments(max_results=1)
        except Exception as err:
            return False, str(err)
        return True, f"MLflow at {self.tracking_uri} answered"

    # ----------------------------------------------------------------------------------------------
    # Experiments and runs in the UI.

    def get_or_create_experiment(self, name: str) -> str:
        with self.client() as client:
            experiment = client.get_experiment_by_name(name)
            if experiment is not None and experiment.lifecycle_stage == "deleted":
                raise AiProviderConfigError(
                    f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore "
                    f"--experiment-id {experiment.experiment_id}) or set experiment_name to another one"
                )
            if experiment is not None:
                return experiment.experiment_id
            try:
                return client.create_experiment(name, artifact_location=self.artifact_location(name))
            except MlflowApiError as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                return client.get_experiment_by_name(name).experiment_id

    @property
    def _sqlite_dir(self) -> Path | None:
        """The directory of a SQLite tracking store (``sqlite:///...``); ``None`` for any other store."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        return Path(self.tracking_uri.removeprefix("sqlite:///")).parent

    def artifact_location(self, experiment_name: str) -> str | None:
        """Artifact location of a new experiment: beside an embedded SQLite store, else the default."""
        store = self._sqlite_dir
        if store is None:
            return None
        return (store / "artifacts" / re.sub(r"[^\w.-]+", "_", experiment_name)).as_uri()

    def task_experiment_name(self, requested: str | None, dag_id: str) -> str:
        """The experiment of a task's run: ``requested``, else the connection's, else ``airflow/<dag_id>``."""
        return requested or self.settings.experiment_name or f"airflow/{dag_id}"

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Link to the run in the MLflow UI, when the tracking URI is a server."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}"


class ScopedClient:
    """A client stand-in that opens :meth:`MlflowHook.client` around each method call.

    :param hook: the connection whose credentials and bounds each call uses.
    """

    def __init__(self, hook: MlflowHook) -> None:
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        with self._hook.client() as client:
            attribute = getattr(client, name)
        if not callable(attribute):
            return attribute

        def scoped(*args: Any, **kwargs: Any) -> Any:
            with self._hook.client() as client:
                return getattr(client, name)(*args, **kwargs)

        scoped.__name__, scoped.__doc__ = name, attribute.__doc__
        return scoped
