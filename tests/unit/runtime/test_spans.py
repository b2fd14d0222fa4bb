"""The runtime's OpenTelemetry spans: sent to a loopback OTLP/HTTP receiver under the incoming trace,
skipped without an endpoint, and bounded in time when the collector is missing or silent."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from airflow_ai_provider.runtime import job_metrics, spans
from airflow_ai_provider.runtime.contract.spec import JobResult
from tests._support.otlp_receiver import otlp_receiver

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in (*spans.ENDPOINT_ENVS, "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "TRACEPARENT"):
        monkeypatch.delenv(name, raising=False)
    job_metrics.reset()
    yield
    job_metrics.reset()


def _infer_result() -> JobResult:
    clock = job_metrics.batch_clock()
    for _ in range(4):
        clock.lap()
    now = time.time()
    result = JobResult(job="infer", status="success", rows_in=4000, rows_out=4000)
    result.timings = {"started_at": now - 2, "ended_at": now}
    result.metrics = {"read_s": 0.1, "predict_s": 0.5, "write_s": 0.2, **clock.summary()}
    result.model = {"name": "churn", "version": "3", "alias": None}
    return result


def test_infer_spans_are_children_of_the_incoming_trace_context(monkeypatch):
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("TRACEPARENT", f"00-{TRACE_ID}-{PARENT_ID}-01")
        spans.export_job(None, _infer_result(), time.time() - 2)
        received = {span.name: span for span in receiver.spans()}
    assert set(received) == {
        "ai_provider.infer",
        "ai_provider.infer.read",
        "ai_provider.infer.predict",
        "ai_provider.infer.write",
    }
    job = received["ai_provider.infer"]
    assert job.trace_id.hex() == TRACE_ID and job.parent_span_id.hex() == PARENT_ID
    for phase in ("read", "predict", "write"):
        child = received[f"ai_provider.infer.{phase}"]
        assert child.trace_id == job.trace_id and child.parent_span_id == job.span_id
        attributes = {a.key: a.value for a in child.attributes}
        assert attributes["ai_provider.batches"].int_value == 4
    job_attributes = {a.key: a.value for a in job.attributes}
    assert job_attributes["ai_provider.model.name"].string_value == "churn"
    assert job_attributes["ai_provider.rows_out"].int_value == 4000
    assert "ai_provider.metric.batch_latency_p95_s" in job_attributes


def test_switched_off_tracing_sends_nothing(monkeypatch):
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        spans.export_job(None, _infer_result(), time.time())
        assert receiver.bodies == []


def test_without_an_endpoint_opentelemetry_is_not_imported():
    code = (
        "import sys, time\n"
        "from airflow_ai_provider.runtime import spans\n"
        "from airflow_ai_provider.runtime.contract.spec import JobResult\n"
        "spans.export_job(None, JobResult(job='infer', status='success'), time.time())\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_missing_collector_neither_fails_nor_holds_the_job(monkeypatch):
    lines: list[str] = []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    began = time.monotonic()
    spans.export_job(None, _infer_result(), time.time(), log=lines.append)
    assert time.monotonic() - began < spans.EXPORT_BOUND_S + 2
    assert lines and "not delivered" in lines[0]


def test_a_collector_that_never_answers_holds_the_job_at_most_the_bound(monkeypatch):
    """A socket that accepts connections (its backlog) and never answers: a hung collector."""
    lines: list[str] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}/v1/traces"
        )
        began = time.monotonic()
        spans.export_job(None, _infer_result(), time.time(), log=lines.append)
        elapsed = time.monotonic() - began
    assert elapsed < spans.EXPORT_BOUND_S + 2  # the exporter's default timeout is 10 s
    assert lines and "not delivered" in lines[0]
