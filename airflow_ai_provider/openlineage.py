"""OpenLineage for the AI operators: datasets and facets from a job's result, and the ``mlflow-model`` converter.

The OpenLineage provider's listener calls an operator's ``get_openlineage_facets_on_complete`` (or
``_on_failure``) in the task's process once the task ends. :class:`OpenLineageMixin` keeps the
result the task recorded and builds the task's :class:`OperatorLineage` from it: the files read
(schema and digest), the files written (rows, bytes, checksum), the models read or written (as
``mlflow-model`` datasets), the expectations a validation evaluated, and a run facet with the MLflow
run, the model and the execution mode. Nothing here imports OpenLineage at module level: the
imports happen when the listener asks, so a deployment without the OpenLineage provider pays
nothing.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import logging

    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_ai_provider.mlflow_runs import TaskRun

#: Namespace of the OpenLineage datasets that stand for registered MLflow models.
MODEL_NAMESPACE = "mlflow-model"
#: Key of :func:`run_facet_class`'s facet in an event's ``run.facets``.
RUN_FACET_KEY = "airflowAiProvider"
_SCHEMA_URL = "https://github.com/airflow-ai-provider/airflow-ai-provider/blob/main/docs/openlineage.md"


def dataset_name(uri: str) -> tuple[str, str]:
    """OpenLineage ``(namespace, name)`` of a storage location (the naming spec).

    ``s3://bucket/key`` is ``("s3://bucket", "key")``; a local path or ``file://`` URI is
    ``("file", "/absolute/path")``.
    """
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme else uri
        return "file", path if path.startswith("/") else f"/{path}"
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"


@functools.cache
def run_facet_class() -> type:
    """The ``airflowAiProvider`` run facet class (built on first use, OpenLineage imported then).

    Fields: ``job`` (infer, train, validate, evaluate, drift, promote), ``executionMode`` (local or
    kubernetes; none for promotion), ``mlflowRunId``, ``mlflowParentRunId``, ``mlflowExperimentId``,
    ``mlflowExperimentName``, ``modelName``, ``modelVersion``, ``modelAlias``.
    """
    import attrs
    from openlineage.client.facet_v2 import RunFacet

    @attrs.define
    class AiProviderRunFacet(RunFacet):
        """The MLflow run, the model and the execution mode of an AI provider task."""

        # camelCase field names, as OpenLineage facets spell them
        job: str | None = attrs.field(default=None)
        executionMode: str | None = attrs.field(default=None)
        mlflowRunId: str | None = attrs.field(default=None)
        mlflowParentRunId: str | None = attrs.field(default=None)
        mlflowExperimentId: str | None = attrs.field(default=None)
        mlflowExperimentName: str | None = attrs.field(default=None)
        modelName: str | None = attrs.field(default=None)
        modelVersion: str | None = attrs.field(default=None)
        modelAlias: str | None = attrs.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return f"{_SCHEMA_URL}#airflowaiprovider-run-facet"

    return AiProviderRunFacet


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _version_facet(version: Any) -> dict[str, Any]:
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    return {"version": DatasetVersionDatasetFacet(datasetVersion=str(version))} if _text(version) else {}


def _schema_facet(schema: dict[str, str]) -> dict[str, Any]:
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

    if not schema:
        return {}
    fields = [SchemaDatasetFacetFields(name=str(name), type=str(kind)) for name, kind in schema.items()]
    return {"schema": SchemaDatasetFacet(fields=fields)}


def model_dataset(name: Any, version: Any = None, *, output: bool = False) -> Any:
    """The dataset of registered model ``name`` (namespace ``mlflow-model``), ``version`` as its version."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    kind = OutputDataset if output else InputDataset
    return kind(namespace=MODEL_NAMESPACE, name=str(name), facets=_version_facet(version))


def _assertions(results: list[dict[str, Any]]) -> Any:
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )

    return DataQualityAssertionsDatasetFacet(
        assertions=[
            Assertion(
                assertion=str(item.get("expectation")),
                success=bool(item.get("success")),
                column=item.get("column"),
            )
            for item in results
        ]
    )


