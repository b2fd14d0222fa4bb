"""The trace context and OTLP endpoint a local runtime gets (:func:`local_trace_env`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_ai_provider.execution.local import local_trace_env

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _no_endpoint(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def _context(carrier: dict[str, str]) -> dict:
    """A task context holding only what the function reads: a task instance with its carrier."""
    return {"ti": SimpleNamespace(context_carrier=carrier)}


def test_the_tasks_trace_context_reaches_the_local_runtime():
    env = local_trace_env(_context({"traceparent": TRACEPARENT, "tracestate": "vendor=1"}))
    assert env == {"TRACEPARENT": TRACEPARENT, "TRACESTATE": "vendor=1"}


def test_airflow_traces_config_gives_the_endpoint_when_the_worker_sets_none(monkeypatch):
    monkeypatch.setenv("AIRFLOW__TRACES__OTEL_ON", "True")
    monkeypatch.setenv("AIRFLOW__TRACES__OTEL_HOST", "collector.local")
    monkeypatch.setenv("AIRFLOW__TRACES__OTEL_PORT", "4318")
    env = local_trace_env(_context({}))
    assert env == {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector.local:4318/v1/traces"}


def test_the_workers_own_endpoint_wins_over_airflow_traces_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__TRACES__OTEL_ON", "True")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert local_trace_env(_context({})) == {}


def test_without_tracing_nothing_is_added():
    assert local_trace_env(_context({})) == {}
    assert local_trace_env(None) == {}
