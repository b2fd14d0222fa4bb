"""Bad data for the train, validate, evaluate and drift jobs: one-line errors naming the column, file or
profile, raised before anything is trained, registered or written.

The jobs run in-process against SQLite MLflow stores; training uses the functions of
:mod:`tests.unit.runtime.training.functions` (``must_not_run`` proves the label check comes first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airflow_ai_provider.runtime import drift, evaluate
from airflow_ai_provider.runtime.contract.columns import code_points
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, PROFILE_TAG, build_profile, profile_uri
from airflow_ai_provider.runtime.training import job as training_job
from airflow_ai_provider.runtime.validation import job as validate
from tests._support.churn_sample import FEATURES, make_customers, train_and_register
from tests.unit.runtime.conftest import refused, write_csv, write_parquet
from tests.unit.runtime.training.conftest import Store
from tests.unit.runtime.training.functions import FUNCTIONS

# --- train ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("bad-train"))


def train_refused(store: Store, inputs: Path, name: str, **params: Any) -> str:
    spec = store.spec(
        str(inputs), store.new_run(), model_name=name, training_function=f"{FUNCTIONS}:must_not_run", **params
    )
    message = refused(training_job, spec)
    assert "must not train" not in message, "the training function ran"
    assert store.versions(name) == []
    return message


def test_missing_labels_are_counted_before_the_training_function_runs(store, tmp_path):
    frame = make_customers(100, seed=1).astype({"churned": "float64"})
    frame.loc[[2, 30, 31], "churned"] = np.nan
    source = write_parquet(tmp_path / "train.parquet", frame)
    assert train_refused(store, source, "nan-labels") == (
        f"label column 'churned' has 3 missing value(s) (null or NaN) of 100 rows in training data {source}: "
        "filter those rows out before training, or fix the ingest"
    )


def test_null_string_labels_are_counted(store, tmp_path):
    frame = make_customers(50, seed=2).astype({"churned": "object"})
    frame["churned"] = frame["churned"].map({0: "stay", 1: "churn"})
    frame.loc[[0], "churned"] = None
    source = write_parquet(tmp_path / "train.parquet", frame)
    assert "has 1 missing value(s) (null or NaN) of 50 rows" in train_refused(store, source, "null-labels")


def test_look_alike_label_column_shows_code_points(store, tmp_path):
    source = write_parquet(
        tmp_path / "train.parquet", make_customers(50).rename(columns={"churned": "churned\u200b"})
    )
    message = train_refused(store, source, "zero-width-label")
    assert (
        f"{code_points('churned')} looks like input column {code_points('churned' + chr(0x200B))}" in message
    )


def test_training_files_with_other_column_types_are_named(store, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", make_customers(50, seed=3))
    write_parquet(tmp_path / "in" / "b.parquet", make_customers(50, seed=4).astype({"tenure_months": str}))
    message = train_refused(store, tmp_path / "in", "mixed-types")
    assert message.startswith(f"column 'tenure_months' is double in file://{tmp_path}/in/a.parquet but ")


def test_training_file_lacking_a_column_is_named(store, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", make_customers(50, seed=3))
    write_parquet(tmp_path / "in" / "b.parquet", make_customers(50, seed=4).drop(columns=["age"]))
    assert train_refused(store, tmp_path / "in", "lacking").startswith(
        f"input file file://{tmp_path}/in/b.parquet lacks column(s) 'age' that file://{tmp_path}/in/a.parquet has"
    )


def test_duplicate_columns_in_training_csv_are_named(store, tmp_path):
    source = write_csv(tmp_path / "train.csv", make_customers(20))
    lines = source.read_text().splitlines()
    source.write_text("\n".join([lines[0].replace("age", "tenure_months"), *lines[1:]]) + "\n")
    assert train_refused(store, source, "dup-columns").startswith(
        f"input file://{source} has duplicate column name(s) 'tenure_months' (2 times)"
    )


# --- validate -------------------------------------------------------------------------------------


def validate_spec(inputs: Path, expectations: list[dict], **params: Any) -> JobSpec:
    raw = {
        "job": "validate",
        "inputs": [str(inputs)],
        "mlflow": {"tracking_uri": "sqlite:////nonexistent.db"},
    }
    return JobSpec.from_dict({**raw, "params": {"expectations": expectations, **params}})


NOT_NULL = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]


def test_expectation_on_a_look_alike_column_shows_code_points(tmp_path):
    source = write_parquet(
        tmp_path / "in" / "c.parquet", make_customers(20).rename(columns={"age": "\u0430ge"})
    )
    message = refused(validate, validate_spec(source.parent, NOT_NULL))
    assert f"{code_points('age')} looks like input column {code_points(chr(0x430) + 'ge')}" in message
    assert not (source.parent / "_validation").exists()


def test_validation_files_with_other_column_types_are_named(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", make_customers(20, seed=1))
    write_parquet(tmp_path / "in" / "b.parquet", make_customers(20, seed=2).astype({"age": str}))
    assert "column 'age' is double in" in refused(validate, validate_spec(tmp_path / "in", NOT_NULL))
    assert not (tmp_path / "in" / "_validation").exists()


def test_validation_of_a_ragged_csv_is_named(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "r.csv").write_text("age,x\n1,2\n3\n")
    assert "is not valid CSV" in refused(validate, validate_spec(tmp_path / "in", NOT_NULL))


def test_validation_scratch_dir_that_does_not_exist_is_named(tmp_path):
    source = write_parquet(tmp_path / "in" / "c.parquet", make_customers(20))
    message = refused(validate, validate_spec(source.parent, NOT_NULL, scratch_dir=str(tmp_path / "nope")))
    assert message.startswith(f"scratch_dir {tmp_path}/nope does not exist")


# --- evaluate and drift -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``churn`` v1 with its reference profile; v2 whose profile tag points at a profile lacking a key;
    v3 whose profile has a categorical ``region`` and an ``age`` whose bin fractions are not numbers."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("bad-gate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    first = train_and_register(uri, "churn", alias=None, n_rows=2000, seed=0, max_iter=5)
    train_and_register(uri, "churn", alias=None, n_rows=500, seed=1, max_iter=2)
    client = MlflowClient(tracking_uri=uri)
    client.log_dict(first["run_id"], build_profile(make_customers(2000), list(FEATURES)), PROFILE_ARTIFACT)
    broken = build_profile(make_customers(500), ["age"])
    del broken["features"]["age"]["bin_edges"]
    run = client.create_run(client.get_experiment_by_name("churn-training").experiment_id).info.run_id
    client.log_dict(run, broken, PROFILE_ARTIFACT)
    client.set_model_version_tag("churn", "2", PROFILE_TAG, profile_uri(run))
    train_and_register(uri, "churn", alias=None, n_rows=300, seed=2, max_iter=1)
    regions = make_customers(300).assign(region=["north", "south", "east"] * 100)
    odd = build_profile(regions, ["region", "age"])
    odd["features"]["age"]["bin_fractions"] = ["a lot"] * len(odd["features"]["age"]["bin_edges"])
    odd_run = client.create_run(client.get_experiment_by_name("churn-training").experiment_id).info.run_id
    client.log_dict(odd_run, odd, PROFILE_ARTIFACT)
    client.set_model_version_tag("churn", "3", PROFILE_TAG, profile_uri(odd_run))
    return {"uri": uri, "broken_run": run, "odd_run": odd_run}


def job_spec(job: str, registry: dict[str, Any], inputs: Path, version: str = "1", **params: Any) -> JobSpec:
    raw = {"job": job, "inputs": [str(inputs)], "mlflow": {"tracking_uri": registry["uri"]}}
    return JobSpec.from_dict({**raw, "model": {"name": "churn", "version": version}, "params": params})


def test_holdout_with_nan_labels_is_counted(registry, tmp_path):
    frame = make_customers(200, seed=5).astype({"churned": "float64"})
    frame.loc[[1, 2], "churned"] = np.nan
    source = write_parquet(tmp_path / "holdout.parquet", frame)
    assert refused(evaluate, job_spec("evaluate", registry, source, label_column="churned")) == (
        f"label column 'churned' of holdout {source} has 2 missing value(s) (null or NaN) of 200 rows: "
        "drop those rows from the holdout"
    )


def test_holdout_with_a_look_alike_label_shows_code_points(registry, tmp_path):
    source = write_parquet(
        tmp_path / "holdout.parquet", make_customers(50).rename(columns={"churned": "Churned"})
    )
    message = refused(evaluate, job_spec("evaluate", registry, source, label_column="churned"))
    assert f"{code_points('churned')} looks like input column {code_points('Churned')}" in message


def test_holdout_files_with_other_column_types_are_named(registry, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", make_customers(50, seed=1))
    write_parquet(tmp_path / "in" / "b.parquet", make_customers(50, seed=2).astype({"age": str}))
    message = refused(evaluate, job_spec("evaluate", registry, tmp_path / "in", label_column="churned"))
    assert message.startswith(f"column 'age' is double in file://{tmp_path}/in/a.parquet but ")


def test_malformed_reference_profile_is_named(registry, tmp_path):
    source = write_parquet(tmp_path / "current.parquet", make_customers(100, with_label=False))
    assert refused(drift, job_spec("drift", registry, source, version="2")) == (
        f"reference profile runs:/{registry['broken_run']}/{PROFILE_ARTIFACT} is malformed: feature 'age' "
        "lacks bin_edges: retrain the model to rebuild it"
    )


def test_current_data_with_a_look_alike_feature_shows_code_points(registry, tmp_path):
    frame = make_customers(100, with_label=False).rename(columns={"age": " age"})
    source = write_parquet(tmp_path / "current.parquet", frame)
    message = refused(drift, job_spec("drift", registry, source))
    assert (
        f"missing column(s) age ({code_points('age')} looks like input column {code_points(' age')}"
        in message
    )


def test_more_drifted_features_wanted_than_profiled_is_named(registry, tmp_path):
    source = write_parquet(tmp_path / "current.parquet", make_customers(100, with_label=False))
    message = refused(drift, job_spec("drift", registry, source, min_drifted_features=50))
    assert message.startswith(f"min_drifted_features 50 is more than the {len(FEATURES)} feature(s) checked")


def test_reference_profile_values_that_do_not_compute_are_named(registry, tmp_path):
    source = write_parquet(tmp_path / "current.parquet", make_customers(100, with_label=False))
    message = refused(drift, job_spec("drift", registry, source, version="3", features=["age"]))
    assert message.startswith(
        f"reference profile runs:/{registry['odd_run']}/{PROFILE_ARTIFACT} is malformed: feature 'age' (ValueError: "
    )


def test_categorical_feature_whose_values_are_not_text_is_named(registry, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"region": pa.array([["north"], ["south"]] * 50, type=pa.list_(pa.string()))})
    pq.write_table(table, tmp_path / "current.parquet")
    message = refused(
        drift, job_spec("drift", registry, tmp_path / "current.parquet", version="3", features=["region"])
    )
    assert message == (
        "column 'region' is list<element: string>: the reference profile has it as categories, which need values "
        "that read as text"
    )


def test_mean_of_a_text_column_over_several_batches_fails_the_expectation_naming_the_column(tmp_path):
    frame = make_customers(30).assign(plan=["basic", "plus", "pro"] * 10)
    source = write_parquet(tmp_path / "in" / "c.parquet", frame)
    mean = [
        {
            "type": "expect_column_mean_to_be_between",
            "kwargs": {"column": "plan", "min_value": 0, "max_value": 1},
        }
    ]
    result = validate.run(validate_spec(source.parent, mean, batch_size=10), log=lambda _: None)
    assert result.status == "failed" and not result.retryable
    assert "column 'plan' is not numeric: expect_column_mean_to_be_between needs numbers" in result.error


def test_label_of_lists_is_named(registry, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = make_customers(50)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    labels = pa.array([[int(value)] for value in frame["churned"]])
    pq.write_table(
        table.set_column(table.schema.get_field_index("churned"), "churned", labels), tmp_path / "h.parquet"
    )
    message = refused(
        evaluate, job_spec("evaluate", registry, tmp_path / "h.parquet", label_column="churned")
    )
    assert (
        message
        == "label column 'churned' is list<element: int64>: a label must hold numbers, text or booleans"
    )


def test_uniqueness_of_a_column_of_structs_over_several_batches_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"k": [{"x": i % 3} for i in range(30)]}), tmp_path / "in" / "s.parquet")
    unique = [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "k"}}]
    message = refused(validate, validate_spec(tmp_path / "in", unique, batch_size=10))
    assert message.startswith("cannot check that column(s) 'k' are unique: their values are not scalars")
