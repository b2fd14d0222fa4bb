"""MLflow records as the control plane reads them from the REST API, and its one MLflow error type."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_ai_provider.runtime.contract.mlflow_http import (  # noqa: F401 (the kinds, for the hooks)
    ACCESS,
    ANSWERED,
    TIMEOUT,
    TLS,
    UNREACHABLE,
    MlflowHttpError,
)

#: The control plane's one MLflow error: the HTTP transport's (``runtime.contract.mlflow_http``), also
#: raised for MLflow's own client of non-HTTP stores (:mod:`.mlflow_native`). Its ``kind`` is how
#: :meth:`~airflow_ai_provider.hooks.mlflow.MlflowHook.mlflow_error` maps it.
MlflowApiError = MlflowHttpError


class PagedList(list):
    """One page of search results; ``token`` fetches the next page (``None`` after the last)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


def _tags(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {item["key"]: item.get("value", "") for item in items or []}


@dataclass(frozen=True)
class Metric:
    """One metric value at one step, as ``runs/log-batch`` takes it."""

    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True)
class RunTag:
    """One run tag."""

    key: str
    value: str


@dataclass(frozen=True)
class Param:
    """One run parameter (write-once on the server)."""

    key: str
    value: str


@dataclass(frozen=True)
class InputTag:
    """One tag of a dataset input."""

    key: str
    value: str


@dataclass(frozen=True)
class Dataset:
    """A dataset a run used: name, digest, where it came from and its schema."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class DatasetInput:
    """A dataset and the tags of its use by a run."""

    dataset: Dataset
    tags: list[InputTag] = field(default_factory=list)


@dataclass(frozen=True)
class RunInfo:
    """A run's identity and state."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str
    run_name: str = ""

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass(frozen=True)
class RunData:
    """A run's latest metrics, params and tags, each as a dict."""

    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class Run:
    """A run as ``runs/get`` returns it."""

    info: RunInfo
    data: RunData

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Run:
        info, data = raw.get("info", {}), raw.get("data", {})
        return cls(
            RunInfo(
                run_id=info.get("run_id") or info.get("run_uuid", ""),
                experiment_id=str(info.get("experiment_id", "")),
                status=info.get("status", ""),
                start_time=int(info.get("start_time") or 0),
                end_time=int(info["end_time"]) if info.get("end_time") else None,
                artifact_uri=info.get("artifact_uri", ""),
                lifecycle_stage=info.get("lifecycle_stage", "active"),
                run_name=info.get("run_name", ""),
            ),
            RunData(
                metrics={m["key"]: float(m.get("value", 0.0)) for m in data.get("metrics", [])},
                params=_tags(data.get("params")),
                tags=_tags(data.get("tags")),
            ),
        )


@dataclass(frozen=True)
class Experiment:
    """An experiment: id, name, where its artifacts go, whether deleted, its tags."""

    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict[str, str]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Experiment:
        return cls(
            experiment_id=str(raw.get("experiment_id", "")),
            name=raw.get("name", ""),
            artifact_location=raw.get("artifact_location", ""),
            lifecycle_stage=raw.get("lifecycle_stage", "active"),
            tags=_tags(raw.get("tags")),
        )


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version."""

    name: str
    version: str
    run_id: str
    source: str
    status: str
    current_stage: str
    aliases: list[str]
    tags: dict[str, str]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelVersion:
        return cls(
            name=raw.get("name", ""),
            version=str(raw.get("version", "")),
            run_id=raw.get("run_id", ""),
            source=raw.get("source", ""),
            status=raw.get("status", ""),
            current_stage=raw.get("current_stage", ""),
            aliases=list(raw.get("aliases", [])),
            tags=_tags(raw.get("tags")),
        )


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model: its aliases (alias -> version) and tags."""

    name: str
    aliases: dict[str, str]
    tags: dict[str, str]
    description: str = ""

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RegisteredModel:
        return cls(
            name=raw.get("name", ""),
            aliases={a["alias"]: str(a["version"]) for a in raw.get("aliases", [])},
            tags=_tags(raw.get("tags")),
            description=raw.get("description", ""),
        )


def to_mlflow(value: Any) -> Any:
    """``value`` with this module's records replaced by MLflow's own entities (lists recursively).

    For MLflow's client on stores that are not an HTTP server; imports mlflow.
    """
    from mlflow import entities

    if isinstance(value, list):
        return [to_mlflow(item) for item in value]
    if isinstance(value, Metric):
        return entities.Metric(value.key, value.value, value.timestamp, value.step)
    if isinstance(value, RunTag):
        return entities.RunTag(value.key, value.value)
    if isinstance(value, Param):
        return entities.Param(value.key, value.value)
    if isinstance(value, DatasetInput):
        dataset = value.dataset
        return entities.DatasetInput(
            entities.Dataset(
                dataset.name,
                dataset.digest,
                dataset.source_type,
                dataset.source,
                dataset.schema,
                dataset.profile,
            ),
            tags=[entities.InputTag(tag.key, tag.value) for tag in value.tags],
        )
    return value
