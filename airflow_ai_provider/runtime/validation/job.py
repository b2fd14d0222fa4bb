"""The ``validate`` job: check Parquet or CSV data against a Great Expectations 1.x suite.

The input is read in batches (small record batches are coalesced, so a batch can span files), only
the columns the suite reads, converted to pandas and validated with an ephemeral Great Expectations
context, so memory follows the batch size, not the input size. A batch holds ``params.batch_size``
rows when given, else as many as fit in ``params.memory_budget_mb`` by the input's metadata
(:mod:`.sizing`): an input that fits is one batch. How each expectation is judged:

- **Input of one batch**: the whole suite is validated by Great Expectations in one call; every
  expectation type works (schema expectations see every column of the input).
- **Input of several batches** (see :mod:`.plan`):

  - *row expectations* (column map, column pair map and multicolumn map expectations, e.g.
    ``expect_column_values_to_be_between``, ``..._to_not_be_null``, ``..._to_match_regex``): validated
    per batch and combined exactly: element, missing and unexpected counts are summed, success is
    recomputed from the totals and ``mostly``, and the first few unexpected values (with their row
    numbers in the whole input) are kept (:mod:`.aggregates`);
  - *uniqueness across rows* (``expect_column_values_to_be_unique``,
    ``expect_compound_columns_to_be_unique``, ``expect_multicolumn_values_to_be_unique``): exact over
    the whole input. A 64-bit hash of each row's value is spilled to bucket files on disk
    (``params.scratch_dir``), each bucket is sorted on its own to find repeated hashes, and only when
    some exist the input is read a second time to count the actual duplicated values (so a hash
    collision cannot fail the check, and the examples are real values). Memory: one bucket, 1/64 of
    8 bytes per row, plus the duplicated values (:mod:`.uniqueness`);
  - *streamed aggregates*: table row count (``expect_table_row_count_to_be_between`` / ``_to_equal``)
    and column min, max, sum, mean, standard deviation (sample, as pandas) and non-null proportion
    (``expect_column_{min,max,sum,mean,stdev}_to_be_between``,
    ``expect_column_proportion_of_non_null_values_to_be_between``): computed exactly with running
    totals (standard deviation by Chan's pairwise update) and judged by the expectation's own rule;
  - *schema expectations* (columns exist, match a set or list, column count): judged on the
    input's columns (an empty frame of its schema);
  - *every other expectation* needs all rows at once (median, quantiles, distinct values, most common
    value, z-scores, increasing/decreasing order, ...): the job refuses it with a one-line error
    before validating, naming the expectations. Raise ``memory_budget_mb`` or ``batch_size`` until
    the input fits one batch to validate such a suite.

Whatever the outcome, the full result (Great Expectations' suite validation result JSON,
``validation_result.json``) and Great Expectations' own data docs page for it
(``validation_report.html``, rendered with ``ValidationResultsPageRenderer``) are stored as artifacts
of the task's MLflow run (``spec.mlflow.run_id``) and in ``params.report_uri`` (default
``<first input folder>/_validation/<suite name>/``; each file is published atomically), and a readable
report is printed (:mod:`.report`). A failed validation returns a result with status ``failed``, not
retryable, whose one-line ``error`` names each failed expectation, its column, counts and example
values.

Parameters (``spec.params``, checked by :class:`~airflow_ai_provider.runtime.contract.params.ValidateParams`):
``suite_uri`` (JSON or YAML file: path, ``file://`` or ``s3://``, see :mod:`.suite_files`) or
``expectations`` (inline suite, see :mod:`airflow_ai_provider.runtime.contract.suite`), ``suite_name``,
``batch_size`` (default: sized by :mod:`.sizing`), ``memory_budget_mb`` (default 1024, or a quarter of the
memory available if less), ``input_format``, ``report_uri``, ``max_examples`` (unexpected values
kept per expectation, default 5), ``scratch_dir`` (default ``$TMPDIR``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime import Log, job_metrics, log_line, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import ValidateParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.contract.suite import SuiteDef, check_columns
from airflow_ai_provider.runtime.storage.publish import check_writable
from airflow_ai_provider.runtime.tracking import probe_tracking_server
from airflow_ai_provider.runtime.validation.aggregates import (
    ColumnStats,
    MapTotals,
    frames,
    is_numeric,
    streamed_result,
)
from airflow_ai_provider.runtime.validation.gx_suite import (
    GxRunner,
    gx_configuration,
    suite_result,
    to_gx_suite,
)
from airflow_ai_provider.runtime.validation.plan import Plan, needed_columns
from airflow_ai_provider.runtime.validation.report import (
    default_report_uri,
    failure_line,
    report_lines,
    store_reports,
    summarize,
)
from airflow_ai_provider.runtime.validation.sizing import BatchPlan, plan_batches
from airflow_ai_provider.runtime.validation.suite_files import load_suite
from airflow_ai_provider.runtime.validation.uniqueness import Uniqueness, count_duplicates

ERROR_TYPE = "DataValidationFailed"


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Validate the spec's input against its suite; store the reports; return the result."""
    started = time.time()
    params = ValidateParams.from_spec(spec.params)
    suite = load_suite(spec.params)
    storage.check_scratch_dir(params.scratch_dir)
    if spec.mlflow.run_id:
        probe_tracking_server(spec.mlflow.tracking_uri)
    data = storage.InputData.open(spec.inputs, params.input_format)
    check_columns(suite, data.columns)
    report = storage.parse_uri(params.report_uri or default_report_uri(spec.inputs[0], data, suite))
    check_writable(report)

    import_started = time.perf_counter()
    runner = GxRunner(params.max_examples)
    plan = Plan.build(suite)
    gx_import_s = time.perf_counter() - import_started
    columns = needed_columns(suite, data.columns)
    batching = plan_batches(data, columns, params.batch_size, params.memory_budget_mb)
    log(
        f"suite {suite.name}: {len(suite.expectations)} expectations on {len(columns)} of "
        f"{len(data.columns)} columns; input {len(data.metas)} {data.metas[0].file.format} file(s), "
        f"{batching.describe()}"
    )
    validate_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ai-validate-", dir=params.scratch_dir) as scratch:
        results, rows, batches = _validate(data, suite, plan, runner, columns, batching, params, scratch, log)
    validate_s = time.perf_counter() - validate_started

    markers = {"input_digest": data.digest, "rows": rows, "batches": batches}
    full_result = suite_result(suite, results, runner.version, spec, markers)
    summaries = [summarize(suite.expectations[pos], r, params.max_examples) for pos, r in enumerate(results)]
    failed = [s for s in summaries if not s["success"]]
    for line in report_lines(suite.name, summaries, rows, batches):
        log(line)
    report_uri = store_reports(spec, report, full_result, log)

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
        "batch_rows": min(batching.rows, rows),
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
        **job_metrics.summary(),
    }
    return result