def input_datasets(result: dict[str, Any], uris: list[str]) -> list[Any]:
    """One dataset per input location, with the input's schema and digest (its version).

    A validation's datasets carry its expectations as ``dataQualityAssertions`` and the rows read
    as ``dataQualityMetrics``.
    """
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.generated.data_quality_metrics_input_dataset import (
        DataQualityMetricsInputDatasetFacet,
    )

    locations = uris or [uri for uri in str(result.get("input_source") or "").split(",") if uri]
    facets = {**_schema_facet(result.get("input_schema") or {}), **_version_facet(result.get("input_digest"))}
    results = (result.get("details") or {}).get("results")
    input_facets: dict[str, Any] = {}
    if result.get("job") == "validate":
        if isinstance(results, list):
            facets["dataQualityAssertions"] = _assertions(results)
        rows = result.get("rows_in")
        input_facets["dataQualityMetrics"] = DataQualityMetricsInputDatasetFacet(
            columnMetrics={}, rowCount=rows if isinstance(rows, int) and len(locations) == 1 else None
        )
    datasets = []
    for uri in locations:
        namespace, name = dataset_name(uri)
        datasets.append(InputDataset(namespace=namespace, name=name, facets=facets, inputFacets=input_facets))
    return datasets


def output_datasets(result: dict[str, Any]) -> list[Any]:
    """One dataset per file written, with ``outputStatistics`` (rows, bytes) and its SHA-256 as version."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.generated.output_statistics_output_dataset import (
        OutputStatisticsOutputDatasetFacet,
    )

    datasets = []
    for out in result.get("outputs") or []:
        namespace, name = dataset_name(str(out["uri"]))
        stats = OutputStatisticsOutputDatasetFacet(
            rowCount=out.get("rows"), size=out.get("bytes"), fileCount=1
        )
        datasets.append(
            OutputDataset(
                namespace=namespace,
                name=name,
                facets=_version_facet(out.get("sha256")),
                outputFacets={"outputStatistics": stats},
            )
        )
    return datasets


def job_model(result: dict[str, Any]) -> dict[str, Any]:
    """The model a job used or made, as ``{"name", "version", "alias"}`` (empty when there is none)."""
    details = result.get("details") or {}
    for candidate in (result.get("model"), details.get("model"), details.get("challenger")):
        if isinstance(candidate, dict) and candidate.get("name"):
            return candidate
    if details.get("model_name"):
        return {
            "name": details["model_name"],
            "version": details.get("version"),
            "alias": details.get("alias"),
        }
    return {}


def _model_datasets(result: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The models a job read (inputs) and the one it registered (outputs)."""
    model = job_model(result)
    if not model:
        return [], []
    if result.get("job") == "train":
        return [], [model_dataset(model["name"], model.get("version"), output=True)]
    inputs = [model_dataset(model["name"], model.get("version"))]
    champion = (result.get("details") or {}).get("champion")
    if isinstance(champion, dict) and champion.get("name"):
        inputs.append(model_dataset(champion["name"], champion.get("version")))
    return inputs, []


