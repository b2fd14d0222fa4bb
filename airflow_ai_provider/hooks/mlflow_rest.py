"""A small MLflow REST client for the worker: the calls tasks make, bounded in time, without mlflow."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.hooks.mlflow_entities import (
    DatasetInput,
    Experiment,
    Metric,
    MlflowApiError,
    ModelVersion,
    PagedList,
    Param,
    RegisteredModel,
    Run,
    RunTag,
)
from airflow_ai_provider.runtime.contract.mlflow_http import MlflowHttp, usable

if TYPE_CHECKING:
    from airflow_ai_provider.hooks.mlflow_native import NativeClient

#: MLflow's limits of one ``runs/log-batch`` call.
MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, MAX_ENTITIES_PER_BATCH = 1000, 100, 1000
ACTIVE_ONLY = 1


def _kv(items: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": key, "value": str(value)} for key, value in (items or {}).items()]


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowRestClient:
    """The subset of ``MlflowClient`` the control plane uses, over MLflow's REST API.

    Requests go through the one transport of both planes,
    :class:`~airflow_ai_provider.runtime.contract.mlflow_http.MlflowHttp`: each waits at most
    ``timeout`` seconds for the connection and for each read, and is sent at most ``attempts`` times
    (a refused or dropped connection, a timeout, HTTP 429 or 5xx), so one call waits at most
    ``attempts * timeout`` seconds. Failures raise
    :class:`~airflow_ai_provider.hooks.mlflow_entities.MlflowApiError` (its ``kind``: ``timeout``,
    ``unreachable``, ``access`` or ``answered``), never naming a header or credential.

    :param tracking_uri: ``http(s)://`` address of the tracking server, without credentials.
    :param registry_uri: the model registry's address (the tracking server when ``None``).
    :param env: credentials and TLS settings under MLflow's variable names (see ``MlflowHttp``).
    :param timeout: seconds per wait (connect, each read).
    :param attempts: tries per request.
    """

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None,
        env: Mapping[str, str],
        *,
        timeout: float,
        attempts: int,
    ) -> None:
        self._http = MlflowHttp(tracking_uri, registry_uri, env, timeout=timeout, attempts=attempts)
        self.tracking_uri, self.registry_uri = self._http.tracking_uri, self._http.registry_uri
        self._call = self._http.call
        self._artifact_uris: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------------------------------------
    # Experiments.

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        body = {"name": name, "artifact_location": artifact_location, "tags": _kv(tags)}
        return str(self._call("POST", "experiments/create", body)["experiment_id"])

    def get_experiment(self, experiment_id: str) -> Experiment:
        answer = self._call("GET", "experiments/get", {"experiment_id": experiment_id})
        return Experiment.from_json(answer["experiment"])

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment called ``name`` (deleted or not), or ``None``."""
        try:
            answer = self._call("GET", "experiments/get-by-name", {"experiment_name": name})
        except MlflowApiError as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return Experiment.from_json(answer["experiment"])

    def search_experiments(
        self,
        view_type: int = ACTIVE_ONLY,
        max_results: int | None = 1000,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        body = {
            "view_type": view_type,
            "max_results": max_results,
            "filter": filter_string,
            "order_by": order_by,
            "page_token": page_token,
        }
        answer = self._call("POST", "experiments/search", body)
        experiments = [Experiment.from_json(raw) for raw in answer.get("experiments", [])]
        return PagedList(experiments, answer.get("next_page_token"))

    def delete_experiment(self, experiment_id: str) -> None:
        self._call("POST", "experiments/delete", {"experiment_id": experiment_id})

    # ----------------------------------------------------------------------------------------------
    # Runs.

    def _run(self, raw: dict[str, Any]) -> Run:
        run = Run.from_json(raw)
        self._artifact_uris[run.info.run_id] = run.info.artifact_uri
        return run

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        body = {
            "experiment_id": experiment_id,
            "start_time": start_time or _now_ms(),
            "tags": _kv(tags),
            "run_name": run_name,
        }
        return self._run(self._call("POST", "runs/create", body)["run"])

    def get_run(self, run_id: str) -> Run:
        return self._run(self._call("GET", "runs/get", {"run_id": run_id})["run"])

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        run_view_type: int = ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        body = {
            "experiment_ids": list(experiment_ids),
            "filter": filter_string,
            "run_view_type": run_view_type,
            "max_results": max_results,
            "order_by": order_by,
            "page_token": page_token,
        }
        answer = self._call("POST", "runs/search", body)
        return PagedList([self._run(raw) for raw in answer.get("runs", [])], answer.get("next_page_token"))

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        self._call("POST", "runs/update", {"run_id": run_id, "status": status, "run_name": name})

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        body = {"run_id": run_id, "status": status or "FINISHED", "end_time": end_time or _now_ms()}
        self._call("POST", "runs/update", body)

    def delete_run(self, run_id: str) -> None:
        self._call("POST", "runs/delete", {"run_id": run_id})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self._call("POST", "runs/set-tag", {"run_id": run_id, "key": key, "value": str(value)})

    def log_param(self, run_id: str, key: str, value: Any) -> Any:
        self._call("POST", "runs/log-parameter", {"run_id": run_id, "key": key, "value": str(value)})
        return value

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Log everything in as few ``runs/log-batch`` calls as MLflow's limits allow (one, usually)."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while True:
            some_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
            some_tags, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
            room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(some_params) - len(some_tags))
            some_metrics, metrics = metrics[:room], metrics[room:]
            body = {
                "run_id": run_id,
                "metrics": [
                    {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                    for m in some_metrics
                ],
                "params": [{"key": p.key, "value": str(p.value)} for p in some_params],
                "tags": [{"key": t.key, "value": str(t.value)} for t in some_tags],
            }
            self._call("POST", "runs/log-batch", body)
            if not (metrics or params or tags):
                return

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None) -> None:
        inputs = [
            {
                "tags": [{"key": tag.key, "value": tag.value} for tag in item.tags],
                "dataset": {key: value for key, value in vars(item.dataset).items() if value is not None},
            }
            for item in datasets or []
        ]
        self._call("POST", "runs/log-inputs", {"run_id": run_id, "datasets": inputs})

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store ``text`` as artifact ``artifact_file`` of the run.

        ``mlflow-artifacts:`` locations (the server proxies artifacts) are one PUT to the server;
        ``file:`` locations are written directly, atomically. Any other store (S3, GCS...) falls back
        to MLflow's own client for this one call, which imports mlflow.
        """
        artifact_uri = self._artifact_uris.get(run_id) or self.get_run(run_id).info.artifact_uri
        if not self._http.put_artifact(artifact_uri, artifact_file, text.encode("utf-8")):
            from airflow_ai_provider.hooks.mlflow_native import native_client

            native_client(self.tracking_uri, self.registry_uri).log_text(run_id, text, artifact_file)

    # ----------------------------------------------------------------------------------------------
    # Model registry.

    def get_registered_model(self, name: str) -> RegisteredModel:
        answer = self._call("GET", "registered-models/get", {"name": name}, registry=True)
        return RegisteredModel.from_json(answer["registered_model"])

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        body = {"name": name, "version": str(version)}
        return ModelVersion.from_json(
            self._call("GET", "model-versions/get", body, registry=True)["model_version"]
        )

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        body = {"name": name, "alias": alias}
        answer = self._call("GET", "registered-models/alias", body, registry=True)
        return ModelVersion.from_json(answer["model_version"])

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 10000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        body = {
            "filter": filter_string,
            "max_results": max_results,
            "order_by": order_by,
            "page_token": page_token,
        }
        answer = self._call("GET", "model-versions/search", body, registry=True)
        versions = [ModelVersion.from_json(raw) for raw in answer.get("model_versions", [])]
        return PagedList(versions, answer.get("next_page_token"))

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any) -> None:
        body = {"name": name, "version": str(version), "key": key, "value": str(value)}
        self._call("POST", "model-versions/set-tag", body, registry=True)

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        body = {"name": name, "alias": alias, "version": str(version)}
        self._call("POST", "registered-models/alias", body, registry=True)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", "registered-models/alias", {"name": name, "alias": alias}, registry=True)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        body = {"name": name, "key": key, "value": str(value)}
        self._call("POST", "registered-models/set-tag", body, registry=True)


@contextmanager
def open_client(
    tracking_uri: str, registry_uri: str, credentials: Mapping[str, str], http_env: Mapping[str, str]
) -> Iterator[MlflowRestClient | NativeClient]:
    """The client of these stores: REST when both are ``http(s)://`` servers, else MLflow's own (wrapped).

    :param credentials: MLflow's credential variables (they win over ``MLFLOW_TRACKING_*`` of the
        environment).
    :param http_env: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` to obey.
    """
    if not usable(tracking_uri, registry_uri):
        from airflow_ai_provider.hooks.mlflow_native import native_client

        yield native_client(tracking_uri, registry_uri)
        return
    env = {key: value for key, value in os.environ.items() if key.startswith("MLFLOW_TRACKING_")}
    client = MlflowRestClient(
        tracking_uri,
        registry_uri,
        {**env, **credentials},
        timeout=float(http_env["MLFLOW_HTTP_REQUEST_TIMEOUT"]),
        attempts=int(http_env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1,
    )
    try:
        yield client
    finally:
        client.close()
