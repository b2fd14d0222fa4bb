"""MLflow hook: tracking/registry location and credentials, DAG-run and task runs, model pinning."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowNotFoundException
from airflow.sdk import BaseHook

from airflow_ai_provider.config import service_timeout
from airflow_ai_provider.credentials import mask_credentials, split_credentials
from airflow_ai_provider.exceptions import (
    AiProviderConfigError,
    MlflowUnavailableError,
    ModelReferenceError,
)
from airflow_ai_provider.runtime.contract import SERVICE_TIMEOUT_ENV, Tag
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.timeouts import ServiceBounds, is_timeout, mlflow_wait

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow's client retries an unresponsive server for minutes by default; a try should fail within
# ``[ai_provider] service_timeout`` with a clear message and let Airflow's own retries take over.
#: Budget of the calls that record a failure (the failed result, the task run's end): one short
#: attempt, so that a server that stopped answering cannot hold the failing try as long again.
FAILURE_PATH_TIMEOUT = 5
PIN_PARAM_PREFIX = "pinned_model"

#: MLflow error codes that mean the credentials are wrong or lack a permission.
ACCESS_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters (its type name when empty)."""
    text = str(err)
    return text.splitlines()[0][:limit] if text else type(err).__name__


@dataclass(frozen=True)
class MlflowSettings:
    """Where MLflow is and how to authenticate. ``credentials`` are env vars MLflow reads itself."""

    tracking_uri: str
    registry_uri: str | None = None
    experiment_name: str | None = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RunIdentity:
    """Who books an MLflow run: one Airflow DAG run and one task (instance) in it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    logical_date: str | None = None
    airflow_url: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRun:
    """The MLflow runs booked for one task: the DAG run's parent run and the task's nested run."""

    experiment_id: str
    parent_run_id: str
    run_id: str
    url: str | None


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


def _filter_value(value: str) -> str:
    if "'" in value:
        raise AiProviderConfigError(f"value {value!r} cannot be used in an MLflow run search (has a quote)")
    return f"'{value}'"


class MlflowHook(BaseHook):
    """Talks to an MLflow tracking server and model registry for Airflow tasks.

    The location comes from the ``mlflow`` connection (default ``mlflow_default``): *Tracking URI* in
    the host field, basic-auth user and password, and extras ``registry_uri``, ``experiment_name``,
    ``token`` and ``insecure_tls``. Without that connection it uses ``MLFLOW_TRACKING_URI`` and then an
    embedded SQLite store under ``AIRFLOW_HOME``. Credentials are put into ``os.environ`` only for the
    duration of one call and removed afterwards. A user and password inside the tracking or registry
    URI move out of it to ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (the URIs reach job specs and
    logs without them); credential query parameters, and a password in a database URI, are refused.

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
        credentials = {**from_registry, **credentials}
        if conn.login:
            credentials["MLFLOW_TRACKING_USERNAME"] = conn.login
        if conn.password:
            credentials["MLFLOW_TRACKING_PASSWORD"] = conn.password
        if extra.get("token"):
            credentials["MLFLOW_TRACKING_TOKEN"] = str(extra["token"])
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

    @contextmanager
    def _authenticated(self, on_failure: bool = False) -> Iterator[None]:
        """Expose credentials and HTTP bounds to MLflow for one call, then restore ``os.environ`` exactly.

        ``MLFLOW_HTTP_*`` variables already in the environment win over the derived bounds.
        """
        bounds = self.service_bounds
        if on_failure:
            bounds = ServiceBounds(min(bounds.budget, FAILURE_PATH_TIMEOUT))
        overrides = {k: v for k, v in bounds.mlflow_env().items() if k not in os.environ}
        overrides.update(self.settings.credentials)
        saved = {key: os.environ.get(key) for key in overrides}
        os.environ.update(overrides)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    @contextmanager
    def client(self, *, on_failure: bool = False) -> Iterator[MlflowClient]:
        """An ``MlflowClient`` for this connection; connection failures become one-line errors.

        Each request waits at most ``[ai_provider] service_timeout`` in all (its attempts included).
        Once the server did not answer in time, later calls of this try fail at once. ``on_failure``:
        the call records a failure, and gets one attempt of at most :data:`FAILURE_PATH_TIMEOUT` s.

        :raises MlflowUnavailableError: the server refused, dropped or did not answer (retried).
        """
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException, RestException

        if self._unanswered is not None:
            raise MlflowUnavailableError(f"{self._unanswered} (not asked again in this try)")
        store = self._sqlite_dir
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        with self._authenticated(on_failure):
            try:
                yield MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            except RestException as err:
                if err.error_code in ACCESS_CODES:
                    raise self._access_refused(err) from None
                raise
            except MlflowException as err:
                message = str(err)
                if re.search(r"error code (401|403)\b", message):
                    raise self._access_refused(err) from None
                if is_timeout(err):
                    self._unanswered = (
                        f"MLflow tracking server {self.tracking_uri} did not answer within {mlflow_wait()} s "
                        "([ai_provider] service_timeout)"
                    )
                    raise MlflowUnavailableError(f"{self._unanswered}: {first_line(err)}") from None
                if "Max retries exceeded" in message or "Connection" in message:
                    raise MlflowUnavailableError(
                        f"MLflow tracking server {self.tracking_uri} is unreachable: {first_line(err)}"
                    ) from None
                raise

    def _access_refused(self, err: Exception) -> AiProviderConfigError:
        """Wrong or missing credentials: a retry sends the same ones, so it is not retried."""
        return AiProviderConfigError(
            f"MLflow at {self.tracking_uri} refused the credentials of connection {self.mlflow_conn_id!r} "
            f"({first_line(err, 200)}): check its login and password or its token extra"
        )

    def get_conn(self) -> MlflowClient:
        """Return a client; prefer :meth:`client`, which also scopes credentials to the call."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self.client() as client:
                client.search_experiments(max_results=1)
        except Exception as err:
            return False, str(err)
        return True, f"MLflow at {self.tracking_uri} answered"

    # ----------------------------------------------------------------------------------------------
    # Runs: one parent run per DAG run, one nested run per task instance.

    def get_or_create_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

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
            except MlflowException as err:
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

    def _find_runs(self, client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> list[Any]:
        filter_string = " and ".join(f"tags.`{key}` = {_filter_value(value)}" for key, value in tags.items())
        runs = client.search_runs([experiment_id], filter_string=filter_string, max_results=50)
        return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    def _dag_run_tags(self, who: RunIdentity) -> dict[str, str]:
        return {Tag.ROLE: "dag_run", Tag.DAG_ID: who.dag_id, Tag.RUN_ID: who.run_id}

    def _get_or_create_run(
        self, client: MlflowClient, experiment_id: str, keys: dict[str, str], extra_tags: dict[str, str]
    ) -> str:
        """Return the run carrying tags ``keys``, creating it if none exists.

        Tasks of one DAG run may start at the same moment and each create the run. MLflow has no
        create-if-absent, so all of them converge on the earliest one and delete their own extras;
        :meth:`finish_task_run` re-checks and re-parents a task run whose parent lost the election.
        """
        existing = self._find_runs(client, experiment_id, keys)
        if existing:
            return existing[0].info.run_id
        created = client.create_run(experiment_id, tags={**keys, **extra_tags}).info.run_id
        elected = self._find_runs(client, experiment_id, keys)[0].info.run_id
        if elected != created:
            client.delete_run(created)
        return elected

    def _elect_parent_run(self, client: MlflowClient, experiment_id: str, who: RunIdentity) -> str:
        """Return the DAG run's parent run, creating it if needed."""
        tags = {"mlflow.runName": f"{who.dag_id}/{who.run_id}"}
        if who.logical_date:
            tags[Tag.LOGICAL_DATE] = who.logical_date
        if who.airflow_url:
            tags[Tag.AIRFLOW_URL] = who.airflow_url
        return self._get_or_create_run(client, experiment_id, self._dag_run_tags(who), tags)

    def start_task_run(self, who: RunIdentity, experiment_name: str) -> TaskRun:
        """Book (or, on a retry, reopen) the task's nested run under the DAG run's parent run."""
        self._unanswered = None  # a new try asks again
        experiment_id = self.get_or_create_experiment(experiment_name)
        with self.client() as client:
            parent_id = self._elect_parent_run(client, experiment_id, who)
            client.update_run(parent_id, status="RUNNING")
            keys = {
                Tag.ROLE: "task",
                Tag.DAG_ID: who.dag_id,
                Tag.RUN_ID: who.run_id,
                Tag.TASK_ID: who.task_id,
                Tag.MAP_INDEX: str(who.map_index),
            }
            existing = self._find_runs(client, experiment_id, keys)
            if existing:
                run_id = existing[0].info.run_id
                client.update_run(run_id, status="RUNNING")
                client.set_tag(run_id, Tag.PARENT_RUN_ID, parent_id)
            else:
                name = who.task_id if who.map_index < 0 else f"{who.task_id}[{who.map_index}]"
                tags = {**keys, Tag.PARENT_RUN_ID: parent_id, Tag.RUN_NAME: name}
                run_id = client.create_run(experiment_id, tags=tags).info.run_id
            for key, value in {"airflow.try_number": str(who.try_number), **who.extra_tags}.items():
                client.set_tag(run_id, key, value)
        return TaskRun(experiment_id, parent_id, run_id, self.run_url(experiment_id, run_id))

    def finish_task_run(self, run: TaskRun, who: RunIdentity, *, succeeded: bool) -> None:
        """End the task run and mirror its state on the parent; re-parent it if its parent lost."""
        from mlflow.exceptions import MlflowException

        status = "FINISHED" if succeeded else "FAILED"
        with self.client(on_failure=not succeeded) as client:
            parents = self._find_runs(client, run.experiment_id, self._dag_run_tags(who))
            elected = parents[0].info.run_id if parents else run.parent_run_id
            if elected != run.parent_run_id:
                client.set_tag(run.run_id, Tag.PARENT_RUN_ID, elected)
            for loser in parents[1:]:  # created by a task that raced; its children re-parent likewise
                with contextlib.suppress(MlflowException):
                    client.delete_run(loser.info.run_id)
            client.set_terminated(run.run_id, status=status)
            client.set_terminated(elected, status=status)

    def fail_task_run(self, run: TaskRun, who: RunIdentity) -> None:
        """Mark the task run and its parent FAILED on a failure path; never raises, so that the
        task's own error, not an MLflow outage, is what the task reports."""
        try:
            self.finish_task_run(run, who, succeeded=False)
        except Exception:
            self.log.warning("Could not mark MLflow run %s failed", run.run_id, exc_info=True)

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """Link to the run in the MLflow UI, when the tracking URI is a server."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}"

    # ----------------------------------------------------------------------------------------------
    # Registry: resolve model references and pin them once per DAG run.

    def resolve_model(self, reference: str) -> ModelReference:
        """Resolve ``name``, ``name@alias``, ``name/version`` or a ``models:/`` URI to one version.

        A bare name means the latest registered version.
        """
        from mlflow.exceptions import MlflowException

        spec = ModelReference.parse(reference, AiProviderConfigError)
        with self.client() as client:
            try:
                model = client.get_registered_model(spec.name)
            except MlflowException as err:
                if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                    raise ModelReferenceError(
                        f"registered model {spec.name!r} does not exist in MLflow at {self.registry_uri}"
                    ) from None
                raise
            return self._resolve_existing(client, spec, model.aliases)

    def _resolve_existing(
        self, client: MlflowClient, spec: ModelReference, aliases: Mapping[str, Any]
    ) -> ModelReference:
        """``spec`` of a model known to exist, whose aliases (as read) are ``aliases``."""
        from mlflow.exceptions import MlflowException

        if spec.alias:
            try:
                version = client.get_model_version_by_alias(spec.name, spec.alias)
            except MlflowException:
                raise ModelReferenceError(
                    f"model {spec.name!r} has no alias {spec.alias!r} "
                    f"(its aliases: {', '.join(sorted(aliases)) or 'none'})"
                ) from None
            return spec.pin(version.version)
        if spec.version:
            try:
                client.get_model_version(spec.name, spec.version)
            except MlflowException:
                raise ModelReferenceError(
                    f"model {spec.name!r} has no version {spec.version}: check the registry"
                ) from None
            return spec
        versions = client.search_model_versions(f"name = {_filter_value(spec.name)}")
        if not versions:
            raise ModelReferenceError(f"model {spec.name!r} has no registered version yet")
        return spec.pin(max(int(v.version) for v in versions))

    def pin_model(self, reference: str, parent_run_id: str) -> ModelReference:
        """Resolve ``reference`` once per DAG run and return the same version to every task and shard.

        The first task records the resolved version as a param of the DAG run's parent run. MLflow
        params are write-once, so a task that resolved a different version (the alias moved mid-run)
        gets a conflict and takes the recorded one instead.
        """
        from mlflow.exceptions import MlflowException

        spec = ModelReference.parse(reference, AiProviderConfigError)
        if spec.version:
            return self.resolve_model(reference)
        key = f"{PIN_PARAM_PREFIX}/{spec.name}/{spec.alias or 'latest'}"
        with self.client() as client:
            recorded = client.get_run(parent_run_id).data.params.get(key)
            if recorded is None:
                pinned = self.resolve_model(reference)
                try:
                    client.log_param(parent_run_id, key, pinned.version)
                    return pinned
                except MlflowException:
                    recorded = client.get_run(parent_run_id).data.params.get(key)
                    if recorded is None:
                        raise
            return spec.pin(recorded)

    # ----------------------------------------------------------------------------------------------
    # Aliases: read here; moved by airflow_ai_provider.mlflow_registry (compare-and-set).

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points to, or None when the model has no such alias yet."""
        with self.client() as client:
            aliases = client.get_registered_model(name).aliases
        return str(aliases[alias]) if alias in aliases else None
