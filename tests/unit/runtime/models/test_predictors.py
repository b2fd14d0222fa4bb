"""A model's output as prediction columns: names by shape, one value per row, one-line refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.models.predictors import prediction_columns


def test_a_vector_becomes_the_prediction_column():
    columns = prediction_columns(np.array([0, 1, 1]), 3)
    assert [(name, array.to_pylist()) for name, array in columns] == [("prediction", [0, 1, 1])]


def test_a_one_column_table_is_the_prediction_column():
    columns = prediction_columns(pd.DataFrame({"score": [0.5, 0.25]}), 2)
    assert [(name, array.to_pylist()) for name, array in columns] == [("prediction", [0.5, 0.25])]


def test_a_table_gives_one_prediction_column_per_output_column():
    columns = prediction_columns({"low": [1.0, 2.0], "high": [3.0, 4.0]}, 2)
    assert [name for name, _ in columns] == ["prediction_low", "prediction_high"]


def test_a_matrix_gives_numbered_prediction_columns():
    columns = prediction_columns(np.zeros((2, 3)), 2)
    assert [name for name, _ in columns] == ["prediction_0", "prediction_1", "prediction_2"]


def test_the_wrong_number_of_predictions_is_refused_naming_both_counts():
    with pytest.raises(JobInputError) as caught:
        prediction_columns(np.array([1, 2]), 3)
    assert str(caught.value) == (
        "model returned 2 predictions (a numpy.ndarray of shape (2,)) for 3 rows: the model must return one "
        "prediction per input row"
    )


def test_an_output_with_repeated_column_names_is_refused_in_one_line():
    output = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    with pytest.raises(JobInputError) as caught:
        prediction_columns(output, 2)
    assert "\n" not in str(caught.value)
    assert "cannot be stored as prediction columns (its columns repeat a name)" in str(caught.value)
