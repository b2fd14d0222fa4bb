"""Bad input, bad model references and unwritable outputs: one-line errors of the right kind."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import infer
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError
from tests.unit.runtime.conftest import closed_port, customers, write_csv, write_parquet


def run_error(registry, tmp_path, inputs, model="churn", **kwargs) -> JobInputError | JobServiceError:
    with pytest.raises((JobInputError, JobServiceError)) as caught:
        infer.run(registry.spec(model, inputs, kwargs.pop("output", tmp_path / "out"), **kwargs), log=print)
    message = str(caught.value)
    assert "\n" not in message
    return caught.value


def test_missing_input_file_is_named(registry, tmp_path):
    err = run_error(registry, tmp_path, f"file://{tmp_path}/nope.parquet")
    assert isinstance(err, JobInputError)
    assert str(err) == f"input not found: file://{tmp_path}/nope.parquet"


def test_glob_matching_nothing_is_named(registry, tmp_path):
    (tmp_path / "in").mkdir()
    err = run_error(registry, tmp_path, str(tmp_path / "in" / "*.parquet"))
    assert str(err) == f"input glob matches no file: {tmp_path}/in/*.parquet"


def test_folder_without_data_files_is_named(registry, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    err = run_error(registry, tmp_path, str(tmp_path / "in"))
    assert str(err) == f"input folder has no *.parquet / *.pq / *.csv files: {tmp_path}/in"


def test_zero_byte_file_is_not_a_parquet_file(registry, tmp_path):
    (tmp_path / "empty.parquet").write_bytes(b"")
    err = run_error(registry, tmp_path, str(tmp_path / "empty.parquet"))
    assert str(err).startswith(
        f"input file is not a Parquet file (no PAR1 footer): file://{tmp_path}/empty.parquet"
    )


def test_corrupt_parquet_file_is_named(registry, tmp_path):
    good = write_parquet(tmp_path / "good.parquet", customers(10))
    data = bytearray(good.read_bytes())
    data[-200:-8] = b"\xff" * 192  # garbage footer, valid magic
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    err = run_error(registry, tmp_path, str(tmp_path / "bad.parquet"))
    assert str(err).startswith(f"input file is not a readable Parquet file: file://{tmp_path}/bad.parquet (")


def test_text_file_named_parquet_is_named(registry, tmp_path):
    (tmp_path / "fake.parquet").write_text("customer_id,age\n1,2\n")
    err = run_error(registry, tmp_path, str(tmp_path / "fake.parquet"))
    assert "not a Parquet file" in str(err) and "fake.parquet" in str(err)


def test_parquet_input_with_zero_rows_is_empty_input(registry, tmp_path):
    empty = pa.Table.from_pandas(customers(0), preserve_index=False)
    pq.write_table(empty, tmp_path / "empty.parquet")
    err = run_error(registry, tmp_path, str(tmp_path / "empty.parquet"))
    assert str(err) == f"input has no rows: {tmp_path}/empty.parquet"


def test_header_only_csv_is_empty_input(registry, tmp_path):
    write_csv(tmp_path / "empty.csv", customers(0))
    err = run_error(registry, tmp_path, str(tmp_path / "empty.csv"))
    assert str(err) == f"input has no rows: {tmp_path}/empty.csv"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_mixed_formats_are_refused(registry, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", customers(10))
    write_csv(tmp_path / "in" / "b.csv", customers(10))
    err = run_error(registry, tmp_path, str(tmp_path / "in"))
    assert str(err).startswith("inputs mix formats csv and parquet")


def test_missing_columns_are_named(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10).drop(columns=["income", "visits"]))
    err = run_error(registry, tmp_path, str(source))
    assert str(err) == (
        f"input file://{source} does not match the model signature: missing column(s) 'income', 'visits'"
    )


def test_extra_columns_are_named(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10).assign(segment="b2c", region="eu"))
    err = run_error(registry, tmp_path, str(source))
    assert str(err).startswith(
        f"input file://{source} does not match the model signature: extra column(s) 'segment', 'region' not used"
    )
    assert "set extra_columns='ignore'" in str(err)


def test_mistyped_column_is_named_with_both_types(registry, tmp_path):
    frame = customers(10)
    frame["age"] = frame["age"].astype(str)
    source = write_parquet(tmp_path / "in.parquet", frame)
    err = run_error(registry, tmp_path, str(source))
    assert str(err).endswith(
        "does not match the model signature: column 'age' is string, model expects double"
    )


def test_narrowing_a_long_column_to_float_is_refused(registry, tmp_path):
    frame = customers(10)
    frame["visits"] = frame["visits"].astype(float)
    source = write_parquet(tmp_path / "in.parquet", frame)
    err = run_error(registry, tmp_path, str(source))
    assert str(err).endswith("column 'visits' is double, model expects long")


def test_renamed_column_reports_missing_and_extra_together(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10).rename(columns={"age": "Age"}))
    err = run_error(registry, tmp_path, str(source))
    assert (
        "missing column(s) 'age' ('age' (U+0061 U+0067 U+0065) looks like input column 'Age' (U+0041"
        in str(err)
    )
    assert "; extra column(s) 'Age'" in str(err)


def test_missing_id_column_is_named(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    err = run_error(registry, tmp_path, str(source), params={"id_columns": ["account"]})
    assert str(err) == f"id column(s) 'account' of id_columns not in input file://{source}"


def test_unknown_model_name_is_named(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    err = run_error(registry, tmp_path, str(source), model="no-such-model")
    assert str(err) == f"registered model 'no-such-model' does not exist in {registry.tracking_uri}"


def test_unknown_model_version_is_named(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    err = run_error(registry, tmp_path, str(source), version="42")
    assert str(err) == f"model 'churn' has no version 42 in {registry.tracking_uri}"


def test_alias_instead_of_version_is_refused(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    err = run_error(registry, tmp_path, str(source), version="champion")
    assert "must be a registry version number" in str(err)


def test_unreachable_mlflow_fails_fast_as_service_error(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    err = run_error(registry, tmp_path, str(source), tracking_uri=uri)
    assert time.monotonic() - started < 5
    assert isinstance(err, JobServiceError) and err.retryable
    assert str(err).startswith(f"MLflow tracking server unreachable at {uri}: ")


def test_output_under_a_file_is_not_writable_and_detected_before_loading_the_model(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    (tmp_path / "blocker").write_text("a file, not a folder")
    # An unknown model would fail later: the output check comes first.
    err = run_error(
        registry, tmp_path, str(source), model="no-such-model", output=tmp_path / "blocker" / "out"
    )
    assert str(err).startswith(f"output location is not writable: file://{tmp_path}/blocker/out (")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"input_format": "json"}, "input_format must be one of parquet, csv, got 'json'"),
        (
            {"id_columns": ["prediction"]},
            "id column(s) 'prediction' clash with prediction column names: rename them in the input or "
            "leave them out of id_columns",
        ),
        ({"bogus": 1}, "unknown infer parameter(s): bogus"),
        ({"batchsize": 1}, "unknown infer parameter(s): batchsize (did you mean batch_size?)"),
    ],
)
def test_invalid_params_are_named(registry, tmp_path, params, message):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    assert str(run_error(registry, tmp_path, str(source), params=params)) == message
