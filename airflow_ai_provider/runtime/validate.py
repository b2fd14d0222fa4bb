"""The ``validate`` job: check Parquet or CSV data against a Great Expectations 1.x suite.

The input is read in batches of ``params.batch_size`` rows (small record batches are coalesced, so a
batch can span files), converted to pandas and validated with an ephemeral Great Expectations
context, so memory follows the batch size, not the input size. How each expectation is judged:

- **Input of one batch** (at most ``batch_size`` rows): the whole suite is validated by Great
  Expectations in one call; every expectation type works.
- **Input of several batches**:

  - *row expectations* (column map, column pair map and multicolumn map expectations, e.g.
    ``expect_column_values_to_be_between``, ``..._to_not_be_null``, ``..._to_match_regex``): validated
    per batch and combined exactly: element, missing and unexpected counts are summed, success is
    recomputed from the totals and ``mostly``, and the first few unexpected values (with their row
    numbers in the whole input) are kept;
  - *uniqueness across rows* (``expect_column_values_to_be_unique``,
    ``expect_compound_columns_to_be_unique``, ``expect_multicolumn_values_to_be_unique``): exact over
    the whole input. A 64-bit hash of each row's value is spilled to bucket files on disk
    (``params.scratch_dir``), each bucket is sorted on its own to find repeated hashes, and only when
    some exist the input is read a second time to count the actual duplicated values (so a hash
    collision cannot fail the check, and the examples are real values). Memory: one bucket, 1/64 of
    8 bytes per row, plus the duplicated values;
  - *streamed aggregates*: table row count (``expect_table_row_count_to_be_between`` / ``_to_equal``)
    and column min, max, sum, mean, standard deviation (sample, as pandas) and non-null proportion
    (``expect_column_{min,max,sum,mean,stdev}_to_be_between``,
    ``expect_column_proportion_of_non_null_values_to_be_between``): computed exactly with running
    totals (standard deviation by Chan's pairwise update) and judged by the expectation's own rule;
  - *schema expectations* (columns exist, match a set or list, column count): judged on the first
    batch;
  - *every other expectation* needs all rows at once (median, quantiles, distinct values, most common
    value, z-scores, increasing/decreasing order, ...): the job refuses it with a one-line error
    before validating, naming the expectations. Raise ``batch_size`` above the row count to validate
    such a suite in one batch.

Whatever the outcome, the full result (Great Expectations' suite validation result JSON,
``validation_result.json``) and Great Expectations' own data docs page for it
(``validation_report.html``, rendered with ``ValidationResultsPageRenderer``) are stored as artifacts
of the task's MLflow run (``spec.mlflow.run_id``) and in ``params.report_uri`` (default
``<first input folder>/_validation/<suite name>/``; each file is published atomically), and a readable
report is printed. A failed validation returns a result with status ``failed``, not retryable, whose
one-line ``error`` names each failed expectation, its column, counts and example values.

Uniqueness is found by :class:`~.uniqueness.DuplicateFinder` (hashes spilled to ``scratch_dir``).

Parameters (``spec.params``, checked by :class:`~.params.ValidateParams`): ``suite_uri`` (JSON or YAML file: path, ``file://`` or ``s3://``) or
``expectations`` (inline suite, see :mod:`.expectations`), ``suite_name``, ``batch_size`` (default
200000), ``input_format``, ``report_uri``, ``max_examples`` (unexpected values kept per expectation,
default 5), ``scratch_dir`` (default ``$TMPDIR``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime import log_line, scratch, storage
from airflow_ai_provider.runtime.contract import suite as suites
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError, one_line
from airflow_ai_provider.runtime.contract.params import ValidateParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.contract.timeouts import mlflow_unavailable
from airflow_ai_provider.runtime.memory import peak_rss_mb
from airflow_ai_provider.runtime.tracking import probe_tracking_server
from airflow_ai_provider.runtime.uniqueness import DuplicateFinder

Log = Callable[[str], None]
SUMMARY_MAX_FAILURES = 8
SUMMARY_MAX_EXAMPLES = 3
MAX_OBSERVED_ITEMS = 20
RESULT_FILE = "validation_result.json"
REPORT_FILE = "validation_report.html"
REPORT_FOLDER = "_validation"
ERROR_TYPE = "DataValidationFailed"

UNIQUE = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_multicolumn_values_to_be_unique",
    }
)
#: Aggregate expectations computed with running totals: type -> Great Expectations metric name.
STREAMED = {
    "expect_table_row_count_to_be_between": "table.row_count",
    "expect_table_row_count_to_equal": "table.row_count",
    "expect_column_min_to_be_between": "column.min",
    "expect_column_max_to_be_between": "column.max",
    "expect_column_sum_to_be_between": "column.sum",
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_stdev_to_be_between": "column.standard_deviation",
    "expect_column_proportion_of_non_null_values_to_be_between": "column.non_null_proportion",
}
#: Streamed metrics that only numbers have.
NUMERIC_METRICS = frozenset({"column.sum", "column.mean", "column.standard_deviation"})
#: Map expectations that still compare a row with other rows (order, column statistics).
NOT_ROW_LOCAL = frozenset(
    {
        "expect_column_values_to_be_increasing",
        "expect_column_values_to_be_decreasing",
        "expect_column_value_z_scores_to_be_less_than",
        "expect_column_values_to_not_be_outliers",
    }
)


# --- the plan: how each expectation is judged --------------------------------------------------------


@dataclass
class Plan:
    """Positions of the suite's expectations by how they are judged on a multi-batch input."""

    row: list[int] = field(default_factory=list)
    unique: list[int] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)
    schema: list[int] = field(default_factory=list)
    whole: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, suite: suites.SuiteDef) -> Plan:
        """Classify every expectation; unknown types and invalid arguments raise :class:`JobInputError`."""
        from great_expectations.expectations.expectation import (
            ColumnMapExpectation,
            ColumnPairMapExpectation,
            MulticolumnMapExpectation,
        )

        plan = cls()
        for position, expectation in enumerate(suite.expectations):
            suites.gx_configuration(expectation, position)  # checks the type and the arguments
            kind = suites.expectation_class(expectation.type)
            if expectation.type in UNIQUE:
                plan.unique.append(position)
            elif expectation.type in STREAMED:
                plan.streamed.append(position)
            elif expectation.type in suites.SCHEMA_EXPECTATIONS:
                plan.schema.append(position)
            elif expectation.type not in NOT_ROW_LOCAL and issubclass(
                kind, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
            ):
                plan.row.append(position)
            else:
                plan.whole.append(position)
        return plan


