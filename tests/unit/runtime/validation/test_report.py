"""Validation reports: the result JSON and HTML page stored in the task's MLflow run and next to
the data (or in an explicit report folder), whatever the outcome."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_ai_provider.runtime.validation import job as validate
from tests._support.churn_sample import make_customers
from tests.unit.runtime.conftest import write_csv
from tests.unit.runtime.validation.conftest import ROWS, corrupted, spec, split_write


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
