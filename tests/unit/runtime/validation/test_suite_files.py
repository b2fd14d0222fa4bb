"""Suite files: YAML and JSON are read; a missing or malformed file is refused in one line before
anything is validated or written."""

from __future__ import annotations

from airflow_ai_provider.runtime.validation import job as validate
from tests._support.churn_sample import make_customers
from tests.unit.runtime.conftest import write_parquet
from tests.unit.runtime.validation.conftest import assert_nothing_written, error_of, spec


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
