"""A model's output as typed, named columns: scalars, strings, vectors, structs, output_columns and
one-line refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.models.outputs import OutputNaming, prediction_columns


def typed(columns: list[tuple[str, pa.Array]]) -> list[tuple[str, pa.DataType]]:
    return [(name, array.type) for name, array in columns]


def refusal(output: object, rows: int, naming: OutputNaming | None = None) -> str:
    with pytest.raises(JobInputError) as caught:
        prediction_columns(output, rows, naming)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


class FakeTensor:
    """Stands in for a torch tensor on a device (torch is a multi-GB install kept out of the test
    run): ``detach().cpu().numpy()`` is the only path the conversion uses."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape = values.shape

    def detach(self) -> FakeTensor:
        return self

    def cpu(self) -> FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.values


def test_a_vector_becomes_the_prediction_column():
    columns = prediction_columns(np.array([0, 1, 1]), 3)
    assert [(name, array.to_pylist()) for name, array in columns] == [("prediction", [0, 1, 1])]


def test_string_outputs_stay_strings():
    for output in (np.array(["a", "b"], dtype=object), ["a", "b"], pd.Series(["a", "b"])):
        [(name, array)] = prediction_columns(output, 2)
        assert name == "prediction" and array.to_pylist() == ["a", "b"]
        assert pa.types.is_string(array.type) or pa.types.is_large_string(array.type), array.type


def test_a_one_column_table_is_the_prediction_column():
    columns = prediction_columns(pd.DataFrame({"score": [0.5, 0.25]}), 2)
    assert [(name, array.to_pylist()) for name, array in columns] == [("prediction", [0.5, 0.25])]


def test_a_column_vector_is_one_value_a_row():
    assert typed(prediction_columns(np.zeros((2, 1)), 2)) == [("prediction", pa.float64())]


def test_a_table_gives_one_prediction_column_per_output_column():
    columns = prediction_columns(pd.DataFrame({"low": [1.0, 2.0], "high": [3.0, 4.0]}), 2)
    assert [name for name, _ in columns] == ["prediction_low", "prediction_high"]


def test_a_matrix_becomes_one_float32_vector_column_with_its_values():
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3)
    [(name, array)] = prediction_columns(matrix, 2)
    assert (name, array.type) == ("prediction", pa.list_(pa.float32(), 3))
    assert array.to_pylist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_vector_type_float64_keeps_double_precision():
    matrix = np.array([[0.1, 0.2]])
    [(_, array)] = prediction_columns(matrix, 1, OutputNaming(vector_type="float64"))
    assert array.type == pa.list_(pa.float64(), 2)
    assert array.to_pylist() == [[0.1, 0.2]]


def test_a_float32_matrix_is_wrapped_without_copying_its_buffer():
    matrix = np.ones((4, 8), dtype=np.float32)
    [(_, array)] = prediction_columns(matrix, 4)
    assert array.values.buffers()[1].address == matrix.ctypes.data


@pytest.mark.parametrize(
    "output",
    [
        [np.array([1.0, 2.0]), np.array([3.0, 4.0])],
        [[1.0, 2.0], [3.0, 4.0]],
        pd.Series([np.array([1.0, 2.0]), np.array([3.0, 4.0])]),
        FakeTensor(np.array([[1.0, 2.0], [3.0, 4.0]])),
        [FakeTensor(np.array([1.0, 2.0])), FakeTensor(np.array([3.0, 4.0]))],
    ],
    ids=["list-of-arrays", "list-of-lists", "series-of-arrays", "tensor", "list-of-tensors"],
)
def test_rows_of_equal_length_arrays_become_one_vector_column(output):
    [(name, array)] = prediction_columns(output, 2)
    assert (name, array.type) == ("prediction", pa.list_(pa.float32(), 2))
    assert array.to_pylist() == [[1.0, 2.0], [3.0, 4.0]]


def test_a_dict_of_outputs_gives_one_typed_column_per_key():
    output = {"embedding": np.ones((2, 4)), "label": np.array(["x", "y"], dtype=object)}
    assert typed(prediction_columns(output, 2)) == [
        ("prediction_embedding", pa.list_(pa.float32(), 4)),
        ("prediction_label", pa.string()),
    ]  # an object array of str


