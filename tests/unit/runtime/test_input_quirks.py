"""Input quirks in batch inference: duplicate and look-alike column names, schemas that differ between
files, broken CSV rows, missing feature values, model outputs of unexpected shape and duplicate ids.

Each bad input fails with one line that names the column, file or model and what to do, and leaves
no output file; the runtime's real inference path runs against the session's SQLite registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import infer
from airflow_ai_provider.runtime.contract.columns import code_points
from tests.unit.runtime.conftest import FEATURES, customers, read_output, write_csv, write_parquet
from tests.unit.runtime.conftest import refused as refused_by_job


def refused(registry: Any, tmp_path: Path, inputs: Any, model: str = "churn", **params: Any) -> str:
    spec = registry.spec(model, inputs, tmp_path / "out", params=params)
    message = refused_by_job(infer, spec)
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "a failed job leaves no output, hidden files included"
    return message


# --- column names --------------------------------------------------------------------------------


def test_duplicate_column_names_in_parquet_are_named_with_the_file(registry, tmp_path):
    frame = customers(10)
    arrays = [pa.array(frame[name]) for name in ["customer_id", "age", "income", "visits"]]
    table = pa.Table.from_arrays(
        [*arrays, arrays[1]], names=["customer_id", "age", "income", "visits", "age"]
    )
    pq.write_table(table, tmp_path / "dup.parquet")
    assert refused(registry, tmp_path, str(tmp_path / "dup.parquet")) == (
        f"input file://{tmp_path}/dup.parquet has duplicate column name(s) 'age' (2 times): give each "
        "column a unique name"
    )


def test_duplicate_csv_header_is_named_with_the_file(registry, tmp_path):
    (tmp_path / "dup.csv").write_text("customer_id,age,income,visits,income\n1,30,50.0,3,51.0\n")
    assert refused(registry, tmp_path, str(tmp_path / "dup.csv")).startswith(
        f"input file://{tmp_path}/dup.csv has duplicate column name(s) 'income' (2 times)"
    )


@pytest.mark.parametrize(
    "look_alike",
    ["\u0430ge", " age", "age ", "a\u200bge", "\uff41\uff47\uff45", "AGE", "Age"],
    ids=["cyrillic-a", "leading-space", "trailing-space", "zero-width", "fullwidth-nfkc", "upper", "title"],
)
def test_missing_column_with_a_look_alike_shows_both_code_points(registry, tmp_path, look_alike):
    source = write_parquet(tmp_path / "in.parquet", customers(10).rename(columns={"age": look_alike}))
    message = refused(registry, tmp_path, str(source))
    assert (
        f"missing column(s) 'age' ({code_points('age')} looks like input column {code_points(look_alike)}"
        in message
    )
    assert "'age' (U+0061 U+0067 U+0065)" in message
    assert "rename the column in the input or fix the name you pass" in message


def test_missing_id_column_with_a_look_alike_shows_both_code_points(registry, tmp_path):
    cyrillic = "\u0441ustomer_id"  # Cyrillic es, prints as Latin c
    source = write_parquet(tmp_path / "in.parquet", customers(10).rename(columns={"customer_id": cyrillic}))
    message = refused(registry, tmp_path, str(source))
    assert message.startswith(f"id column(s) 'customer_id' of id_columns not in input file://{source} (")
    assert "'customer_id' (U+0063 U+0075" in message and f"'{cyrillic}' (U+0441 U+0075" in message


def test_missing_column_without_a_look_alike_shows_no_code_points(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10).drop(columns=["age"]))
    assert "U+" not in refused(registry, tmp_path, str(source))


def test_id_columns_as_one_string_is_one_column(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(20))
    spec = registry.spec("churn", str(source), tmp_path / "out", params={"id_columns": "customer_id"})
    infer.run(spec, log=lambda _: None)
    assert list(read_output(tmp_path / "out").columns[:2]) == ["customer_id", "prediction"]


# --- files that disagree, broken CSV ---------------------------------------------------------------


def test_id_column_of_another_type_in_a_second_file_is_named_with_both_files(registry, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", customers(10))
    write_parquet(tmp_path / "in" / "b.parquet", customers(10, start_id=10).astype({"customer_id": str}))
    message = refused(registry, tmp_path, str(tmp_path / "in"))
    assert message.startswith(f"column 'customer_id' is int64 in file://{tmp_path}/in/a.parquet but ")
    assert message.endswith(
        f"string in file://{tmp_path}/in/b.parquet: write every input file with the same column types"
    )


def test_integer_feature_in_one_file_and_float_in_another_is_read_as_the_signature_type(registry, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", customers(10))
    write_parquet(tmp_path / "in" / "b.parquet", customers(10, start_id=10).astype({"age": "int64"}))
    result = infer.run(registry.spec("churn", str(tmp_path / "in"), tmp_path / "out"), log=lambda _: None)
    assert result.rows_out == 20


def test_ragged_csv_row_is_named_with_the_file(registry, tmp_path):
    (tmp_path / "ragged.csv").write_text("customer_id,age,income,visits\n1,30.0,50.0,3\n2,31.0,4\n")
    message = refused(registry, tmp_path, str(tmp_path / "ragged.csv"))
    assert message.startswith(f"input file file://{tmp_path}/ragged.csv is not valid CSV (CSV parse error: ")
    assert message.endswith("every row needs as many fields as the header")


def test_csv_value_that_does_not_parse_as_the_column_type_names_the_column(registry, tmp_path):
    frame = customers(60_000)  # more than one CSV block, so the bad value is past the type inference
    source = write_csv(tmp_path / "in.csv", frame)
    text = source.read_text().rstrip("\n").rsplit("\n", 1)
    source.write_text(f"{text[0]}\n60000,not-a-number,50.0,3\n")
    message = refused(registry, tmp_path, str(source))
    assert message.startswith(f"input file file://{source}: column 'age' has a value that is not double (")
    assert "invalid value 'not-a-number'" in message


# --- what the model makes of the rows ---------------------------------------------------------------


def test_missing_feature_values_the_model_rejects_are_named(registry, tmp_path):
    frame = customers(10)
    frame.loc[[1, 4, 7], "age"] = np.nan
    message = refused(registry, tmp_path, str(write_parquet(tmp_path / "in.parquet", frame)))
    assert message.startswith("model 'churn' version 1 failed to predict: ValueError: ")
    assert "feature column(s) with missing values: 'age' (3 of 10 rows)" in message


class ThreeDimensional:
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return np.zeros((len(model_input), 2, 2))


class OneRowShort:
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return np.zeros(len(model_input) - 1)


class RaggedColumns:
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return {"score": list(range(len(model_input))), "rank": [1]}


class Nothing:
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return None


class Crashes:
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        raise KeyError("segment")


ODD_MODELS = {
    "three-d": (
        ThreeDimensional,
        "model returned a numpy.ndarray of shape (10, 2, 2), which cannot be stored",
    ),
    "one-short": (OneRowShort, "model returned 9 predictions (a numpy.ndarray of shape (9,)) for 10 rows"),
    "ragged": (RaggedColumns, "model returned a dict, which cannot be stored as prediction columns"),
    "nothing": (Nothing, "model returned a NoneType, which cannot be stored as prediction columns"),
    "crashes": (Crashes, "model 'odd-crashes' version 1 failed to predict: KeyError: 'segment': check that"),
}


@pytest.fixture(scope="module")
def odd_models(registry: Any) -> list[str]:
    """Pyfunc models whose ``predict`` returns what no output can hold, registered as ``odd-<case>``."""
    import mlflow
    from mlflow.models import infer_signature

    from tests._support.churn_sample import mlflow_uris

    signature = infer_signature(customers(5)[FEATURES])
    with mlflow_uris(registry.tracking_uri), mlflow.start_run(experiment_id=_experiment(registry)):
        for case, (kind, _) in ODD_MODELS.items():
            python_model = type(kind.__name__, (kind, mlflow.pyfunc.PythonModel), {})()
            mlflow.pyfunc.log_model(
                name=f"odd-{case}", python_model=python_model, signature=signature,
                pip_requirements=["pandas"], registered_model_name=f"odd-{case}",
            )  # fmt: skip
    return list(ODD_MODELS)


def _experiment(registry: Any) -> str:
    from mlflow import MlflowClient

    return (
        MlflowClient(tracking_uri=registry.tracking_uri).get_experiment_by_name("runtime-tests").experiment_id
    )


@pytest.mark.parametrize("case", list(ODD_MODELS))
def test_model_output_of_unexpected_shape_is_a_one_line_input_error(registry, odd_models, tmp_path, case):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    message = refused(registry, tmp_path, str(source), model=f"odd-{case}")
    assert message.startswith(ODD_MODELS[case][1])


# --- duplicate ids --------------------------------------------------------------------------------


def test_duplicate_ids_across_files_fail_when_checked(registry, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", customers(100))
    write_parquet(tmp_path / "in" / "b.parquet", customers(100, seed=1, start_id=60))
    message = refused(registry, tmp_path, str(tmp_path / "in"), check_unique_ids=True, batch_size=32)
    assert message == (
        "id_columns customer_id are not unique in shard 0/1: 40 id value(s) appear more than once (40 "
        "duplicate rows), e.g. {'customer_id': 60} 2 times: deduplicate the input, or drop check_unique_ids "
        "to score duplicates as they are"
    )


def test_duplicate_id_within_one_file_across_batches_fails_when_checked(registry, tmp_path):
    frame = customers(500)
    frame.loc[[3, 250, 499], "customer_id"] = 7
    source = write_parquet(tmp_path / "in.parquet", frame, row_group_size=100)
    message = refused(registry, tmp_path, str(source), check_unique_ids=True, batch_size=50)
    assert (
        "1 id value(s) appear more than once (3 duplicate rows), e.g. {'customer_id': 7} 4 times" in message
    )


def test_composite_ids_are_unique_together(registry, tmp_path):
    frame = customers(200).assign(customer_id=lambda f: f.index % 100)  # each id twice, with other visits
    frame["visits"] = np.arange(200)
    source = write_parquet(tmp_path / "in.parquet", frame)
    params = {"id_columns": ["customer_id", "visits"], "check_unique_ids": True, "extra_columns": "ignore"}
    result = infer.run(
        registry.spec("churn", str(source), tmp_path / "out", params=params), log=lambda _: None
    )
    assert result.rows_out == 200


def test_without_the_check_duplicate_ids_are_scored_and_written_as_they_are(registry, tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", customers(100))
    write_parquet(tmp_path / "in" / "b.parquet", customers(100, seed=1, start_id=60))
    result = infer.run(registry.spec("churn", str(tmp_path / "in"), tmp_path / "out"), log=lambda _: None)
    output = read_output(tmp_path / "out")
    assert result.rows_in == result.rows_out == len(output) == 200
    assert output["customer_id"].duplicated().sum() == 40


def test_binary_file_read_as_csv_is_named_without_its_bytes(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(20))
    message = refused(registry, tmp_path, str(source), input_format="csv")
    assert message.startswith(f"input file file://{source} is not valid CSV (CSV parse error: ")
    assert message.isprintable()


def test_unique_check_on_ids_that_are_not_scalars_is_named(registry, tmp_path):
    frame = customers(10)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ids = pa.array([{"region": "eu", "n": i % 2} for i in range(10)])
    pq.write_table(table.set_column(0, "customer_id", ids), tmp_path / "in.parquet")
    message = refused(registry, tmp_path, str(tmp_path / "in.parquet"), check_unique_ids=True)
    assert message.startswith(
        "cannot check that column(s) 'customer_id' are unique: their values are not scalars"
    )


@pytest.mark.parametrize("name", ["customers.json", "customers.csv.gz", "customers"])
def test_file_of_an_unsupported_format_is_named_with_what_to_give(registry, tmp_path, name):
    (tmp_path / name).write_text('{"customer_id": 1}')
    message = refused(registry, tmp_path, str(tmp_path / name))
    assert message.startswith(f"cannot tell the format of input file://{tmp_path}/{name} (")
    assert "give Parquet (.parquet, .pq) or CSV (.csv) files, or set input_format" in message


def test_many_look_alike_columns_stay_one_readable_line():
    from airflow_ai_provider.runtime.contract.columns import look_alikes

    names = ["a1", "b2", "c3", "d4", "e5"]
    hint = look_alikes(names, [name.upper() for name in names])
    assert hint.count("looks like input column") == 3
    assert "; and 2 more: rename the column in the input or fix the name you pass" in hint
    assert "'a1' (U+0061 U+0031) looks like input column 'A1' (U+0041 U+0031)" in hint
