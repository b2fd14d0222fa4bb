"""Input columns checked against a model signature: safe widening, one line naming every problem."""

from __future__ import annotations

import pyarrow as pa
import pytest
from mlflow.types import ColSpec, Schema

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.models.features import Features, check_columns, type_name

SIGNATURE = Schema([ColSpec("double", "age"), ColSpec("long", "visits"), ColSpec("string", "region")])


def test_safe_widening_is_accepted_and_read_as_the_signatures_type():
    schema = pa.schema(
        [("id", pa.int64()), ("age", pa.int32()), ("visits", pa.int16()), ("region", pa.string())]
    )
    features = check_columns(schema, SIGNATURE, ["id"], "error", "in.parquet")
    assert features == Features(["age", "visits", "region"], {"age": pa.float64(), "visits": pa.int64()})


def test_an_all_null_column_is_accepted_for_any_type():
    schema = pa.schema([("age", pa.null()), ("visits", pa.int64()), ("region", pa.string())])
    assert check_columns(schema, SIGNATURE, [], "error", "in.parquet").names == ["age", "visits", "region"]


def test_every_problem_is_named_in_one_line():
    schema = pa.schema([("age", pa.string()), ("region", pa.string()), ("note", pa.string())])
    with pytest.raises(JobInputError) as caught:
        check_columns(schema, SIGNATURE, [], "error", "in.parquet")
    assert str(caught.value) == (
        "input in.parquet does not match the model signature: missing column(s) 'visits'; extra column(s) "
        "'note' not used by the model (list them in id_columns to keep them, or set extra_columns='ignore'); "
        "column 'age' is string, model expects double"
    )


def test_extra_columns_ignore_drops_them_from_the_features():
    schema = pa.schema(
        [("age", pa.float64()), ("visits", pa.int64()), ("region", pa.string()), ("note", pa.string())]
    )
    assert check_columns(schema, SIGNATURE, [], "ignore", "in.parquet").names == ["age", "visits", "region"]


def test_a_missing_id_column_is_named_with_the_option():
    schema = pa.schema([("age", pa.float64())])
    with pytest.raises(
        JobInputError, match=r"^id column\(s\) 'customer_id' of id_columns not in input in.parquet"
    ):
        check_columns(schema, SIGNATURE, ["customer_id"], "error", "in.parquet")


def test_without_a_column_signature_every_non_id_column_is_a_feature():
    schema = pa.schema([("id", pa.int64()), ("a", pa.float64()), ("b", pa.string())])
    assert check_columns(schema, None, ["id"], "error", "in.parquet") == Features(["a", "b"], {})


def test_type_names_are_mlflows_where_it_has_one():
    assert [type_name(kind) for kind in (pa.float64(), pa.int32(), pa.large_string(), pa.date32())] == [
        "double",
        "integer",
        "string",
        "date32[day]",
    ]


def test_text_columns_are_arrow_strings_and_binary_columns_stay_binary():
    signature = Schema([ColSpec("string", "text"), ColSpec("binary", "image")])
    good = pa.schema([("text", pa.large_string()), ("image", pa.binary())])
    assert check_columns(good, signature, [], "error", "in.parquet") == Features(["text", "image"], {})
    swapped = pa.schema([("text", pa.binary()), ("image", pa.string())])
    with pytest.raises(JobInputError) as caught:
        check_columns(swapped, signature, [], "error", "in.parquet")
    assert str(caught.value).endswith(
        "column 'text' is binary, model expects string; column 'image' is string, model expects binary"
    )


def test_array_columns_accept_lists_of_their_element_type_only():
    from mlflow.types.schema import Array, DataType

    signature = Schema([ColSpec(Array(DataType.double), "values")])
    for kind in (pa.list_(pa.float64()), pa.large_list(pa.int32()), pa.list_(pa.float32(), 4)):
        assert check_columns(pa.schema([("values", kind)]), signature, [], "error", "f").names == ["values"]
    for kind, problem in [
        (pa.list_(pa.string()), "column 'values' holds string values, model expects an array of double"),
        (pa.float64(), "column 'values' is double, model expects an array of double"),
    ]:
        with pytest.raises(JobInputError) as caught:
            check_columns(pa.schema([("values", kind)]), signature, [], "error", "f")
        assert str(caught.value).endswith(problem)
