"""Predicting record batches with a loaded model: predictors and prediction failures.

:func:`make_predictor` picks a scikit-learn classifier's ``predict_proba`` when it applies, else the
pyfunc's ``predict`` (its output typed and named by :mod:`.outputs`); :func:`prediction_failure` turns
the model's own error into one line.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError, brief
from airflow_ai_provider.runtime.models.features import FLOATS, INTEGERS, TensorInput, tensor_input
from airflow_ai_provider.runtime.models.loading import LoadedModel
from airflow_ai_provider.runtime.models.outputs import Columns, OutputNaming, prediction_columns

NUMERIC = INTEGERS | FLOATS | {pa.bool_()}


class ProbaPredictor:
    """Calls a scikit-learn classifier's ``predict_proba`` once per batch.

    ``prediction`` is ``classes_[argmax]``, ``confidence`` the highest probability, and one
    ``proba_<class>`` column per class. The features go in as one float64 matrix, wrapped in a
    DataFrame (no copy) when the estimator was fitted with column names.
    """

    def __init__(self, estimator: Any, features: list[str], matrix: Any = None) -> None:
        """:param matrix: a float64 C-ordered matrix to copy the features into, e.g. one
        :func:`touched_matrix` prepared while the model loaded; used while its rows suffice and
        its width is the number of features, and kept for the next batch (one matrix per shard)."""
        import numpy as np

        self.estimator = estimator
        fitted = getattr(estimator, "feature_names_in_", None)
        self.order = [str(name) for name in fitted] if fitted is not None else list(features)
        self.named = fitted is not None
        self.classes = np.asarray(estimator.classes_)
        self.proba_names = [f"proba_{label}" for label in self.classes]
        fits = matrix is not None and matrix.ndim == 2 and matrix.shape[1] == len(self.order)
        self._matrix = matrix if fits and matrix.dtype == np.float64 and matrix.flags.c_contiguous else None

    def _feature_matrix(self, rows: int) -> Any:
        """``rows`` rows of the shard's one feature matrix, grown when a batch is larger: a fresh
        matrix costs a page fault per 4 KiB on its first write (50-120 ms for 32 MB here)."""
        import numpy as np

        if self._matrix is None or self._matrix.shape[0] < rows:
            self._matrix = np.empty((rows, len(self.order)), dtype=np.float64)
        return self._matrix[:rows]

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

        matrix = self._feature_matrix(batch.num_rows)
        for position, name in enumerate(self.order):
            matrix[:, position] = batch.column(name).to_numpy(zero_copy_only=False)
        features = pd.DataFrame(matrix, columns=self.order, copy=False) if self.named else matrix
        # One copy, class by class: each row of it becomes an Arrow array without another copy.
        by_class = np.ascontiguousarray(np.asarray(self.estimator.predict_proba(features)).T)
        best, confidence = self._first_max(by_class)
        columns: Columns = [
            ("prediction", pa.array(self.classes.take(best))),
            ("confidence", pa.array(confidence)),
        ]
        columns.extend((name, pa.array(by_class[i])) for i, name in enumerate(self.proba_names))
        return columns

    @staticmethod
    def _first_max(by_class: Any) -> tuple[Any, Any]:
        """Per row of a (classes, rows) array: the index of the first highest value and that value, as
        ``argmax`` gives them, in whole-column passes (``argmax`` over a short row costs about twice as
        much); a row with a NaN falls back to ``argmax``."""
        import numpy as np

        best = np.zeros(by_class.shape[1], dtype=np.intp)
        confidence = by_class[0].copy()
        for index in range(1, by_class.shape[0]):
            best[by_class[index] > confidence] = index
            np.maximum(confidence, by_class[index], out=confidence)
        if np.isnan(confidence).any():  # np.maximum propagates NaN; argmax picks the first NaN
            best = by_class.argmax(axis=0)
            confidence = by_class[best, np.arange(by_class.shape[1])]
        return best, confidence


class PyfuncPredictor:
    """Calls the pyfunc model's ``predict`` on a pandas DataFrame of the feature columns, or on one
    numpy array of the signature's tensor dtype and shape; the output becomes typed, named columns
    (:func:`~.outputs.prediction_columns`)."""

    def __init__(
        self,
        pyfunc: Any,
        features: list[str],
        naming: OutputNaming | None = None,
        tensor: TensorInput | None = None,
    ) -> None:
        self.pyfunc = pyfunc
        self.features = features
        self.naming = naming or OutputNaming()
        self.tensor = tensor

    def predict(self, batch: pa.RecordBatch) -> Columns:
        if self.tensor is not None:
            model_input = tensor_input(batch, self.features, self.tensor)
        else:
            model_input = batch.select(self.features).to_pandas()
        output = self.pyfunc.predict(model_input)
        return prediction_columns(output, batch.num_rows, self.naming)


class NamedPredictor:
    """Another predictor whose columns are renamed or selected by ``output_columns`` (each column
    is a model output of its own name)."""

    def __init__(self, predictor: Any, naming: OutputNaming) -> None:
        self.predictor = predictor
        self.naming = naming

    def predict(self, batch: pa.RecordBatch) -> Columns:
        columns = self.predictor.predict(batch)
        return self.naming.name([(name, name, array) for name, array in columns], "predict_proba columns")


def raw_model(model: LoadedModel) -> Any:
    """The flavor's own model object (a scikit-learn estimator...), ``None`` for flavors without one."""
    try:
        return model.pyfunc.get_raw_model()
    except Exception:  # flavors without a raw model
        return None


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


def touched_matrix(rows: int, columns: int) -> Any:
    """A float64 C-ordered ``rows`` x ``columns`` matrix written once, so its pages are mapped: made
    in the reader thread while the model loads, it spares the first batch those page faults."""
    import numpy as np

    matrix = np.empty((rows, columns), dtype=np.float64)
    matrix.fill(0.0)
    return matrix


def make_predictor(
    model: LoadedModel,
    features: list[str],
    schema: pa.Schema,
    use_proba: bool,
    naming: OutputNaming | None = None,
    tensor: TensorInput | None = None,
    matrix: Any = None,
) -> Any:
    """The fast ``predict_proba`` path when it applies (its features copied into ``matrix``, see
    :class:`ProbaPredictor`), else the pyfunc's own ``predict``; both name their columns with
    ``naming`` (``output_columns``)."""
    naming = naming or OutputNaming()
    if use_proba and tensor is None and ProbaPredictor.applies(model, features, schema):
        proba = ProbaPredictor(model.pyfunc.get_raw_model(), features, matrix)
        return proba if naming.output_columns is None else NamedPredictor(proba, naming)
    return PyfuncPredictor(model.pyfunc, features, naming, tensor)
