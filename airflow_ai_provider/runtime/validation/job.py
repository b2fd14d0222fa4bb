"""The ``validate`` job: check Parquet or CSV data against a Great Expectations 1.x suite.

The input is read in batches of ``params.batch_size`` rows (small record batches are coalesced, so a
batch can span files), converted to pandas and validated with an ephemeral Great Expectations
context, so memory follows the batch size, not the input size. How each expectation is judged:

- **Input of one batch** (at most ``batch_size`` rows): the whole suite is validated by Great
  Expectations in one call; every expectation type works.
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
report is printed (:mod:`.report`). A failed validation returns a result with status ``failed``, not
retryable, whose one-line ``error`` names each failed expectation, its column, counts and example
values.

Parameters (``spec.params``, checked by :class:`~airflow_ai_provider.runtime.contract.params.ValidateParams`):
``suite_uri`` (JSON or YAML file: path, ``file://`` or ``s3://``, see :mod:`.suite_files`) or
``expectations`` (inline suite, see :mod:`airflow_ai_provider.runtime.contract.suite`), ``suite_name``,
``batch_size`` (default 200000), ``input_format``, ``report_uri``, ``max_examples`` (unexpected values
kept per expectation, default 5), ``scratch_dir`` (default ``$TMPDIR``).
"""

from __future__ import annotations

import tempfile
import time
from itertools import chain
from typing import Any

from airflow_ai_provider.runtime import Log, log_line, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import ValidateParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.contract.suite import SuiteDef, check_columns
from airflow_ai_provider.runtime.memory import peak_rss_mb
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
from airflow_ai_provider.runtime.validation.plan import Plan
from airflow_ai_provider.runtime.validation.report import (
    default_report_uri,
    failure_line,
    report_lines,
    store_reports,
    summarize,
)
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
    log(
        f"suite {suite.name}: {len(suite.expectations)} expectations; input {len(data.metas)} "
        f"{data.metas[0].file.format} file(s), batches of {params.batch_size} rows"
    )
    validate_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ai-validate-", dir=params.scratch_dir) as scratch:
        results, rows, batches = _validate(data, suite, plan, runner, params, scratch, log)
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
    suite: SuiteDef,
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
        by_position = runner.validate(first, to_gx_suite(suite))
        return [by_position[p] for p in range(len(suite.expectations))], len(first), 1
    if plan.whole:
        labels = ", ".join(suite.expectations[p].label for p in plan.whole)
        raise JobInputError(
            f"expectation(s) {labels} need all rows at once and the input has more than "
            f"batch_size={params.batch_size} rows: raise batch_size above the row count or "
            "drop them (row, uniqueness, row count and min/max/sum/mean/stdev expectations work on any size)"
        )
    configs = {p: gx_configuration(suite.expectations[p], p) for p in range(len(suite.expectations))}
    row_suite = to_gx_suite(suite, plan.row) if plan.row else None
    totals = {p: MapTotals(configs[p], params.max_examples) for p in plan.row}
    schema_results: dict[int, Any] = {}
    streamed_columns = {configs[p].kwargs["column"] for p in plan.streamed if configs[p].kwargs.get("column")}
    numeric = {f.name: is_numeric(f.type) for f in data.schema}
    stats = {name: ColumnStats(numeric[name]) for name in streamed_columns}
    unique = {p: Uniqueness(configs[p], scratch, params.max_examples) for p in plan.unique}
    rows = batches = 0
    for frame in chain([first, second], stream):
        if batches == 0 and plan.schema:
            schema_results = runner.validate(frame, to_gx_suite(suite, plan.schema))
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
    count_duplicates(data, unique, params.batch_size, log)

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
