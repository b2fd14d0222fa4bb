"""Batch inference: score files with a pinned MLflow model version, shard by shard."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.config import ExecutionMode
from airflow_ai_provider.hooks.mlflow_entities import Dataset, DatasetInput, InputTag
from airflow_ai_provider.mlflow_registry import pin_model
from airflow_ai_provider.operators.arguments import JobArguments, check_shard, uri_list
from airflow_ai_provider.operators.base import AiJobOperator
from airflow_ai_provider.runtime.contract import EventKey, Tag
from airflow_ai_provider.runtime.contract.params import InferParams
from airflow_ai_provider.runtime.contract.spec import JobSpec, Shard

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.mlflow_runs import TaskRun


#: Rendered ``previous_output`` values that mean "none": an XCom of ``None`` renders as ``"None"``.
NO_PREVIOUS_OUTPUT = ("", "None")


class BatchInferenceOperator(JobArguments, AiJobOperator):
    """Score Parquet or CSV data with a registered MLflow model and write Parquet predictions.

    The model reference is resolved to one version per DAG run and pinned, so every shard and task
    of the run uses the same version even if the alias moves meanwhile. The input is streamed in
    Arrow record batches; the output keeps the ``id_columns`` plus ``prediction`` (and ``confidence``
    and ``proba_<class>`` when the model gives probabilities). For one pod per shard, map over
    ``shard_index``::

        BatchInferenceOperator.partial(task_id="score", model="churn@champion", input_uri=...,
                                       output_uri=..., shard_count=4).expand(shard_index=[0, 1, 2, 3])

    :param model: ``name@alias``, ``name/version``, ``name`` (latest) or a ``models:/`` URI. (templated)
    :param input_uri: file, folder or glob, local (``file://`` or path) or ``s3://``; or a list. (templated)
    :param output_uri: folder for the predictions; shard ``i`` of ``n`` writes
        ``part-<i>-of-<n>.parquet`` there, atomically, replacing its own file on a retry. (templated)
    :param id_columns: input columns copied to the output to join predictions back: a list, or one
        column name as a string (a string with a comma is refused: pass a list). (templated)
    :param input_format: ``parquet`` or ``csv``; default from the file extension.
    :param batch_size: rows per Arrow record batch; default: sized from the input's Parquet metadata
        and the memory available, so a small input is one batch (CSV: 65536 rows). (templated)
    :param shard_index: this task's shard, ``0 <= shard_index < shard_count``. (templated)
    :param shard_count: number of shards the input is split into. (templated)
    :param fallback_model: model to use when ``model`` exists but cannot be loaded (a broken
        artifact, a package missing from the image), e.g. ``churn@champion_previous``. Predictions
        made with it are marked: the result's ``fallback`` and the MLflow tag ``ai.fallback_used``.
        Its registered model must exist when the task starts; its alias or version only when it is
        needed (``champion_previous`` appears with the second promotion). (templated)
    :param extra_columns: ``error`` (default) refuses input columns that are neither model features
        nor ``id_columns``; ``ignore`` leaves them out.
    :param check_unique_ids: fail the task (without retry, before the part file is published) when
        a value of the ``id_columns`` (all of them together) appears more than once in the shard,
        across batches and files, naming the columns, the number of duplicates and an example. The
        check is exact and memory-bounded (row hashes spilled to ``scratch_dir``). It covers one
        shard: ids repeated in different shards are not compared. Without it, duplicate ids are
        scored and written as they are: one output row per input row, duplicates included.
    :param skops_trusted_types: extra trusted types for scikit-learn models saved with skops.
    :param scratch_dir: folder for the downloaded model and temporary files; default ``$TMPDIR``.
    :param model_threads: threads the model's native libraries (OpenMP, BLAS) may use while
        predicting; default one per core. Shards that run side by side on one machine share its
        cores: ``cores // concurrent shards`` avoids oversubscribing them. (templated)
    :param output_columns: the model outputs kept as output columns: a list of column names (one
        per model output, in order), one name, or a dict from the model's output name to the column
        name. A vector output (an embedding) becomes a fixed-size list column. (templated)
    :param vector_type: element type of vector columns, ``float32`` (default) or ``float64``.
    :param batch_memory_mb: MiB for the rows in flight, from which the batch size is derived when
        ``batch_size`` is not given: six copies of a batch's input rows (sized from the Parquet
        metadata) must fit, down to one row a batch, and outputs wider than the inputs are predicted
        in slices that fit; the model's own activations are not counted.
        Default 160 MiB, or a quarter of the memory available if less. (templated)
    :param content_columns: input columns whose content decides whether a row changed: each output
        row gets ``content_hash``, the hex SHA-256 of those columns. (templated)
    :param previous_output: an earlier run's output folder (``file://`` or ``s3://``). Rows whose
        ``id_columns`` and ``content_hash`` match a previous row scored by the same model version
        are copied from it instead of predicted; a missing or empty folder means everything is
        computed. Needs ``id_columns`` and ``content_columns``. A value that renders empty or as
        ``None`` (an upstream XCom of ``None``) means no earlier output: every row is computed. (templated)
    :param vector_index: the vector output column to index: a FAISS index of the shard's vectors
        (cosine similarity) is written next to the part file, after a search check. Needs the
        ``runtime`` extra (``faiss-cpu``). (templated)
    :param index_check_queries: rows re-embedded and searched for in the new index; each one's top
        hit must be itself (or a row of the same content). Default 20.

    Arguments the runtime checks (``id_columns``, ``batch_size``, ``shard_index``/``shard_count``,
    ``extra_columns``, ...) are checked with the runtime's own check when the DAG is parsed
    (literal values) and again once templates render, before any MLflow run is booked: a bad value
    fails the task once, naming the argument.
    """

    job_type = "infer"
    job_params_class = InferParams
    job_arguments = (
        "id_columns",
        "batch_size",
        "input_format",
        "extra_columns",
        "check_unique_ids",
        "skops_trusted_types",
        "scratch_dir",
        "model_threads",
        "output_columns",
        "vector_type",
        "batch_memory_mb",
        "content_columns",
        "previous_output",
        "vector_index",
        "index_check_queries",
    )
    uri_arguments = ("input_uri", "output_uri")
    model_arguments = ("model",)
    optional_model_arguments = ("fallback_model",)
    template_fields: Sequence[str] = (
        *AiJobOperator.template_fields,
        "model",
        "input_uri",
        "output_uri",
        "id_columns",
        "batch_size",
        "shard_index",
        "shard_count",
        "fallback_model",
        "model_threads",
        "output_columns",
        "batch_memory_mb",
        "content_columns",
        "previous_output",
        "vector_index",
    )

    def __init__(
        self,
        *,
        model: str,
        input_uri: str | list[str],
        output_uri: str,
        id_columns: list[str] | None = None,
        input_format: str | None = None,
        batch_size: int | None = None,
        shard_index: int | str = 0,
        shard_count: int | str = 1,
        fallback_model: str | None = None,
        extra_columns: str = "error",
        check_unique_ids: bool = False,
        skops_trusted_types: list[str] | None = None,
        scratch_dir: str | None = None,
        model_threads: int | None = None,
        output_columns: list[str] | str | dict[str, str] | None = None,
        vector_type: str | None = None,
        batch_memory_mb: int | None = None,
        content_columns: list[str] | str | None = None,
        previous_output: str | None = None,
        vector_index: str | None = None,
        index_check_queries: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_job_arguments(
            model=model,
            input_uri=input_uri,
            output_uri=output_uri,
            id_columns=id_columns,
            input_format=input_format,
            batch_size=batch_size,
            shard_index=shard_index,
            shard_count=shard_count,
            fallback_model=fallback_model,
            extra_columns=extra_columns,
            check_unique_ids=check_unique_ids,
            skops_trusted_types=skops_trusted_types,
            scratch_dir=scratch_dir,
            model_threads=model_threads,
            output_columns=output_columns,
            vector_type=vector_type,
            batch_memory_mb=batch_memory_mb,
            content_columns=content_columns,
            previous_output=previous_output,
            vector_index=vector_index,
            index_check_queries=index_check_queries,
        )
        check_shard(self.task_id, shard_index, shard_count, rendered=False)

    def job_values(self) -> dict[str, Any]:
        values = super().job_values()
        values["id_columns"] = [] if self.id_columns is None else self.id_columns
        if isinstance(self.previous_output, str) and self.previous_output.strip() in NO_PREVIOUS_OUTPUT:
            values["previous_output"] = None  # a template that rendered nothing: no earlier output yet
        elif self.previous_output is not None and self.content_columns is None:
            values["content_columns"] = []  # so that the check names the missing argument
        return values

    @classmethod
    def check_partial_arguments(cls, task_id: str, kwargs: Mapping[str, Any]) -> None:
        check_shard(task_id, kwargs.get("shard_index"), kwargs.get("shard_count", 1), rendered=False)

    def check_rendered_arguments(self, context: Context) -> None:
        super().check_rendered_arguments(context)
        check_shard(self.task_id, self.shard_index, self.shard_count, rendered=True)

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        self._parent_run_id = run.parent_run_id
        params = self.job_params()
        index, count = check_shard(self.task_id, self.shard_index, self.shard_count, rendered=True)
        pinned = pin_model(self.mlflow_hook, self.model, run.parent_run_id)
        self.log.info("Model %s pinned to version %s for this DAG run", self.model, pinned.version)
        return JobSpec(
            job=self.job_type,
            model=pinned,
            inputs=uri_list(self.input_uri),
            output=self.output_uri,
            mlflow=self.mlflow_ref(run),
            params=params,
            shard=Shard(index, count),
        )

    def run_job(self, context: Context, spec: JobSpec, mode: ExecutionMode) -> dict[str, Any]:
        """Run the job; if the model cannot be loaded and a fallback is set, score with the fallback."""
        result = super().run_job(context, spec, mode)
        if result.get("error_type") != "ModelLoadError" or not self.fallback_model:
            return result
        pinned = pin_model(self.mlflow_hook, self.fallback_model, self._parent_run_id)
        self.log.warning(
            "Model %s version %s cannot be loaded (%s); falling back to %s version %s",
            spec.model.name,
            spec.model.version,
            result.get("error"),
            pinned.name,
            pinned.version,
        )
        fallback_spec = replace(spec, model=pinned)
        fallback = super().run_job(context, fallback_spec, mode)
        fallback["fallback"] = {
            "used": True,
            "reason": result.get("error"),
            "intended_model": {"name": spec.model.name, "version": spec.model.version},
        }
        return fallback

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        model = result.get("model", {})
        tags = {
            Tag.MODEL_NAME: str(model.get("name", "")),
            Tag.MODEL_VERSION: str(model.get("version", "")),
            Tag.MODEL_URI: str(model.get("uri", "")),
            Tag.OUTPUT_URI: self.output_uri,
            Tag.OUTPUTS: json.dumps([out["uri"] for out in result.get("outputs", [])]),
            Tag.INPUT_DIGEST: str(result.get("input_digest", "")),
        }
        if model.get("alias"):
            tags[Tag.MODEL_ALIAS] = str(model["alias"])
        if model.get("device"):
            tags[Tag.DEVICE] = str(model["device"])
        details = result.get("details") or {}
        if details.get("content_digest"):
            tags[Tag.CONTENT_DIGEST] = str(details["content_digest"])
            tags[Tag.RECOMPUTE_REASON] = str(details.get("recompute_reason", ""))[:500]
        if result.get("fallback"):
            tags[Tag.FALLBACK_USED] = "true"
            tags[Tag.FALLBACK_REASON] = str(result["fallback"]["reason"])[:500]
        return tags

    def record_result(self, run: TaskRun, result: dict[str, Any]) -> None:
        """Besides metrics and tags, log the input as an MLflow dataset with its digest."""
        super().record_result(run, result)
        inputs = uri_list(self.input_uri)
        source = ",".join(inputs)
        dataset = Dataset(
            name=inputs[0].rstrip("/").rsplit("/", 1)[-1] or "input",
            digest=str(result.get("input_digest", ""))[:32] or "unknown",
            source_type="s3" if source.startswith("s3://") else "local",
            source=json.dumps({"uri": source}),
            schema=json.dumps(result.get("input_schema")) if result.get("input_schema") else None,
        )
        with self.mlflow_hook.client() as client:
            client.log_inputs(
                run.run_id,
                datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "inference")])],
            )

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        model = result.get("model", {})
        return {
            EventKey.MODEL_NAME: model.get("name"),
            EventKey.MODEL_VERSION: model.get("version"),
            EventKey.MODEL_ALIAS: model.get("alias"),
            EventKey.MLFLOW_RUN_ID: run.run_id,
            "mlflow_parent_run_id": run.parent_run_id,
            EventKey.ROW_COUNT: result.get("rows_out", 0),
            EventKey.OUTPUT_URI: self.output_uri,
            "output_files": [out["uri"] for out in result.get("outputs", [])],
            EventKey.INPUT_DIGEST: result.get("input_digest"),
            "shard": f"{self.shard_index}/{self.shard_count}",
            "fallback": bool(result.get("fallback")),
            **self._embedding_extra(result.get("details") or {}),
        }

    @staticmethod
    def _embedding_extra(details: dict[str, Any]) -> dict[str, Any]:
        """Rows predicted and reused, the content digest, why all was recomputed, the index files."""
        extra = {
            key: details[key] for key in (EventKey.ROWS_PREDICTED, EventKey.ROWS_REUSED) if key in details
        }
        if details.get("content_digest"):
            extra[EventKey.CONTENT_DIGEST] = details["content_digest"]
            extra[EventKey.RECOMPUTE_REASON] = details.get("recompute_reason")
        if details.get("index_files"):
            extra["index_files"] = [entry["uri"] for entry in details["index_files"]]
        return extra
