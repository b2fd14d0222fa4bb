"""What a job reports besides its output: the result's lineage, timing and cost, and its MLflow report.

Every job's result records its timings and cost (:func:`finish`). The quality gate (``evaluate``)
and the ``drift`` job read their whole input: their result also records it for lineage (source,
digest, schema, :func:`whole_input_result`), and they log a JSON report and plots into the task's
MLflow run (``spec.mlflow.run_id``, when there is one, :func:`log_report`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from airflow_ai_provider.runtime import Log, job_metrics, storage, tracking
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec


def log_report(
    spec: JobSpec, documents: dict[str, Any], figures: dict[str, Callable[[], Any]], log: Log
) -> None:
    """Log JSON ``documents`` and the matplotlib figures ``figures`` draw (PNG) into the task's run.

    Nothing is drawn or logged when the spec has no MLflow run. A failure is one mapped
    :func:`~.tracking.mlflow_error` naming every artifact: refused credentials or a missing run are
    bad input, anything else (HTTP, artifact store) is retryable.
    """
    ref = spec.mlflow
    if not ref.run_id:
        return
    names = [*documents, *figures]
    what = f"cannot log {', '.join(names)} to MLflow run {ref.run_id}"
    drawn = {name: draw() for name, draw in figures.items()}
    texts = {name: json.dumps(doc, indent=2, sort_keys=True, default=str) for name, doc in documents.items()}
    with tracking.run_client(ref, what) as client, tempfile.TemporaryDirectory(prefix="ai-report-") as folder:
        for name, text in texts.items():
            client.log_text(ref.run_id, text, name)
        for name, figure in drawn.items():
            path = os.path.join(folder, name)
            figure.savefig(path, dpi=100)
            client.log_artifact(ref.run_id, path)
    log(f"logged {' and '.join(names)} to MLflow run {ref.run_id}")


def whole_input_result(
    spec: JobSpec,
    data: storage.InputData,
    started: float,
    rows: int,
    *,
    model: dict[str, Any],
    details: dict[str, Any],
    metrics: dict[str, float],
) -> JobResult:
    """The successful result of a job that read all of ``data``: lineage fields, timings and cost.

    :param started: the job's start (``time.time()``); it ends now.
    :param rows: the rows the job read.
    :param metrics: the job's own metrics (see :func:`finish`).
    """
    result = JobResult(job=spec.job, status="success", model=model, details=details)
    result.rows_in = rows
    result.input_source = ",".join(spec.inputs)
    result.input_digest = data.digest
    result.input_schema = storage.column_types(data.schema)
    return finish(result, started, metrics)


def finish(result: JobResult, started: float, metrics: dict[str, float]) -> JobResult:
    """Mark ``result`` successful, with the timings from ``started`` (``time.time()``) to now and
    ``metrics`` plus ``duration_s``, the batch-latency percentiles and the peak memory
    (:func:`~.job_metrics.summary`)."""
    ended = time.time()
    result.status = "success"
    result.timings = {"started_at": started, "ended_at": ended}
    result.metrics = {**metrics, "duration_s": round(ended - started, 3), **job_metrics.summary()}
    return result
