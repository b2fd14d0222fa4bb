"""The validate job run in-process against a SQLite MLflow store: per-expectation results, the
one-line summary of a failed validation, and a suite naming a column the data lacks."""

from __future__ import annotations

import json

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.validation import job as validate
from tests._support.churn_sample import make_customers
from tests.unit.runtime.validation.conftest import (
    CHURN_SUITE,
    ROWS,
    assert_nothing_written,
    by_label,
    corrupted,
    error_of,
    spec,
    split_write,
)


def test_passing_data_succeeds_with_a_result_per_expectation(mlflow_store, run_id, tmp_path, log_lines):
    data = split_write(tmp_path / "customers", make_customers(ROWS, seed=1, with_label=False))

    result = validate.run(spec(data, mlflow_store, run_id, batch_size=1_000), log=log_lines.append)

    assert result.status == "success" and result.error is None
    suite = json.loads(CHURN_SUITE.read_text())
    details = result.details
    assert details["suite"] == "churn_customers" and details["success"] is True
    assert (
        details["evaluated_expectations"] == details["successful_expectations"] == len(suite["expectations"])
    )
    assert details["rows"] == result.rows_in == ROWS and details["batches"] == 6
    assert [r["expectation"] for r in details["results"]] == [e["type"] for e in suite["expectations"]]
    assert all(r["success"] for r in details["results"])
    results = by_label(result)
    assert results["expect_column_values_to_be_unique(customer_id)"]["unexpected_count"] == 0
    assert results["expect_table_row_count_to_be_between"]["observed_value"] == ROWS
    assert result.input_digest == storage.InputData.open([str(data)]).digest
    assert details["report_uri"] == f"file://{data}/_validation/churn_customers"
    assert any(line.startswith(f"validation of {ROWS} rows (6 batches)") for line in log_lines)


def test_corrupted_data_fails_with_a_summary_naming_expectation_column_count_and_examples(
    mlflow_store, run_id, tmp_path
):
    data = split_write(tmp_path / "customers", corrupted())

    result = validate.run(spec(data, mlflow_store, run_id, batch_size=1_000), log=print)

    assert result.status == "failed" and result.retryable is False
    assert result.error_type == "DataValidationFailed"
    assert "\n" not in result.error
    assert result.error.startswith("data validation failed: 3 of 17 expectations (suite churn_customers): ")
    assert (
        f"expect_column_values_to_be_between(monthly_charges) 2 unexpected of {ROWS} (e.g. -4.2, 9999.0)"
        in result.error
    )
    assert f"expect_column_values_to_not_be_null(age) 3 unexpected of {ROWS}" in result.error
    duplicated = make_customers(ROWS, seed=3)["customer_id"][7]
    assert (
        f"expect_column_values_to_be_unique(customer_id) 2 unexpected of {ROWS} (e.g. '{duplicated}'"
        in result.error
    )
    assert result.details["success"] is False and result.details["successful_expectations"] == 14


def test_expectation_on_a_missing_column_names_it_and_the_available_columns(mlflow_store, small_data):
    missing = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "monthly_charge"}}]
    message = error_of(spec(small_data, mlflow_store, expectations=missing))
    assert message == (
        "expectation expect_column_values_to_not_be_null(monthly_charge) of suite expectations names "
        "column(s) 'monthly_charge' not in the data; available columns: customer_id, tenure_months, "
        "monthly_charges, total_charges, support_calls, age, num_products, days_since_last_login, "
        "contract_months"
    )
    assert_nothing_written(small_data)
