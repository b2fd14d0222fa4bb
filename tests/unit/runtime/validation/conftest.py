"""Shared pieces of the ``validate`` job tests: a SQLite MLflow store, specs, sample data and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.validation import job as validate
from tests._support.churn_sample import make_customers
from tests.unit.runtime.conftest import write_parquet

REPO_ROOT = Path(__file__).resolve().parents[4]
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


@pytest.fixture
def small_data(tmp_path) -> Path:
    return write_parquet(tmp_path / "in" / "c.parquet", make_customers(50, seed=6, with_label=False)).parent


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


def error_of(run_spec: JobSpec) -> str:
    with pytest.raises(JobInputError) as caught:
        validate.run(run_spec, log=print)
    message = str(caught.value)
    assert "\n" not in message
    return message


def assert_nothing_written(folder: Path) -> None:
    assert not (folder / "_validation").exists()