class GxRunner:
    """An ephemeral Great Expectations context with one pandas dataframe batch definition."""

    def __init__(self, max_examples: int) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("airflow_ai_validate")
        self.definition = source.add_dataframe_asset("input").add_batch_definition_whole_dataframe("batch")
        self.result_format = {"result_format": "SUMMARY", "partial_unexpected_count": max_examples}
        self.version = gx.__version__

    def validate(self, frame: Any, gx_suite: Any) -> dict[int, Any]:
        """Validate one pandas batch; results by suite position."""
        batch = self.definition.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(gx_suite, result_format=self.result_format)
        return {int(r.expectation_config.meta["_position"]): r for r in outcome.results}


# --- reading ------------------------------------------------------------------------------------------


def frames(data: storage.InputData, batch_size: int, columns: list[str] | None = None) -> Iterator[Any]:
    """Pandas frames of exactly ``batch_size`` rows (the last one fewer), across file boundaries."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in data.batches(columns, batch_size=batch_size):
        while batch.num_rows:
            take = min(batch_size - rows, batch.num_rows)
            pending.append(batch.slice(0, take))
            rows += take
            batch = batch.slice(take)
            if rows == batch_size:
                yield _to_pandas(pending)
                pending, rows = [], 0
    if pending:
        yield _to_pandas(pending)


def _to_pandas(batches: list[pa.RecordBatch]) -> Any:
    import pandas as pd

    if len(batches) == 1:
        return batches[0].to_pandas()
    return pd.concat([batch.to_pandas() for batch in batches], ignore_index=True)


# --- combining per-batch results ------------------------------------------------------------------------


@dataclass
class MapTotals:
    """One row expectation's results summed over batches."""

    config: Any
    max_examples: int
    element_count: int = 0
    missing_count: int | None = None
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    example_counts: dict[str, list[Any]] = field(default_factory=dict)
    all_success: bool = True
    observed: Any = None
    exception: dict[str, Any] | None = None

    def add(self, result: Any, offset: int) -> None:
        info = result.exception_info or {}
        if info.get("raised_exception") and self.exception is None:
            self.exception = dict(info)
        self.all_success = self.all_success and bool(result.success)
        values = result.result or {}
        if "unexpected_count" not in values:
            if self.observed is None or not result.success:
                self.observed = values.get("observed_value")
            return
        self.element_count += int(values.get("element_count") or 0)
        self.unexpected_count = (self.unexpected_count or 0) + int(values.get("unexpected_count") or 0)
        if "missing_count" in values:
            self.missing_count = (self.missing_count or 0) + int(values.get("missing_count") or 0)
        room = self.max_examples - len(self.examples)
        self.examples.extend((values.get("partial_unexpected_list") or [])[:room])
        room = self.max_examples - len(self.indexes)
        self.indexes.extend(
            offset + int(i) for i in (values.get("partial_unexpected_index_list") or [])[:room]
        )
        for entry in values.get("partial_unexpected_counts") or []:
            key = json.dumps(entry.get("value"), sort_keys=True, default=str)
            self.example_counts.setdefault(key, [entry.get("value"), 0])[1] += int(entry.get("count") or 0)

    def result(self) -> Any:
        if self.unexpected_count is None:
            success = self.all_success and self.exception is None
            return _evr(self.config, success, {"observed_value": self.observed}, self.exception)
        mostly = self.config.kwargs.get("mostly")
        considered = self.element_count - (self.missing_count or 0)
        success = self.exception is None and (
            self.unexpected_count == 0
            or (considered > 0 and (considered - self.unexpected_count) / considered >= (mostly or 1.0))
        )
        counts = sorted(self.example_counts.values(), key=lambda item: -item[1])[: self.max_examples]
        values = count_fields(self.element_count, self.missing_count, self.unexpected_count)
        values.update(
            partial_unexpected_list=self.examples,
            partial_unexpected_index_list=self.indexes,
            partial_unexpected_counts=[{"value": value, "count": count} for value, count in counts],
        )
        return _evr(self.config, success, values, self.exception)


