"""Batch sizes from the input's metadata and a memory budget: an input that fits is one batch, a
larger one is cut by the budget, only the columns the suite reads count, and an explicit batch_size
wins."""

from __future__ import annotations

import math

import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.suite import parse_suite
from airflow_ai_provider.runtime.storage import sizing
from airflow_ai_provider.runtime.validation import job as validate
from airflow_ai_provider.runtime.validation.plan import needed_columns
from airflow_ai_provider.runtime.validation.sizing import WHOLE_INPUT, WORKING_SET_FACTOR, plan_batches
from tests._support.churn_sample import FEATURES, make_customers
from tests.unit.runtime.conftest import write_csv, write_parquet
from tests.unit.runtime.validation.conftest import by_label, corrupted, spec, split_write

MIB = 1 << 20


def row_width(data: storage.InputData, columns: list[str]) -> float:
    """The shared estimate, as the job gives it the input (tested in tests/unit/runtime/storage/test_sizing.py)."""
    return sizing.row_width(data.metas, data.schema, columns)


def test_input_that_fits_the_budget_is_one_batch_of_all_rows(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", make_customers(6_000, seed=2, with_label=False), 1_000)
    data = storage.InputData.open([str(path)])

    plan = plan_batches(data, data.columns, None, None)

    assert plan.rows == 6_000 and 1 <= plan.budget_mb <= 1024
    assert plan.row_bytes == pytest.approx(row_width(data, data.columns))


def test_input_larger_than_the_budget_is_cut_by_the_budget(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", make_customers(20_000, seed=2, with_label=False))
    data = storage.InputData.open([str(path)])
    width = row_width(data, data.columns)

    plan = plan_batches(data, data.columns, None, 1)

    fit = int(MIB / WORKING_SET_FACTOR // width)
    assert 1_000 < plan.rows <= fit < 20_000
    assert plan.rows == math.ceil(20_000 / math.ceil(20_000 / fit))  # equal batches, no small last one
    assert plan_batches(data, data.columns, None, 2).rows <= int(2 * MIB / WORKING_SET_FACTOR // width)
    assert plan_batches(data, data.columns, None, 2).rows > plan.rows


def test_default_budget_shrinks_to_a_quarter_of_the_memory_available(tmp_path, monkeypatch):
    """The available memory is replaced (a container limit cannot be set here); the sizing is real."""
    from airflow_ai_provider.runtime import memory

    path = write_parquet(tmp_path / "c.parquet", make_customers(20_000, seed=2, with_label=False))
    data = storage.InputData.open([str(path)])
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * MIB)

    plan = plan_batches(data, data.columns, None, None)

    assert plan.budget_mb == 2
    assert plan.rows == plan_batches(data, data.columns, None, 2).rows < 20_000
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert plan_batches(data, data.columns, None, None).budget_mb == 1024


def test_explicit_batch_size_is_used_as_given(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", make_customers(6_000, seed=2, with_label=False))
    data = storage.InputData.open([str(path)])

    plan = plan_batches(data, data.columns, 500, 1)

    assert (plan.rows, plan.row_bytes, plan.budget_mb) == (500, None, None)


def test_only_the_columns_the_suite_reads_are_sized_and_read(tmp_path):
    frame = make_customers(2_000, seed=4, with_label=False)
    frame["notes"] = ["a long free-text note that the suite never reads " * 4] * len(frame)
    path = write_parquet(tmp_path / "c.parquet", frame)
    data = storage.InputData.open([str(path)])
    suite = parse_suite(
        [
            {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": list(frame.columns)}},
            {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 2_000}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}},
            {
                "type": "expect_column_pair_values_a_to_be_greater_than_b",
                "kwargs": {
                    "column_A": "total_charges",
                    "column_B": "monthly_charges",
                    "or_equal": True,
                    "mostly": 0.5,
                },
            },
        ]
    )

    columns = needed_columns(suite, data.columns)

    assert columns == ["monthly_charges", "total_charges", "age"]
    assert row_width(data, columns) == 24 < row_width(data, data.columns)


def test_every_column_is_read_when_an_expectation_names_none_or_filters_rows():
    names = ["customer_id", "age", "tenure_months"]
    conditional = {"column": "age", "row_condition": "tenure_months>12", "condition_parser": "pandas"}
    for other in (
        {"type": "expect_column_values_to_not_be_null", "kwargs": conditional},
        {"type": "expect_table_row_count_to_equal_other_table", "kwargs": {"other_table_name": "x"}},
    ):
        suite = parse_suite(
            [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}, other]
        )
        assert needed_columns(suite, names) == names


def test_schema_expectations_see_every_column_when_fewer_are_read(mlflow_store, tmp_path, log_lines):
    frame = make_customers(3_000, seed=5, with_label=False)
    data = write_parquet(tmp_path / "in" / "c.parquet", frame).parent
    suite = [
        {
            "type": "expect_table_columns_to_match_ordered_list",
            "kwargs": {"column_list": list(frame.columns)},
        },
        {"type": "expect_table_column_count_to_equal", "kwargs": {"value": 1 + len(FEATURES)}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
    ]

    for batch_size in (None, 1_000):
        params = {"expectations": suite} | ({"batch_size": batch_size} if batch_size else {})
        result = validate.run(spec(data, mlflow_store, **params), log=log_lines.append)
        assert result.status == "success", result.error
        assert result.details["batches"] == (1 if batch_size is None else 3)
    assert any("3 expectations on 1 of 9 columns" in line for line in log_lines)


def test_job_without_batch_size_validates_an_input_that_fits_in_one_batch(mlflow_store, tmp_path, log_lines):
    """The churn suite on 6,000 rows in two files: one batch (sized from the metadata), the same
    results as batches of 700 rows."""
    data = split_write(tmp_path / "customers", corrupted())

    sized = validate.run(spec(data, mlflow_store), log=log_lines.append)
    batched = validate.run(spec(data, mlflow_store, batch_size=700), log=print)

    assert (sized.details["batches"], sized.details["batch_rows"]) == (1, 6_000)
    assert batched.details["batches"] == 9
    for one, many in zip(sized.details["results"], batched.details["results"], strict=True):
        assert (one["success"], one["unexpected_count"], one["element_count"]) == (
            many["success"],
            many["unexpected_count"],
            many["element_count"],
        )
    assert any("batches of 6000 rows (about" in line and "memory budget of" in line for line in log_lines)


def test_job_with_a_small_budget_validates_in_batches_of_the_budget(mlflow_store, tmp_path):
    data = split_write(tmp_path / "customers", corrupted())
    opened = storage.InputData.open([str(data)])
    fit = int(MIB / WORKING_SET_FACTOR // row_width(opened, opened.columns))
    expected_rows = math.ceil(6_000 / math.ceil(6_000 / fit))

    result = validate.run(spec(data, mlflow_store, memory_budget_mb=1), log=print)

    assert result.details["batch_rows"] == expected_rows
    assert result.details["batches"] == math.ceil(6_000 / fit) > 1
    results = by_label(result)
    assert results["expect_column_values_to_be_unique(customer_id)"]["unexpected_count"] == 2
    assert results["expect_column_values_to_be_between(monthly_charges)"]["unexpected_count"] == 2


def test_expectation_needing_all_rows_names_the_budget_when_the_input_does_not_fit(mlflow_store, tmp_path):
    data = split_write(tmp_path / "customers", make_customers(50_000, seed=8, with_label=False))
    median = [{"type": "expect_column_median_to_be_between", "kwargs": {"column": "age", "min_value": 18}}]

    with pytest.raises(JobInputError) as caught:
        validate.run(spec(data, mlflow_store, expectations=median, memory_budget_mb=1), log=print)

    assert "fit in one batch (memory_budget_mb=1): raise memory_budget_mb" in str(caught.value)
    assert not (data / "_validation").exists()


def test_csv_input_that_fits_the_budget_is_one_batch(tmp_path):
    path = write_csv(tmp_path / "c.csv", make_customers(10_000, seed=9, with_label=False))
    data = storage.InputData.open([str(path)])

    assert plan_batches(data, data.columns, None, None).rows == WHOLE_INPUT
    small = plan_batches(data, data.columns, None, 1)  # 1 MiB: the file is larger than a quarter of it
    assert small.rows == int(MIB / WORKING_SET_FACTOR // row_width(data, data.columns)) < 10_000


def test_peak_memory_follows_the_budget_not_the_input(tmp_path):
    """The runtime command line on 600,000 churn rows, each run in its own process: one batch under
    the default budget, batches of a 16 MiB budget with a peak at least 60 MB lower (about 130 MB lower here)."""
    import json
    import os
    import subprocess
    import sys

    from tests.unit.runtime.validation.conftest import CHURN_SUITE, REPO_ROOT

    data = write_parquet(tmp_path / "in" / "c.parquet", make_customers(600_000, seed=10, with_label=False))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}

    def run(**params: int) -> dict:
        spec = {
            "job": "validate",
            "inputs": [str(data)],
            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            "params": {"suite_uri": str(CHURN_SUITE), "report_uri": str(tmp_path / "report"), **params},
        }
        result_path = tmp_path / "result.json"
        command = [
            sys.executable,
            "-m",
            "airflow_ai_provider.runtime",
            "validate",
            "--spec-json",
            json.dumps(spec),
        ]
        done = subprocess.run(
            [*command, "--result-path", str(result_path)],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(result_path.read_text())

    whole, small = run(), run(memory_budget_mb=16)

    assert (whole["details"]["batches"], small["details"]["batches"]) == (
        1,
        math.ceil(600_000 / small["details"]["batch_rows"]),
    )
    assert small["details"]["batches"] >= 5
    assert small["details"]["successful_expectations"] == whole["details"]["successful_expectations"] == 17
    assert small["metrics"]["peak_rss_mb"] < whole["metrics"]["peak_rss_mb"] - 60
