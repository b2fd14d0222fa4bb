"""Job reports: the JSON and plots logged into the task's MLflow run, and the result's common fields."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import reports, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from tests.unit.runtime.conftest import closed_port


def _spec(tracking_uri: str, run_id: str | None, inputs: str = "unused.parquet") -> JobSpec:
    mlflow = {"tracking_uri": tracking_uri, **({"run_id": run_id} if run_id else {})}
    model = {"name": "churn", "version": "1"}
    return JobSpec.from_dict({"job": "drift", "inputs": [inputs], "mlflow": mlflow, "model": model})


def _figure() -> object:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    return figure


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def test_report_is_logged_into_the_task_run_as_json_and_png(store, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.create_experiment("reports", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    lines: list[str] = []

    reports.log_report(
        _spec(store, run_id), {"report.json": {"b": 1, "a": [2]}}, {"plot.png": _figure}, lines.append
    )

    assert {item.path for item in client.list_artifacts(run_id)} == {"report.json", "plot.png"}
    text = Path(client.download_artifacts(run_id, "report.json", str(tmp_path))).read_text()
    assert json.loads(text) == {"a": [2], "b": 1}
    assert Path(client.download_artifacts(run_id, "plot.png", str(tmp_path))).read_bytes()[:4] == b"\x89PNG"
    assert lines == [f"logged report.json and plot.png to MLflow run {run_id}"]


def test_without_a_task_run_nothing_is_drawn_or_logged(store):
    def never_drawn() -> object:
        raise AssertionError("a figure was drawn for a job without an MLflow run")

    lines: list[str] = []
    reports.log_report(_spec(store, None), {"report.json": {}}, {"plot.png": never_drawn}, lines.append)
    assert lines == []


def test_report_for_a_run_that_does_not_exist_is_bad_input_naming_the_run(store):
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=store).search_experiments()  # creates the store's tables
    ghost = "0" * 32
    with pytest.raises(JobInputError) as caught:
        reports.log_report(_spec(store, ghost), {"report.json": {}}, {"plot.png": _figure}, print)
    assert not caught.value.retryable
    assert str(caught.value) == f"MLflow run {ghost} does not exist in {store}"


def test_report_to_an_unreachable_server_is_retryable_and_names_every_artifact(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(JobServiceError) as caught:
        reports.log_report(_spec(uri, "1" * 32), {"report.json": {}}, {"plot.png": _figure}, print)
    assert time.monotonic() - started < 60
    assert caught.value.retryable
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot log report.json, plot.png to MLflow run {'1' * 32}: MLflow at {uri} ")


def test_whole_input_result_records_the_input_for_lineage_and_the_cost(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"age": [1, 2, 3], "region": ["a", "b", "c"]}), path)
    data = storage.InputData.open([str(path)])
    started = time.time()

    result = reports.whole_input_result(
        _spec("sqlite:///unused.db", None, str(path)), data, started, 3,
        model={"name": "churn"}, details={"drift": False}, metrics={"max_psi": 0.1},
    )  # fmt: skip

    assert (result.status, result.rows_in, result.model, result.details) == (
        "success",
        3,
        {"name": "churn"},
        {"drift": False},
    )
    assert result.input_source == str(path)
    assert result.input_digest == data.digest
    assert result.input_schema == {"age": "int64", "region": "string"}
    assert result.timings["started_at"] == started <= result.timings["ended_at"]
    assert set(result.metrics) == {"max_psi", "duration_s", "peak_rss_mb"}
    assert result.metrics["peak_rss_mb"] > 0


def test_finish_marks_success_and_keeps_the_jobs_own_metrics():
    result = JobResult(job="infer", status="running")
    reports.finish(result, time.time() - 2.0, {"batches": 4})
    assert result.status == "success"
    assert result.metrics["batches"] == 4
    assert result.metrics["duration_s"] >= 2.0