def test_dicts_per_row_become_a_struct_column():
    rows = [{"label": "a", "score": 0.5}, {"label": "b", "score": 0.25}]
    struct = pa.struct([("label", pa.string()), ("score", pa.float64())])
    assert typed(prediction_columns(rows, 2)) == [("prediction", struct)]
    frame = pd.DataFrame({"info": rows, "n": [1, 2]})
    assert typed(prediction_columns(frame, 2)) == [("prediction_info", struct), ("prediction_n", pa.int64())]
    assert prediction_columns(frame, 2)[0][1].to_pylist() == rows


def test_output_columns_as_a_list_renames_the_outputs_in_order():
    output = {"embedding": np.ones((2, 4)), "label": ["x", "y"]}
    columns = prediction_columns(output, 2, OutputNaming(["vector", "tag"]))
    assert [name for name, _ in columns] == ["vector", "tag"]
    single = prediction_columns(np.ones((2, 4)), 2, OutputNaming(["embedding"]))
    assert typed(single) == [("embedding", pa.list_(pa.float32(), 4))]


def test_output_columns_as_a_dict_keeps_only_the_outputs_it_maps():
    output = {"embedding": np.ones((2, 4)), "label": ["x", "y"]}
    columns = prediction_columns(output, 2, OutputNaming({"label": "tag"}))
    assert [(name, array.to_pylist()) for name, array in columns] == [("tag", ["x", "y"])]
    single = prediction_columns(np.ones(2), 2, OutputNaming({"prediction": "score"}))
    assert [name for name, _ in single] == ["score"]


def test_output_columns_naming_an_output_the_model_did_not_return_is_refused():
    message = refusal({"embedding": np.ones((2, 4))}, 2, OutputNaming({"vector": "v"}))
    assert message == (
        "output_columns names model output(s) 'vector' that the model did not return: it returned a dict "
        "with output(s) 'embedding'; map those names in output_columns"
    )


def test_output_columns_with_the_wrong_count_is_refused_naming_outputs_and_names():
    message = refusal({"a": [1, 2], "b": [3, 4]}, 2, OutputNaming(["only"]))
    assert message.startswith(
        "output_columns gives 1 name(s) ('only') but the model returned a dict with 2 output(s) ('a', 'b')"
    )


@pytest.mark.parametrize("column", ["customer_id", "content_hash"])
def test_output_columns_clashing_with_id_or_hash_columns_are_refused(column):
    naming = OutputNaming([column], reserved=("customer_id", "content_hash"))
    message = refusal(np.ones(2), 2, naming)
    assert message == (
        f"output column(s) {column!r} clash with the id columns or 'content_hash': rename the model "
        "outputs with output_columns"
    )


def test_vectors_of_unequal_length_are_refused_naming_the_lengths():
    message = refusal({"embedding": [np.ones(3), np.ones(2)]}, 2)
    assert message.startswith("model output 'embedding' has vectors of unequal lengths (2, 3)")


def test_vectors_with_nan_are_refused_counting_the_rows():
    matrix = np.ones((3, 2))
    matrix[1, 0] = np.nan
    message = refusal({"embedding": matrix}, 3)
    assert message.startswith("model output 'embedding' has NaN or infinite values in 1 of 3 vectors")


def test_arrays_of_more_than_two_dimensions_are_refused():
    assert refusal(np.ones((2, 3, 4)), 2).startswith(
        "model returned a numpy.ndarray of shape (2, 3, 4), which cannot be stored as prediction columns "
        "(output 'prediction' has 3 dimensions: return shape (rows,) or (rows, d))"
    )


def test_outputs_of_different_lengths_are_refused_naming_each_length():
    assert "(its outputs have different lengths: 'score' 2, 'rank' 1)" in refusal(
        {"score": [1, 2], "rank": [1]}, 2
    )


def test_a_matrix_of_strings_is_refused():
    assert "vector outputs must be numeric" in refusal(np.array([["a", "b"], ["c", "d"]]), 2)


def test_the_wrong_number_of_predictions_is_refused_naming_both_counts():
    assert refusal(np.array([1, 2]), 3) == (
        "model returned 2 predictions (a numpy.ndarray of shape (2,)) for 3 rows: the model must return one "
        "prediction per input row"
    )


def test_an_output_with_repeated_column_names_is_refused_in_one_line():
    output = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    assert "cannot be stored as prediction columns (its columns repeat a name)" in refusal(output, 2)