def count_fields(element: int, missing: int | None, unexpected: int) -> dict[str, Any]:
    """The count fields of a map expectation's result, as Great Expectations reports them."""
    considered = element - (missing or 0)
    values: dict[str, Any] = {
        "element_count": element,
        "unexpected_count": unexpected,
        "unexpected_percent": 100.0 * unexpected / considered if considered else None,
    }
    if missing is not None:
        values.update(
            missing_count=missing,
            missing_percent=100.0 * missing / element if element else None,
            unexpected_percent_total=100.0 * unexpected / element if element else None,
            unexpected_percent_nonmissing=values["unexpected_percent"],
        )
    return values


def _evr(config: Any, success: bool, result: dict[str, Any], exception: dict[str, Any] | None = None) -> Any:
    from great_expectations.core import ExpectationValidationResult

    return ExpectationValidationResult(
        success=success,
        expectation_config=config,
        result=result,
        exception_info=exception
        or {"raised_exception": False, "exception_traceback": None, "exception_message": None},
    )


@dataclass
class ColumnStats:
    """Running totals of one column: rows, non-null values, min, max and (numeric) sum, mean, M2."""

    numeric: bool
    rows: int = 0
    count: int = 0
    minimum: Any = None
    maximum: Any = None
    total: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    error: str | None = None

    def update(self, series: Any) -> None:
        self.rows += len(series)
        values = series.dropna()
        if values.empty or self.error:
            return
        try:
            low, high = values.min(), values.max()
            self.minimum = low if self.minimum is None or low < self.minimum else self.minimum
            self.maximum = high if self.maximum is None or high > self.maximum else self.maximum
            if self.numeric:
                count, mean = len(values), float(values.mean())
                m2 = float(((values - mean) ** 2).sum())
                delta, both = mean - self.mean, self.count + count
                self.m2 += m2 + delta * delta * self.count * count / both
                self.mean += delta * count / both
                self.total += values.sum().item()
            self.count += len(values)
        except TypeError as err:
            self.error = f"column {series.name!r} cannot be aggregated: {one_line(err)}"

    def metric(self, name: str) -> Any:
        if name == "column.min":
            return _plain(self.minimum)
        if name == "column.max":
            return _plain(self.maximum)
        if name == "column.non_null_proportion":
            return self.count / self.rows if self.rows else None
        if not self.count:
            return None
        if name == "column.sum":
            return self.total
        if name == "column.mean":
            return self.total / self.count
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None


