"""The plan of a multi-batch validation: an expectation that needs all rows at once is refused
in one line on a multi-batch input and judged on a single batch."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.validation import job as validate
from tests._support.churn_sample import make_customers
from tests.unit.runtime.validation.conftest import spec, split_write


def test_aggregate_that_needs_all_rows_is_refused_on_a_multi_batch_input(mlflow_store, tmp_path):
    data = split_write(tmp_path / "customers", make_customers(2_000, seed=1, with_label=False))
    median = [{"type": "expect_column_median_to_be_between", "kwargs": {"column": "age", "min_value": 18}}]

    with pytest.raises(JobInputError) as caught:
        validate.run(spec(data, mlflow_store, expectations=median, batch_size=500), log=print)
    assert str(caught.value).startswith(
        "expectation(s) expect_column_median_to_be_between(age) need all rows at once and the input has "
        "more than batch_size=500 rows"
    )
    single = validate.run(spec(data, mlflow_store, expectations=median, batch_size=2_000), log=print)
    assert single.status == "success"
