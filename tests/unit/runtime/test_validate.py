"""The validate job run in-process against a SQLite MLflow store: per-expectation results, exact
combination over batches, one-line errors and reports stored in MLflow and next to the data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_ai_provider.runtime import storage, validate
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec
from dag_templates.include.churn_sample import make_customers
from tests.unit.runtime.conftest import write_csv, write_parquet

REPO_ROOT = Path(__file__).resolve().parents[3]
CHURN_SUITE = REPO_ROOT / "dag_templates" / "include" / "churn_expectations.json"
ROWS = 6_000


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment = MlflowClient(tracking_uri=uri).create_experiment(
        "validate-tests", artifact_location=(root / "artifacts").as_uri()
    )
    return {"tracking_uri": uri, "experiment_id": experiment}


@pytest.fixture
def run_id(mlflow_store) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store["tracking_uri"])
    return client.create_run(mlflow_store["experiment_id"]).info.run_id


def spec(inputs: Any, mlflow_store: dict[str, str], run_id: str | None = None, **params: Any) -> JobSpec:
    if "expectations" not in params:
        params.setdefault("suite_uri", str(CHURN_SUITE))
    return JobSpec.from_dict(
        {
            "job": "validate",
            "inputs": inputs if isinstance(inputs, list) else [str(inputs)],
            "mlflow": {"tracking_uri": mlflow_store["tracking_uri"], "run_id": run_id},
            "params": params,
        }
    )


def split_write(folder: Path, frame: pd.DataFrame) -> Path:
    """Two Parquet files: the first and second half of ``frame``."""
    half = len(frame) // 2
    write_parquet(folder / "part-0.parquet", frame.iloc[:half])
    write_parquet(folder / "part-1.parquet", frame.iloc[half:])
    return folder


def corrupted() -> pd.DataFrame:
    """Churn customers with two out-of-range charges, three null ages and a customer id repeated in
    the second half of the rows (another file, another batch)."""
    frame = make_customers(ROWS, seed=3, with_label=False)
    frame.loc[5, "monthly_charges"] = -4.2
    frame.loc[ROWS - 10, "monthly_charges"] = 9999.0
    frame.loc[[10, 11, ROWS - 1], "age"] = np.nan
    frame.loc[ROWS - 100, "customer_id"] = frame.loc[7, "customer_id"]
    return frame


def by_label(result) -> dict[str, dict[str, Any]]:
    return {
        f"{r['expectation']}({r['column']})" if r["column"] else r["expectation"]: r
        for r in result.details["results"]
    }


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


def test_reports_are_stored_in_mlflow_and_next_to_the_data_when_validation_fails(
    mlflow_store, run_id, tmp_path
):
    from mlflow import MlflowClient

    data = split_write(tmp_path / "customers", corrupted())

    result = validate.run(spec(data, mlflow_store, run_id, batch_size=2_000), log=print)

    assert result.status == "failed"
    folder = data / "_validation" / "churn_customers"
    assert sorted(path.name for path in folder.iterdir()) == [
        "validation_report.html",
        "validation_result.json",
    ]
    stored = json.loads((folder / "validation_result.json").read_text())
    assert stored["success"] is False and stored["suite_name"] == "churn_customers"
    assert stored["statistics"]["unsuccessful_expectations"] == 3
    assert stored["meta"]["batch_markers"] == {
        "input_digest": result.input_digest,
        "rows": ROWS,
        "batches": 3,
    }
    html = (folder / "validation_report.html").read_text()
    assert "churn_customers" in html and "monthly_charges" in html

    client = MlflowClient(tracking_uri=mlflow_store["tracking_uri"])
    names = sorted(artifact.path for artifact in client.list_artifacts(run_id))
    assert names == ["validation_report.html", "validation_result.json"]
    local = client.download_artifacts(run_id, "validation_result.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == stored


def test_inline_suite_and_csv_input_with_an_explicit_report_folder(mlflow_store, tmp_path):
    write_csv(tmp_path / "in" / "customers.csv", make_customers(300, seed=4, with_label=False))
    inline = {
        "name": "ignored-by-suite-name",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}
        ],
    }

    result = validate.run(
        spec(
            tmp_path / "in",
            mlflow_store,
            expectations=inline,
            suite_name="ids",
            report_uri=str(tmp_path / "r"),
        ),
        log=print,
    )

    assert result.status == "success" and result.details["suite"] == "ids"
    assert (tmp_path / "r" / "validation_result.json").exists()
    assert not (tmp_path / "in" / "_validation").exists()


def test_yaml_suite_file_is_read(mlflow_store, tmp_path):
    write_parquet(tmp_path / "in" / "c.parquet", make_customers(200, seed=5, with_label=False))
    (tmp_path / "suite.yaml").write_text(
        "- type: expect_column_values_to_be_between\n  kwargs: {column: age, min_value: 18, max_value: 90}\n"
    )

    result = validate.run(
        spec(tmp_path / "in", mlflow_store, suite_uri=str(tmp_path / "suite.yaml")), log=print
    )

    assert result.status == "success" and result.details["suite"] == "suite"
    assert result.details["results"][0]["element_count"] == 200


# --- one-line errors, before anything is validated or written ----------------------------------------


def error_of(run_spec: JobSpec) -> str:
    with pytest.raises(JobInputError) as caught:
        validate.run(run_spec, log=print)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def small_data(tmp_path) -> Path:
    return write_parquet(tmp_path / "in" / "c.parquet", make_customers(50, seed=6, with_label=False)).parent


def assert_nothing_written(folder: Path) -> None:
    assert not (folder / "_validation").exists()


def test_missing_suite_file_is_named(mlflow_store, small_data, tmp_path):
    message = error_of(spec(small_data, mlflow_store, suite_uri=str(tmp_path / "nope.json")))
    assert message == f"suite file not found: {tmp_path}/nope.json (check suite_uri)"
    assert_nothing_written(small_data)


def test_invalid_json_suite_is_named_with_the_position(mlflow_store, small_data, tmp_path):
    (tmp_path / "bad.json").write_text('{"expectations": [\n  {"type": }\n]}')
    message = error_of(spec(small_data, mlflow_store, suite_uri=str(tmp_path / "bad.json")))
    assert message.startswith(f"suite file {tmp_path}/bad.json is not valid JSON: Expecting value: line 2")
    assert_nothing_written(small_data)


def test_invalid_yaml_suite_is_named(mlflow_store, small_data, tmp_path):
    (tmp_path / "bad.yml").write_text("- type: [unclosed\n")
    message = error_of(spec(small_data, mlflow_store, suite_uri=str(tmp_path / "bad.yml")))
    assert message.startswith(f"suite file {tmp_path}/bad.yml is not valid YAML: ")


def test_unknown_expectation_type_is_named(mlflow_store, small_data):
    typo = [{"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "age"}}]
    message = error_of(spec(small_data, mlflow_store, expectations=typo))
    assert message.startswith("unknown expectation type 'expect_column_values_to_be_betwen': ")
    assert_nothing_written(small_data)


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


def test_invalid_expectation_arguments_are_named(mlflow_store, small_data):
    bad = [{"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 1}}]
    message = error_of(spec(small_data, mlflow_store, expectations=bad))
    assert message.startswith(
        "expectation #1 expect_column_values_to_be_between has invalid kwargs ['min_value']"
    )