class Uniqueness(DuplicateFinder):
    """Exact uniqueness of a column (or column combination) over all batches, in bounded memory."""

    def __init__(self, config: Any, scratch: str, max_examples: int) -> None:
        kwargs = config.kwargs
        columns = [kwargs["column"]] if kwargs.get("column") else list(kwargs["column_list"])
        super().__init__(columns, scratch, kwargs.get("ignore_row_if") or "all_values_are_missing")
        self.config = config
        self.max_examples = max_examples

    def result(self) -> Any:
        repeated = self.repeated()
        unexpected = sum(count for _, count in repeated)
        mostly = self.config.kwargs.get("mostly") or 1.0
        considered = self.rows - self.missing
        success = unexpected == 0 or (considered > 0 and (considered - unexpected) / considered >= mostly)
        values = count_fields(self.rows, self.missing, unexpected)
        # repeated() lists the most frequent first
        plain = [(_plain(list(v) if isinstance(v, tuple) else v), c) for v, c in repeated]
        values.update(
            partial_unexpected_list=[v for v, c in plain for _ in range(c)][: self.max_examples],
            partial_unexpected_counts=[{"value": v, "count": c} for v, c in plain[: self.max_examples]],
        )
        return _evr(self.config, success, values)


# --- the job -------------------------------------------------------------------------------------------


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Validate the spec's input against its suite; store the reports; return the result."""
    started = time.time()
    params = ValidateParams.from_spec(spec.params)
    suite = suites.load_suite(spec.params)
    storage.check_scratch_dir(params.scratch_dir)
    if spec.mlflow.run_id:
        probe_tracking_server(spec.mlflow.tracking_uri)
    data = storage.InputData.open(spec.inputs, params.input_format)
    suites.check_columns(suite, data.columns)
    report = storage.parse_uri(params.report_uri or default_report_uri(spec.inputs[0], data, suite))
    check_writable(report)

    import_started = time.perf_counter()
    runner = GxRunner(params.max_examples)
    plan = Plan.build(suite)
    gx_import_s = time.perf_counter() - import_started
    log(
        f"suite {suite.name}: {len(suite.expectations)} expectations; input {len(data.metas)} "
        f"{data.metas[0].file.format} file(s), batches of {params.batch_size} rows"
    )
    validate_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ai-validate-", dir=params.scratch_dir) as scratch:
        results, rows, batches = _validate(data, suite, plan, runner, params, scratch, log)
    validate_s = time.perf_counter() - validate_started

    suite_result = _suite_result(suite, results, runner, data, spec, rows, batches)
    summaries = [summarize(suite.expectations[pos], r, params.max_examples) for pos, r in enumerate(results)]
    failed = [s for s in summaries if not s["success"]]
    for line in report_lines(suite.name, summaries, rows, batches):
        log(line)
    report_uri = store_reports(spec, report, suite_result, log)

    result = JobResult(job=spec.job, status="success" if not failed else "failed")
    result.input_source = ",".join(spec.inputs)
    result.rows_in = rows
    result.input_digest = data.digest
    result.input_schema = {f.name: str(f.type) for f in data.schema}
    result.inputs = [{"uri": m.file.uri, "bytes": m.file.size, "format": m.file.format} for m in data.metas]
    result.details = {
        "suite": suite.name,
        "success": not failed,
        "evaluated_expectations": len(summaries),
        "successful_expectations": len(summaries) - len(failed),
        "rows": rows,
        "batches": batches,
        "report_uri": report_uri,
        "results": summaries,
    }
    if failed:
        result.error = failure_line(suite.name, summaries)
        result.error_type = ERROR_TYPE
        result.retryable = False
    ended = time.time()
    result.timings = {"started_at": started, "ended_at": ended}
    result.metrics = {
        "duration_s": round(ended - started, 3),
        "gx_setup_s": round(gx_import_s, 3),
        "validate_s": round(validate_s, 3),
        "rows_per_s": round(rows / validate_s, 1) if validate_s > 0 else 0.0,
        "batches": batches,
        "evaluated_expectations": len(summaries),
        "successful_expectations": len(summaries) - len(failed),
        "success_percent": round(100.0 * (len(summaries) - len(failed)) / len(summaries), 3),
        "peak_rss_mb": peak_rss_mb(),
    }
    return result


