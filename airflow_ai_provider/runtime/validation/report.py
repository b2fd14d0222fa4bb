"""The validation report: per-expectation summaries, the failure line, the log report and stored files.

The full result (Great Expectations' suite validation result JSON, :data:`RESULT_FILE`) and Great
Expectations' own data docs page for it (:data:`REPORT_FILE`) are published atomically in the report
folder (default ``<first input folder>/_validation/<suite name>/``) and logged to the task's MLflow
run when the spec names one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import one_line
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.contract.suite import ExpectationDef, SuiteDef
from airflow_ai_provider.runtime.storage.publish import publish
from airflow_ai_provider.runtime.tracking import log_texts
from airflow_ai_provider.runtime.validation.aggregates import plain
from airflow_ai_provider.runtime.validation.gx_suite import render_html

SUMMARY_MAX_FAILURES = 8
SUMMARY_MAX_EXAMPLES = 3
MAX_OBSERVED_ITEMS = 20
RESULT_FILE = "validation_result.json"
REPORT_FILE = "validation_report.html"
REPORT_FOLDER = "_validation"


def summarize(expectation: ExpectationDef, outcome: Any, max_examples: int) -> dict[str, Any]:
    """One expectation's outcome in a few fields."""
    values = outcome.result or {}
    info = outcome.exception_info or {}
    observed = plain(values.get("observed_value"))
    return {
        "expectation": expectation.type,
        "column": ", ".join(expectation.columns) or None,
        "success": bool(outcome.success),
        "element_count": values.get("element_count"),
        "unexpected_count": values.get("unexpected_count"),
        "unexpected_examples": [plain(v) for v in (values.get("partial_unexpected_list") or [])][
            :max_examples
        ],
        "observed_value": None if isinstance(observed, dict) or _too_long(observed) else observed,
        "error": one_line(info["exception_message"]) if info.get("raised_exception") else None,
    }


def _too_long(value: Any) -> bool:
    return isinstance(value, list) and len(value) > MAX_OBSERVED_ITEMS


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, float)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _outcome_text(summary: dict[str, Any]) -> str:
    if summary["error"]:
        return f"error: {summary['error']}"
    if summary["unexpected_count"] is not None:
        text = f"{summary['unexpected_count']} unexpected of {summary['element_count']}"
        examples = summary["unexpected_examples"][:SUMMARY_MAX_EXAMPLES]
        return text + (f" (e.g. {', '.join(map(_show, examples))})" if examples else "")
    return f"observed {_show(summary['observed_value'])}"


def _label(summary: dict[str, Any]) -> str:
    column = summary["column"]
    return f"{summary['expectation']}({column})" if column else summary["expectation"]


def failure_line(suite_name: str, summaries: list[dict[str, Any]]) -> str:
    """The one-line error of a failed validation."""
    failed = [s for s in summaries if not s["success"]]
    parts = [f"{_label(s)} {_outcome_text(s)}" for s in failed[:SUMMARY_MAX_FAILURES]]
    if len(failed) > SUMMARY_MAX_FAILURES:
        parts.append(f"and {len(failed) - SUMMARY_MAX_FAILURES} more")
    head = f"data validation failed: {len(failed)} of {len(summaries)} expectations (suite {suite_name})"
    return one_line(f"{head}: {'; '.join(parts)}")


def report_lines(suite_name: str, summaries: list[dict[str, Any]], rows: int, batches: int) -> list[str]:
    """A readable multi-line report for the task log."""
    passed = sum(1 for s in summaries if s["success"])
    lines = [
        f"validation of {rows} rows ({batches} batch{'es' if batches != 1 else ''}) against suite "
        f"{suite_name}: {passed} of {len(summaries)} expectations passed"
    ]
    for summary in summaries:
        mark = "PASS" if summary["success"] else "FAIL"
        lines.append(f"  {mark} {_label(summary)}: {_outcome_text(summary)}")
    return lines


def default_report_uri(first_input: str, data: storage.InputData, suite: SuiteDef) -> str:
    """``<folder of the first input>/_validation/<suite name>/``."""
    location = storage.parse_uri(first_input)
    last = location.path.rsplit("/", 1)[-1]
    is_file = any(meta.file.location.path == location.path for meta in data.metas)
    folder = location.path.rsplit("/", 1)[0] if is_file or any(c in last for c in "*?[") else location.path
    return storage.Location(location.scheme, folder).child(REPORT_FOLDER).child(suite.path_name).uri


def store_reports(
    spec: JobSpec, folder: storage.Location, suite_result: Any, log: Callable[[str], None]
) -> str:
    """Store the result JSON and HTML report next to the data and in the task's MLflow run."""
    result_json = json.dumps(suite_result.to_json_dict(), indent=2, sort_keys=True, default=str)
    try:
        html = render_html(suite_result)
    except Exception as err:  # rendering is best effort: the JSON holds the full result
        log(f"warning: could not render the HTML report: {one_line(err)}")
        html = None
    files = [(RESULT_FILE, result_json, "application/json")]
    if html is not None:
        files.append((REPORT_FILE, html, "text/html"))
    for name, text, content_type in files:
        publish(folder, name, text.encode("utf-8"), content_type)
    log(f"validation reports written to {folder.uri}/ ({', '.join(name for name, _, _ in files)})")
    if spec.mlflow.run_id:
        what = f"cannot store the validation report in MLflow run {spec.mlflow.run_id}"
        log_texts(spec.mlflow, {name: text for name, text, _ in files}, what)
        log(f"validation reports logged to MLflow run {spec.mlflow.run_id}")
    return folder.uri