def job_lineage(
    result: dict[str, Any], uris: list[str], run: TaskRun, mode: str | None, experiment: str | None
) -> OperatorLineage:
    """The lineage of one AI job from its runtime result (successful or failed)."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    model = job_model(result)
    model_inputs, model_outputs = _model_datasets(result)
    facet = run_facet_class()(
        job=_text(result.get("job")),
        executionMode=mode,
        mlflowRunId=run.run_id,
        mlflowParentRunId=run.parent_run_id,
        mlflowExperimentId=_text(run.experiment_id),
        mlflowExperimentName=experiment,
        modelName=_text(model.get("name")),
        modelVersion=_text(model.get("version")),
        modelAlias=_text(model.get("alias")),
    )
    return OperatorLineage(
        inputs=[*input_datasets(result, uris), *model_inputs],
        outputs=[*output_datasets(result), *model_outputs],
        run_facets={RUN_FACET_KEY: facet},
    )


def promotion_lineage(result: dict[str, Any], run: TaskRun, experiment: str | None) -> OperatorLineage:
    """The lineage of an alias move: the model version it points the alias at, as input and output."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    name, version = result.get("model_name"), result.get("version")
    facet = run_facet_class()(
        job=_text(result.get("action")),
        mlflowRunId=run.run_id,
        mlflowParentRunId=run.parent_run_id,
        mlflowExperimentId=_text(run.experiment_id),
        mlflowExperimentName=experiment,
        modelName=_text(name),
        modelVersion=_text(version),
        modelAlias=_text(result.get("alias")),
    )
    return OperatorLineage(
        inputs=[model_dataset(name, version)],
        outputs=[model_dataset(name, version, output=True)],
        run_facets={RUN_FACET_KEY: facet},
    )


class OpenLineageMixin:
    """OpenLineage methods for the operators that book an MLflow run (see the module docstring).

    The operator keeps what it recorded (:meth:`record_result`, :meth:`record_failure`, or
    :meth:`remember_lineage` for promotion) and the listener's calls build the lineage from it. A
    lineage that cannot be built is logged and left empty: it never fails the task.
    """

    log: logging.Logger
    _lineage_record: tuple[TaskRun, dict[str, Any]] | None = None

    def remember_lineage(self, run: TaskRun, result: dict[str, Any]) -> None:
        """Keep ``run`` and ``result`` for the lineage of this task."""
        self._lineage_record = (run, result)

    def record_result(self, run: TaskRun, result: dict[str, Any]) -> None:
        self.remember_lineage(run, result)
        super().record_result(run, result)  # type: ignore[misc]

    def record_failure(self, run: TaskRun, result: dict[str, Any]) -> None:
        self.remember_lineage(run, result)
        super().record_failure(run, result)  # type: ignore[misc]

    def lineage_from_record(self, run: TaskRun, result: dict[str, Any], dag_id: str) -> OperatorLineage:
        """The task's lineage from what it recorded; operators without a job override this."""
        from airflow_ai_provider.operators.arguments import uri_list

        experiment = self.mlflow_hook.task_experiment_name(self.experiment_name, dag_id)  # type: ignore[attr-defined]
        uris = uri_list(getattr(self, "input_uri", None) or getattr(self, "holdout_uri", None) or [])
        mode = self.resolved_execution_mode.value  # type: ignore[attr-defined]
        return job_lineage(result, uris, run, mode, experiment)

    def _lineage(self, task_instance: Any) -> OperatorLineage:
        from airflow.providers.openlineage.extractors import OperatorLineage

        try:
            if self._lineage_record is None:
                return OperatorLineage()
            run, result = self._lineage_record
            return self.lineage_from_record(run, result, str(getattr(task_instance, "dag_id", "")))
        except Exception:
            self.log.warning("Could not build this task's OpenLineage datasets and facets", exc_info=True)
            return OperatorLineage()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """The lineage of a successful task (called by the OpenLineage listener)."""
        return self._lineage(task_instance)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """The lineage of a failed task: what its job reported (a failed validation's assertions)."""
        return self._lineage(task_instance)


def convert_model_asset(asset: Any, lineage_context: Any = None) -> Any:
    """OpenLineage dataset of an ``mlflow-model://<name>[/drift]`` Asset (the provider's converter).

    Namespace ``mlflow-model``, name the model name (``<name>/drift`` for a drift asset): the same
    dataset the operators emit for the model, so Asset lineage and operator lineage join.
    """
    from openlineage.client.event_v2 import Dataset

    parts = urlsplit(asset.uri)
    facet = parts.path.strip("/")
    return Dataset(namespace=MODEL_NAMESPACE, name=f"{parts.netloc}/{facet}" if facet else parts.netloc)