def _validate(
    data: storage.InputData,
    suite: suites.SuiteDef,
    plan: Plan,
    runner: GxRunner,
    params: ValidateParams,
    scratch: str,
    log: Log,
) -> tuple[list[Any], int, int]:
    """Validate batch by batch; return the results in suite order, the row and batch counts."""
    stream = frames(data, params.batch_size)
    first = next(stream, None)
    if first is None:
        first = data.schema.empty_table().to_pandas()
    second = next(stream, None)
    if second is None:  # one batch: Great Expectations judges every expectation itself
        by_position = runner.validate(first, suites.to_gx_suite(suite))
        return [by_position[p] for p in range(len(suite.expectations))], len(first), 1
    if plan.whole:
        labels = ", ".join(suite.expectations[p].label for p in plan.whole)
        raise JobInputError(
            f"expectation(s) {labels} need all rows at once and the input has more than "
            f"batch_size={params.batch_size} rows: raise batch_size above the row count or "
            "drop them (row, uniqueness, row count and min/max/sum/mean/stdev expectations work on any size)"
        )
    configs = {p: suites.gx_configuration(suite.expectations[p], p) for p in range(len(suite.expectations))}
    row_suite = suites.to_gx_suite(suite, plan.row) if plan.row else None
    totals = {p: MapTotals(configs[p], params.max_examples) for p in plan.row}
    schema_results: dict[int, Any] = {}
    streamed_columns = {configs[p].kwargs["column"] for p in plan.streamed if configs[p].kwargs.get("column")}
    numeric = {
        f.name: pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in data.schema
    }
    stats = {name: ColumnStats(numeric[name]) for name in streamed_columns}
    unique = {p: Uniqueness(configs[p], scratch, params.max_examples) for p in plan.unique}
    rows = batches = 0
    for frame in chain([first, second], stream):
        if batches == 0 and plan.schema:
            schema_results = runner.validate(frame, suites.to_gx_suite(suite, plan.schema))
        if row_suite is not None:
            for position, outcome in runner.validate(frame, row_suite).items():
                totals[position].add(outcome, rows)
        for name, column in stats.items():
            column.update(frame[name])
        for tracker in unique.values():
            tracker.update(frame)
        rows += len(frame)
        batches += 1
        log(f"batch {batches}: {rows} rows validated")
    _count_duplicates(data, unique, params.batch_size, log)

    results: list[Any] = []
    for position in range(len(suite.expectations)):
        if position in totals:
            results.append(totals[position].result())
        elif position in unique:
            results.append(unique[position].result())
        elif position in schema_results:
            results.append(schema_results[position])
        else:
            results.append(_streamed_result(configs[position], stats, rows))
    return results, rows, batches


def _count_duplicates(
    data: storage.InputData, unique: dict[int, Uniqueness], batch_size: int, log: Log
) -> None:
    candidates = {position: tracker.repeated_hashes() for position, tracker in unique.items()}
    pending = {position: hashes for position, hashes in candidates.items() if len(hashes)}
    if not pending:
        return
    columns = sorted({name for position in pending for name in unique[position].columns})
    log(f"repeated values found; reading the input again to count duplicates in {', '.join(columns)}")
    for frame in frames(data, batch_size, columns):
        for position, hashes in pending.items():
            unique[position].count_values(frame, hashes)


def _streamed_result(config: Any, stats: dict[str, ColumnStats], rows: int) -> Any:
    metric = STREAMED[config.type]
    column = stats.get(config.kwargs.get("column", ""))
    if column is not None and column.error:
        return _evr(config, False, {"observed_value": None}, _exception(column.error))
    if column is not None and not column.numeric and metric in NUMERIC_METRICS:
        why = f"column {config.kwargs['column']!r} is not numeric: {config.type} needs numbers"
        return _evr(config, False, {"observed_value": None}, _exception(why))
    value = rows if metric == "table.row_count" else column.metric(metric)
    try:
        outcome = config.to_domain_obj()._validate(metrics={metric: value})
    except Exception as err:  # the expectation's own comparison failed (e.g. types that do not compare)
        return _evr(config, False, {"observed_value": _plain(value)}, _exception(one_line(err)))
    return _evr(config, bool(outcome["success"]), dict(outcome.get("result") or {}))


def _exception(message: str) -> dict[str, Any]:
    return {"raised_exception": True, "exception_traceback": None, "exception_message": message}


