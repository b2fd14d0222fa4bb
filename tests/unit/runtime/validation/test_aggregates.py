"""Exact combination over batches: row counts summed, uniqueness across files and streamed
aggregates equal Great Expectations judging all rows at once."""

from __future__ import annotations

import json
import math

from airflow_ai_provider.runtime.validation import job as validate
from tests.unit.runtime.validation.conftest import CHURN_SUITE, ROWS, by_label, corrupted, spec, split_write


def test_multi_batch_results_equal_a_single_batch_run_of_great_expectations(mlflow_store, tmp_path):
    """Duplicates 5,900 rows apart land in different batches and files; every count, success and
    aggregate matches Great Expectations judging all rows at once."""
    data = split_write(tmp_path / "customers", corrupted())
    suite = json.loads(CHURN_SUITE.read_text())["expectations"] + [
        {
            "type": "expect_column_stdev_to_be_between",
            "kwargs": {"column": "monthly_charges", "max_value": 1},
        },
        {"type": "expect_column_min_to_be_between", "kwargs": {"column": "age", "min_value": 18}},
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "tenure_months", "max_value": 72}},
        {"type": "expect_column_sum_to_be_between", "kwargs": {"column": "support_calls", "min_value": 0}},
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": ROWS}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "age", "max_value": 70, "mostly": 0.9},
        },
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["customer_id", "age"]}},
    ]

    whole = validate.run(spec(data, mlflow_store, expectations=suite, batch_size=ROWS), log=print)
    batched = validate.run(spec(data, mlflow_store, expectations=suite, batch_size=700), log=print)

    assert (whole.details["batches"], batched.details["batches"]) == (1, 9)
    assert len(whole.details["results"]) == len(batched.details["results"]) == len(suite)
    for one, many in zip(whole.details["results"], batched.details["results"], strict=True):
        assert (one["expectation"], one["column"], one["success"]) == (
            many["expectation"],
            many["column"],
            many["success"],
        )
        assert (one["unexpected_count"], one["element_count"]) == (
            many["unexpected_count"],
            many["element_count"],
        )
        assert sorted(map(str, one["unexpected_examples"])) == sorted(map(str, many["unexpected_examples"]))
        if isinstance(one["observed_value"], float):
            assert math.isclose(one["observed_value"], many["observed_value"], rel_tol=1e-9)
        else:
            assert one["observed_value"] == many["observed_value"]
    unique = by_label(batched)["expect_column_values_to_be_unique(customer_id)"]
    assert (unique["success"], unique["unexpected_count"]) == (False, 2)
    assert by_label(batched)["expect_column_stdev_to_be_between(monthly_charges)"]["success"] is False
