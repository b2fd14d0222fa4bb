"""ProbaPredictor's columns are the ones ``argmax`` and fancy indexing give, on ties and NaN too."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from airflow_ai_provider.runtime.models.predictors import ProbaPredictor


def _reference(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best = proba.argmax(axis=1)
    return best, proba[np.arange(len(best)), best]


@pytest.mark.parametrize(
    "proba",
    [
        np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.0, 0.0]]),
        np.array([[0.3, 0.3, 0.4], [0.4, 0.4, 0.2], [0.1, 0.45, 0.45], [1 / 3, 1 / 3, 1 / 3]]),
        np.array([[0.2, np.nan, 0.8], [np.nan, 0.1, 0.9], [0.5, 0.2, np.nan], [0.1, 0.2, 0.7]]),
        np.array([[1.0]]),
        np.empty((0, 3)),
    ],
    ids=["binary-ties", "three-class-ties", "nan", "one-class", "no-rows"],
)
def test_first_max_matches_argmax_on_ties_and_nan(proba: np.ndarray) -> None:
    best, confidence = ProbaPredictor._first_max(np.ascontiguousarray(proba.T))
    expected_best, expected_confidence = _reference(proba)
    np.testing.assert_array_equal(best, expected_best)
    np.testing.assert_array_equal(confidence, expected_confidence)


def test_predicted_columns_equal_the_estimators_own_predict_proba() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((500, 3))
    labels = np.array(["bird", "cat", "dog"])[rng.integers(0, 3, 500)]
    estimator = LogisticRegression().fit(features, labels)
    batch = pa.RecordBatch.from_arrays([pa.array(features[:, i]) for i in range(3)], names=["a", "b", "c"])

    columns = dict(ProbaPredictor(estimator, ["a", "b", "c"]).predict(batch))

    proba = estimator.predict_proba(features)
    best, confidence = _reference(proba)
    assert list(columns) == ["prediction", "confidence", "proba_bird", "proba_cat", "proba_dog"]
    assert columns["prediction"].equals(pa.array(estimator.classes_[best]))
    assert columns["confidence"].equals(pa.array(confidence))
    for index, label in enumerate(estimator.classes_):
        assert columns[f"proba_{label}"].equals(pa.array(proba[:, index]))


def test_a_prepared_matrix_takes_the_features_and_grows_for_a_larger_batch() -> None:
    rng = np.random.default_rng(1)
    features = rng.standard_normal((300, 3))
    estimator = LogisticRegression().fit(features, rng.integers(0, 2, 300))
    prepared = np.full((100, 3), np.nan)
    predictor = ProbaPredictor(estimator, ["a", "b", "c"], prepared)

    for rows in (100, 60, 300):  # the shard's one matrix, then a larger one for the last batch
        batch = pa.RecordBatch.from_arrays(
            [pa.array(features[:rows, i]) for i in range(3)], names=["a", "b", "c"]
        )
        columns = dict(predictor.predict(batch))
        assert columns["proba_1"].equals(pa.array(estimator.predict_proba(features[:rows])[:, 1]))
        if rows <= 100:
            np.testing.assert_array_equal(prepared[:rows], features[:rows])
    np.testing.assert_array_equal(prepared[60:], features[60:100])  # not written past the first batch


@pytest.mark.parametrize(
    "prepared",
    [np.zeros((10, 2)), np.zeros((10, 3), dtype=np.float32), np.asfortranarray(np.zeros((10, 3)))],
    ids=["other-width", "float32", "fortran-ordered"],
)
def test_a_prepared_matrix_that_does_not_fit_the_model_is_left_alone(prepared: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    features = rng.standard_normal((10, 3))
    estimator = LogisticRegression().fit(features, [0, 1] * 5)
    before = prepared.copy()
    batch = pa.RecordBatch.from_arrays([pa.array(features[:, i]) for i in range(3)], names=["a", "b", "c"])

    columns = dict(ProbaPredictor(estimator, ["a", "b", "c"], prepared).predict(batch))

    assert columns["proba_0"].equals(pa.array(estimator.predict_proba(features)[:, 0]))
    np.testing.assert_array_equal(prepared, before)