def _suite_result(
    suite: suites.SuiteDef,
    results: list[Any],
    runner: GxRunner,
    data: storage.InputData,
    spec: JobSpec,
    rows: int,
    batches: int,
) -> Any:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.util import convert_to_json_serializable

    for outcome in results:
        # numpy scalars break the HTML renderer; the JSON form is what the report shows anyway
        outcome.result = json.loads(json.dumps(convert_to_json_serializable(outcome.result or {})))
        outcome.expectation_config.meta.pop("_position", None)
        outcome.expectation_config.kwargs.pop("batch_id", None)
    passed = sum(1 for outcome in results if outcome.success)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results),
        },
        meta={
            "great_expectations_version": runner.version,
            "run_id": {"run_name": spec.mlflow.run_id or "validate", "run_time": None},
            "batch_spec": {"input_uris": list(spec.inputs)},
            "batch_markers": {"input_digest": data.digest, "rows": rows, "batches": batches},
            "active_batch_definition": {
                "datasource_name": "airflow_ai_validate",
                "data_connector_name": "fluent",
                "data_asset_name": ",".join(spec.inputs),
                "batch_identifiers": {"input_digest": data.digest},
            },
        },
    )


# --- summaries -------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: numpy scalars unwrapped, NaN as ``None``, dates as ISO strings."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        with contextlib.suppress(ValueError, TypeError):
            value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def summarize(expectation: suites.ExpectationDef, outcome: Any, max_examples: int) -> dict[str, Any]:
    """One expectation's outcome in a few fields."""
    values = outcome.result or {}
    info = outcome.exception_info or {}
    observed = _plain(values.get("observed_value"))
    return {
        "expectation": expectation.type,
        "column": ", ".join(expectation.columns) or None,
        "success": bool(outcome.success),
        "element_count": values.get("element_count"),
        "unexpected_count": values.get("unexpected_count"),
        "unexpected_examples": [_plain(v) for v in (values.get("partial_unexpected_list") or [])][
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


# --- reports ---------------------------------------------------------------------------------------------


def default_report_uri(first_input: str, data: storage.InputData, suite: suites.SuiteDef) -> str:
    """``<folder of the first input>/_validation/<suite name>/``."""
    location = storage.parse_uri(first_input)
    last = location.path.rsplit("/", 1)[-1]
    is_file = any(meta.file.location.path == location.path for meta in data.metas)
    folder = location.path.rsplit("/", 1)[0] if is_file or any(c in last for c in "*?[") else location.path
    return storage.Location(location.scheme, folder).child(REPORT_FOLDER).child(suite.path_name).uri


def check_writable(folder: storage.Location) -> None:
    """Fail before validating when the report folder cannot be written."""
    if folder.scheme == "s3":
        storage.check_bucket(folder, "report")
        return
    existing = folder.path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise JobInputError(
            f"report location is not writable: {folder.uri} ({existing} is not a writable folder)"
        )


def publish(folder: storage.Location, name: str, payload: bytes, content_type: str) -> str:
    """Write one report file atomically (temporary file + rename locally, one PUT on S3)."""
    target = folder.child(name)
    if folder.scheme == "s3":
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = target.path.partition("/")
        try:
            storage.s3_client().put_object(Bucket=bucket, Key=key, Body=payload, ContentType=content_type)
        except (BotoCoreError, ClientError) as err:
            raise JobServiceError(f"upload of report {target.uri} failed: {one_line(err)}") from None
        return target.uri
    try:
        scratch.write_atomic(target.path, payload)
    except OSError as err:
        full = scratch.storage_full(
            err, f"report {target.uri}", "free space there or choose another report location"
        )
        raise full or JobInputError(
            f"report location is not writable: {folder.uri} ({err.strerror or err})"
        ) from None
    return target.uri


def render_html(suite_result: Any) -> str:
    """Great Expectations' data docs page for one suite validation result."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(suite_result))


def store_reports(spec: JobSpec, folder: storage.Location, suite_result: Any, log: Log) -> str:
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
        _log_to_mlflow(spec, files)
        log(f"validation reports logged to MLflow run {spec.mlflow.run_id}")
    return folder.uri


def _log_to_mlflow(spec: JobSpec, files: list[tuple[str, str, str]]) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=spec.mlflow.tracking_uri, registry_uri=spec.mlflow.registry_uri)
    what = f"cannot store the validation report in MLflow run {spec.mlflow.run_id}"
    try:
        for name, text, _ in files:
            client.log_text(spec.mlflow.run_id, text, name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise JobInputError(
                f"MLflow run {spec.mlflow.run_id} does not exist in {spec.mlflow.tracking_uri}"
            ) from None
        raise mlflow_unavailable(what, spec.mlflow.tracking_uri, err) from None
    except Exception as err:  # transport and artifact store errors
        raise mlflow_unavailable(what, spec.mlflow.tracking_uri, err) from None
