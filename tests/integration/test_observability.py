"""Observability of a real ``dag.test()`` inference in local mode: batch-latency percentiles and peak
memory on the task's MLflow run (real ``mlflow server``), spans sent to a loopback OTLP/HTTP receiver
under the task's trace context, and a missing collector that changes nothing for the job."""

from __future__ import annotations

import socket
import time

import pytest

from tests._support.airflow_records import dag_run_mlflow_runs
from tests._support.churn_sample import train_and_register, write_customers
from tests._support.otlp_receiver import otlp_receiver

ROWS = 5_000  # batches of 1000 rows: 5 batches
OTEL_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "TRACEPARENT")


@pytest.fixture(scope="module")
def registered_churn(mlflow_server) -> dict:
    return train_and_register(mlflow_server.url, "churn_observed", alias="champion", n_rows=2_000)


@pytest.fixture
def scoring_data(registered_churn, mlflow_connection, tmp_path, monkeypatch):
    for name in OTEL_ENVS:
        monkeypatch.delenv(name, raising=False)
    write_customers(str(tmp_path / "scoring"), ROWS, seed=5)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MODEL", "churn_observed@champion")
    return tmp_path


def _task_metrics(mlflow_url: str, run_id: str) -> dict[str, float]:
    runs = dag_run_mlflow_runs(mlflow_url, run_id, experiment_name="airflow/observed_inference", role="task")
    assert len(runs) == 1
    return runs[0].data.metrics


def test_local_inference_records_percentiles_peak_memory_and_spans_under_the_task_trace(
    scoring_data, mlflow_server, monkeypatch
):
    from opentelemetry.sdk.trace import TracerProvider

    from tests.dags.ai_test_dags import retried_inference

    tracer = TracerProvider().get_tracer("test")  # stands for Airflow's task span
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        with tracer.start_as_current_span("task") as task_span:
            dag_run = retried_inference("observed_inference", retries=0, batch_size=1000).test()
        received = receiver.spans()
    assert dag_run.state == "success"

    metrics = _task_metrics(mlflow_server.url, dag_run.run_id)
    assert metrics["batches"] == 5
    p50, p95, p99 = (metrics[f"batch_latency_p{p}_s"] for p in (50, 95, 99))
    assert 0 < p50 <= p95 <= p99 <= metrics["batch_latency_max_s"] <= metrics["stream_s"]
    assert metrics["peak_rss_mb"] > 50  # pandas, pyarrow and scikit-learn are loaded

    by_name = {span.name: span for span in received}
    assert {"ai_provider.infer.read", "ai_provider.infer.predict", "ai_provider.infer.write"} <= set(by_name)
    job = by_name["ai_provider.infer"]
    parent = task_span.get_span_context()
    assert job.trace_id == parent.trace_id.to_bytes(16, "big")  # the local run saw the task's trace
    assert job.parent_span_id == parent.span_id.to_bytes(8, "big")
    for phase in ("read", "predict", "write"):
        assert by_name[f"ai_provider.infer.{phase}"].parent_span_id == job.span_id


def test_inference_succeeds_in_bounded_time_when_the_collector_is_unreachable(
    scoring_data, mlflow_server, monkeypatch
):
    from tests.dags.ai_test_dags import retried_inference

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    began = time.monotonic()
    dag_run = retried_inference("observed_inference", retries=0, batch_size=1000).test()
    assert dag_run.state == "success"
    assert time.monotonic() - began < 120  # a collector that is not there costs at most a few seconds
    assert "batch_latency_p99_s" in _task_metrics(mlflow_server.url, dag_run.run_id)
