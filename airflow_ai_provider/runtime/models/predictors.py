"""Predicting record batches with a loaded model: predictors, prediction columns, prediction failures.

:func:`make_predictor` picks a scikit-learn classifier's ``predict_proba`` when it applies, else the
pyfunc's ``predict``; :func:`prediction_failure` turns the model's own error into one line.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError, brief
from airflow_ai_provider.runtime.models.features import FLOATS, INTEGERS
from airflow_ai_provider.runtime.models.loading import LoadedModel

Columns = list[tuple[str, pa.Array]]
NUMERIC = INTEGERS | FLOATS | {pa.bool_()}


class ProbaPredictor:
    """Calls a scikit-learn classifier's ``predict_proba`` once per batch.

    ``prediction`` is ``classes_[argmax]``, ``confidence`` the highest probability, and one
    ``proba_<class>`` column per class. The features go in as one float64 matrix, wrapped in a
    DataFrame (no copy) when the estimator was fitted with column names.
    """

    def __init__(self, estimator: Any, features: list[str]) -> None:
        import numpy as np

        self.estimator = estimator
        fitted = getattr(estimator, "feature_names_in_", None)
        self.order = [str(name) for name in fitted] if fitted is not None else list(features)
        self.named = fitted is not None
        self.classes = np.asarray(estimator.classes_)
        self.proba_names = [f"proba_{label}" for label in self.classes]

    @classmethod
    def applies(cls, model: LoadedModel, features: list[str], schema: pa.Schema) -> bool:
        """Whether the fast path fits: a scikit-learn classifier on numeric columns only."""
        if "sklearn" not in model.flavors:
            return False
        estimator = raw_model(model)
        classes = getattr(estimator, "classes_", None)
        if not hasattr(estimator, "predict_proba") or classes is None or getattr(classes, "ndim", 0) != 1:
            return False
        fitted = getattr(estimator, "feature_names_in_", None)
        order = [str(name) for name in fitted] if fitted is not None else features
        if fitted is not None and sorted(order) != sorted(features):
            return False
        return all(name in schema.names and schema.field(name).type in NUMERIC for name in order)

    def predict(self, batch: pa.RecordBatch) -> Columns:
        import numpy as np
        import pandas as pd

        matrix = np.empty((batch.num_rows, len(self.order)), dtype=np.float64)
        for position, name in enumerate(self.order):
            matrix[:, position] = batch.column(name).to_numpy(zero_copy_only=False)
        features = pd.DataFrame(matrix, columns=self.order, copy=False) if self.named else matrix
        proba = self.estimator.predict_proba(features)
        best = proba.argmax(axis=1)
        columns: Columns = [
            ("prediction", pa.array(self.classes[best])),
            ("confidence", pa.array(proba[np.arange(len(best)), best])),
        ]
        by_class = np.ascontiguousarray(proba.T)
        columns.extend((name, pa.array(by_class[i])) for i, name in enumerate(self.proba_names))
        return columns


class PyfuncPredictor:
    """Calls the pyfunc model's ``predict`` on a pandas DataFrame of the feature columns."""

    def __init__(self, pyfunc: Any, features: list[str]) -> None:
        self.pyfunc = pyfunc
        self.features = features

    def predict(self, batch: pa.RecordBatch) -> Columns:
        frame = batch.select(self.features).to_pandas()
        output = self.pyfunc.predict(frame)
        return prediction_columns(output, batch.num_rows)


def raw_model(model: LoadedModel) -> Any:
    """The flavor's own model object (a scikit-learn estimator...), ``None`` for flavors without one."""
    try:
        return model.pyfunc.get_raw_model()
    except Exception:  # flavors without a raw model
        return None


def prediction_columns(output: Any, rows: int) -> Columns:
    """Name a pyfunc output: a vector becomes ``prediction``; a table's columns ``prediction_<name>``
    (or ``prediction`` when it has one column)."""
    import numpy as np
    import pandas as pd

    received = _describe_output(output)
    try:
        if isinstance(output, dict):
            output = pd.DataFrame(output)
        if isinstance(output, np.ndarray) and output.ndim == 2:
            output = pd.DataFrame(output)
        if isinstance(output, pd.DataFrame):
            if output.shape[1] == 1:
                columns = [("prediction", output.iloc[:, 0])]
            else:
                if output.columns.duplicated().any():
                    raise ValueError("its columns repeat a name")
                columns = [(f"prediction_{name}", output[name]) for name in output.columns]
        else:
            columns = [("prediction", output)]
        arrays = [
            (name, pa.array(np.asarray(values) if not isinstance(values, pd.Series) else values))
            for name, values in columns
        ]
    except (ValueError, TypeError, pa.ArrowException) as err:
        raise JobInputError(
            f"model returned {received}, which cannot be stored as prediction columns ({brief(err)}): "
            "the model must return one value per row, as a vector or a table with one row per input row"
        ) from None
    if any(len(array) != rows for _, array in arrays):
        raise JobInputError(
            f"model returned {len(arrays[0][1])} predictions ({received}) for {rows} rows: the model must "
            "return one prediction per input row"
        )
    return arrays


def _describe_output(output: Any) -> str:
    shape = getattr(output, "shape", None)
    kind = f"{type(output).__module__}.{type(output).__qualname__}".removeprefix("builtins.")
    return f"a {kind} of shape {tuple(shape)}" if shape is not None else f"a {kind}"


def prediction_failure(
    err: Exception, model: LoadedModel, batch: pa.RecordBatch, features: list[str]
) -> Exception:
    """A model's own failure to predict a batch, as one line naming the model and, when some feature
    columns of the batch have missing values, those columns (the usual cause)."""
    if isinstance(err, (JobInputError, JobServiceError, MemoryError)):
        return err
    from airflow_ai_provider.runtime.storage import missing_values

    with_missing = []
    for name in features:
        missing = missing_values(batch.column(name))
        if missing:
            with_missing.append(f"{name!r} ({missing} of {batch.num_rows} rows)")
    hint = (
        f"; feature column(s) with missing values: {', '.join(with_missing)}: fill or drop those rows, "
        "or use a model that accepts missing values"
        if with_missing
        else ": check that the input matches what the model was trained on"
    )
    info = model.info
    return JobInputError(
        f"model {info.get('name')!r} version {info.get('version')} failed to predict: "
        f"{type(err).__name__}: {brief(err)}{hint}"
    )


def make_predictor(model: LoadedModel, features: list[str], schema: pa.Schema, use_proba: bool) -> Any:
    """The fast ``predict_proba`` path when it applies, else the pyfunc's own ``predict``."""
    if use_proba and ProbaPredictor.applies(model, features, schema):
        return ProbaPredictor(model.pyfunc.get_raw_model(), features)
    return PyfuncPredictor(model.pyfunc, features)
