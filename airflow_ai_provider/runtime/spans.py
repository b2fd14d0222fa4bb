"""OpenTelemetry spans of a finished job, sent over OTLP/HTTP when an endpoint is configured.

Nothing is imported or sent unless ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``$OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and neither ``$OTEL_SDK_DISABLED=true`` nor
``$OTEL_TRACES_EXPORTER=none``). The spans are made once the job has ended, from its result and its
batch clock (:mod:`.job_metrics`), as children of the incoming W3C trace context (``$TRACEPARENT``,
``$TRACESTATE``: the task's span in Airflow):

- ``ai_provider.<job>``: the whole job, with its status, rows, model, shard and MLflow run;
- for ``infer``: ``ai_provider.infer.read``, ``.predict`` and ``.write``. The job streams, so the
  three phases interleave over the same interval (first batch wait to last batch written); each span
  covers it and carries its busy seconds (``ai_provider.busy_s``) and batches.

A missing collector never fails the job and delays it by at most :data:`EXPORT_BOUND_S` seconds: the
export runs in a daemon thread, with the exporter's timeout at most that bound, and is waited for that
long. Without the ``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http`` packages (not
in the ``runtime`` extra) no span is sent and one line says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from airflow_ai_provider.runtime import Log, job_metrics, log_line
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec

#: Seconds the job's end may wait for the collector, whatever the exporter's own settings.
EXPORT_BOUND_S = 3.0
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: The phases each job's spans show, with the result metric holding their busy seconds.
PHASES = {"infer": {"read": "read_s", "predict": "predict_s", "write": "write_s"}}
SERVICE_NAME = "airflow-ai-provider-runtime"


def configured(env: Mapping[str, str] = os.environ) -> bool:
    """An OTLP endpoint is set and tracing is not switched off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_ENVS)


def export_job(spec: JobSpec | None, result: JobResult, started: float, log: Log = log_line) -> None:
    """Send the spans of the job that ``started`` (``time.time()``) and ended now, when an endpoint
    is configured; never raises."""
    if not configured():
        return
    try:
        spans = _make_spans(spec, result, started)
    except ImportError as err:
        log(f"OpenTelemetry spans not sent: {err.name or err} is not installed in this environment")
        return
    except Exception as err:  # tracing is best effort
        log(f"OpenTelemetry spans not sent: {type(err).__name__}: {err}")
        return
    outcome: list[str] = []
    thread = threading.Thread(target=_export, args=(spans, outcome), daemon=True, name="otlp-export")
    thread.start()
    thread.join(EXPORT_BOUND_S)
    if thread.is_alive() or outcome != ["SUCCESS"]:
        what = outcome[0] if outcome else f"no answer within {EXPORT_BOUND_S:.0f}s"
        log(f"OpenTelemetry spans not delivered to the collector ({what}); the job is not affected")


def _exporter_timeout() -> float:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        try:
            return min(float(os.environ[name]), EXPORT_BOUND_S)
        except (KeyError, ValueError):
            continue
    return EXPORT_BOUND_S


def _export(spans: list[Any], outcome: list[str]) -> None:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(timeout=_exporter_timeout())
        try:
            outcome.append(exporter.export(spans).name)
        finally:
            exporter.shutdown()
    except Exception as err:
        outcome.append(f"{type(err).__name__}: {err}")


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _make_spans(spec: JobSpec | None, result: JobResult, started: float) -> list[Any]:
    """The job's finished spans (``ReadableSpan``), parented on ``$TRACEPARENT`` when it is set."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Status, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ended: list[Any] = []

    class Collect(SpanProcessor):
        def on_end(self, span: Any) -> None:
            ended.append(span)

    service = os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(Collect())
    tracer = provider.get_tracer("airflow_ai_provider.runtime")
    carrier = {key.lower(): os.environ[key] for key in ("TRACEPARENT", "TRACESTATE") if os.environ.get(key)}
    parent = TraceContextTextMapPropagator().extract(carrier)
    started = float(result.timings.get("started_at") or started)
    finished = float(result.timings.get("ended_at") or time.time())
    job = tracer.start_span(
        f"ai_provider.{result.job}",
        context=parent,
        start_time=_ns(started),
        attributes=_attributes(spec, result),
    )
    if result.status != "success":
        job.set_status(Status(StatusCode.ERROR, result.error or result.status))
    clock = job_metrics.current()
    if clock is not None and clock.laps:
        inside = set_span_in_context(job)
        for phase, metric in PHASES.get(result.job, {}).items():
            busy = result.metrics.get(metric)
            attributes = {"ai_provider.batches": len(clock.laps)}
            if isinstance(busy, int | float):
                attributes["ai_provider.busy_s"] = float(busy)
            child = tracer.start_span(
                f"ai_provider.{result.job}.{phase}",
                context=inside,
                start_time=_ns(clock.started_at),
                attributes=attributes,
            )
            child.end(end_time=_ns(clock.ended_at))
    job.end(end_time=_ns(finished))
    return ended


def _attributes(spec: JobSpec | None, result: JobResult) -> dict[str, Any]:
    """The job span's attributes: no secrets (specs and results never hold any)."""
    found: dict[str, Any] = {"ai_provider.job": result.job, "ai_provider.status": result.status}
    for key in ("rows_in", "rows_out"):
        if isinstance(getattr(result, key, None), int):
            found[f"ai_provider.{key}"] = getattr(result, key)
    if result.model:
        found.update({f"ai_provider.model.{k}": str(v) for k, v in result.model.items() if v is not None})
    if result.shard:
        found.update({f"ai_provider.shard.{k}": int(v) for k, v in result.shard.items()})
    if spec is not None and spec.mlflow is not None and spec.mlflow.run_id:
        found["ai_provider.mlflow.run_id"] = spec.mlflow.run_id
    found.update({f"ai_provider.metric.{k}": float(v) for k, v in result.metrics.items() if _number(v)})
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