def _validate(
    data: storage.InputData,
    suite: SuiteDef,
    plan: Plan,
    runner: GxRunner,
    columns: list[str],
    batching: BatchPlan,
    params: ValidateParams,
    scratch: str,
    log: Log,
) -> tuple[list[Any], int, int]:
    """Validate batch by batch; return the results in suite order, the row and batch counts."""
    stream = frames(data, batching.rows, columns)
    first = next(stream, None)
    if first is None:
        first = _empty(data, columns)
    second = next(stream, None)
    schema_results: dict[int, Any] = {}
    if plan.schema and (second is not None or columns != data.columns):
        schema_results = runner.validate(_empty(data), to_gx_suite(suite, plan.schema))
    if second is None:  # one batch: Great Expectations judges every expectation itself
        rest = [p for p in range(len(suite.expectations)) if p not in schema_results]
        by_position = {**runner.validate(first, to_gx_suite(suite, rest)), **schema_results}
        return [by_position[p] for p in range(len(suite.expectations))], len(first), 1
    if plan.whole:
        labels = ", ".join(suite.expectations[p].label for p in plan.whole)
        raise JobInputError(
            f"expectation(s) {labels} need all rows at once and the input has more than "
            f"{_one_batch(batching)}: {_fit_advice(batching)} or drop them (row, uniqueness, row count "
            "and min/max/sum/mean/stdev expectations work on any size)"
        )
    configs = {p: gx_configuration(suite.expectations[p], p) for p in range(len(suite.expectations))}
    row_suite = to_gx_suite(suite, plan.row) if plan.row else None
    totals = {p: MapTotals(configs[p], params.max_examples) for p in plan.row}
    streamed_columns = {configs[p].kwargs["column"] for p in plan.streamed if configs[p].kwargs.get("column")}
    numeric = {f.name: is_numeric(f.type) for f in data.schema}
    stats = {name: ColumnStats(numeric[name]) for name in streamed_columns}
    unique = {p: Uniqueness(configs[p], scratch, params.max_examples) for p in plan.unique}
    rows = batches = 0
    clock = job_metrics.batch_clock()
    # each frame is held only while it is validated: not by this function, nor while the next is read
    held = [first, second]
    first = second = None
    for frame in _taken(held, stream):
        if row_suite is not None:
            for position, outcome in runner.validate(frame, row_suite).items():
                totals[position].add(outcome, rows)
        for name, column in stats.items():
            column.update(frame[name])
        for tracker in unique.values():
            tracker.update(frame)
        rows += len(frame)
        batches += 1
        clock.lap()
        del frame
        log(f"batch {batches}: {rows} rows validated")
    count_duplicates(data, unique, batching.rows, log)

    results: list[Any] = []
    for position in range(len(suite.expectations)):
        if position in totals:
            results.append(totals[position].result())
        elif position in unique:
            results.append(unique[position].result())
        elif position in schema_results:
            results.append(schema_results[position])
        else:
            results.append(streamed_result(configs[position], stats, rows))
    return results, rows, batches


def _taken(held: list[Any], stream: Iterator[Any]) -> Iterator[Any]:
    """The frames of ``held`` (taken out of it one by one), then those of ``stream``."""
    while held:
        yield held.pop(0)
    yield from stream


def _empty(data: storage.InputData, columns: list[str] | None = None) -> Any:
    """An empty pandas frame of the input's schema (of ``columns`` when given)."""
    schema = data.schema
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    return schema.empty_table().to_pandas()


def _one_batch(batching: BatchPlan) -> str:
    if batching.budget_mb is None:
        return f"batch_size={batching.rows} rows"
    return f"the {batching.rows} rows that fit in one batch (memory_budget_mb={batching.budget_mb})"


def _fit_advice(batching: BatchPlan) -> str:
    if batching.budget_mb is None:
        return "raise batch_size above the row count"
    return "raise memory_budget_mb until the input fits one batch, set batch_size above the row count,"
