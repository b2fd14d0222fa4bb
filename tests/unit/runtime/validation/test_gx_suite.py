"""The Great Expectations adapter: an unknown expectation type or invalid arguments are refused in
one line naming the expectation, before anything is validated or written."""

from __future__ import annotations

from tests.unit.runtime.validation.conftest import assert_nothing_written, error_of, spec


def test_unknown_expectation_type_is_named(mlflow_store, small_data):
    typo = [{"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "age"}}]
    message = error_of(spec(small_data, mlflow_store, expectations=typo))
    assert message.startswith("unknown expectation type 'expect_column_values_to_be_betwen': ")
    assert_nothing_written(small_data)


def test_invalid_expectation_arguments_are_named(mlflow_store, small_data):
    bad = [{"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 1}}]
    message = error_of(spec(small_data, mlflow_store, expectations=bad))
    assert message.startswith(
        "expectation #1 expect_column_values_to_be_between has invalid kwargs ['min_value']"
    )


def test_runner_loads_batches_without_fingerprinting_every_row():
    """Great Expectations would hash every row of each batch it loads (twice per validation) for a
    fingerprint the job never reports; the runner's batches carry no such fingerprint."""
    from airflow_ai_provider.runtime.validation.gx_suite import GxRunner
    from tests._support.churn_sample import make_customers

    runner = GxRunner(max_examples=5)
    batch = runner.definition.get_batch(batch_parameters={"dataframe": make_customers(100, with_label=False)})

    assert "pandas_data_fingerprint" not in batch.batch_markers
    assert batch.batch_markers["ge_load_time"]
