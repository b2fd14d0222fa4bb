"""Scoring one model on the quality gate's holdout: the task type, the metrics and the latency.

Metrics (``sklearn.metrics``): classification ``accuracy``, ``f1`` (binary for two classes, with
the model's second class as positive, else weighted), ``roc_auc`` and ``log_loss`` (only when the
model's raw estimator has ``predict_proba``); regression ``rmse``, ``mae``, ``r2``; both
``latency_ms_per_1k_rows`` (one ``predict`` call over the holdout). A metric that cannot be
computed is listed in :attr:`Scored.skipped` with why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.models.features import Features
from airflow_ai_provider.runtime.models.loading import LoadedModel
from airflow_ai_provider.runtime.models.predictors import raw_model

MAX_CLASSES = 20
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "latency_ms_per_1k_rows"}


@dataclass
class Scored:
    """One model's metrics on the holdout, and the metrics it could not get (with why)."""

    ref: ModelReference
    info: dict[str, Any]
    metrics: dict[str, float]
    skipped: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.ref.name,
            "version": str(self.ref.version),
            "alias": self.ref.alias,
            "run_id": self.info.get("run_id"),
            "metrics": self.metrics,
            "skipped": self.skipped,
        }


def infer_task_type(label: pa.ChunkedArray, name: str) -> str:
    """``classification`` for an integer, boolean or string label with few values, ``regression`` for a
    floating point label with many; otherwise :class:`JobInputError`."""
    kind = label.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    try:
        distinct = pc.count_distinct(label).as_py()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        raise JobInputError(
            f"label column {name!r} is {label.type}: a label must hold numbers, text or booleans"
        ) from None
    discrete = pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_string(kind)
    discrete = discrete or pa.types.is_large_string(kind)
    if discrete and distinct <= MAX_CLASSES:
        return "classification"
    if pa.types.is_floating(kind) and distinct > MAX_CLASSES:
        return "regression"
    raise JobInputError(
        f"cannot infer task type from label column {name!r} ({kind}, {distinct} distinct values): "
        "set task_type to 'classification' or 'regression'"
    )


def score(
    ref: ModelReference,
    model: LoadedModel,
    features: Features,
    table: pa.Table,
    truth: Any,
    task_type: str,
) -> Scored:
    """Predict the holdout ``table`` with ``model`` once and compute the metrics of ``task_type``.

    :param truth: the label column as a numpy array.
    :raises JobInputError: a column does not convert, the model fails or returns other than one
        prediction per row, or the predictions do not compare with the label.
    """
    import numpy as np

    selected = table.select(features.names)
    for name, kind in features.types.items():
        try:
            column = selected.column(name).cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise JobInputError(
                f"holdout column {name!r} ({selected.column(name).type}) cannot be read as {kind}, the type "
                f"model {ref.name!r} version {ref.version} expects: {one_line(err)}"
            ) from None
        selected = selected.set_column(selected.schema.get_field_index(name), name, column)
    frame = selected.to_pandas()
    begin = time.perf_counter()
    try:
        predicted = np.asarray(model.pyfunc.predict(frame))
    except Exception as err:  # model code raises anything
        raise JobInputError(
            f"model {ref.name!r} version {ref.version} failed to predict: {one_line(err)}"
        ) from None
    latency = (time.perf_counter() - begin) * 1000.0 / max(len(frame), 1) * 1000.0
    if predicted.ndim > 1:
        predicted = predicted[:, 0] if predicted.shape[1] == 1 else predicted
    if predicted.ndim != 1 or len(predicted) != len(truth):
        raise JobInputError(
            f"model {ref.name!r} version {ref.version} returned predictions of shape {predicted.shape} "
            f"for {len(truth)} rows: the gate needs one prediction per row"
        )
    if task_type == "classification":
        metrics, skipped = _classification(model, frame, truth, predicted)
    else:
        metrics, skipped = _regression(ref, truth, predicted)
    metrics["latency_ms_per_1k_rows"] = round(latency, 3)
    return Scored(ref, model.info, metrics, skipped)


def _classification(model: LoadedModel, frame: Any, truth: Any, predicted: Any) -> tuple[dict, dict]:
    import numpy as np
    from sklearn import metrics as skm

    estimator = raw_model(model)
    classes = getattr(estimator, "classes_", None)
    if classes is None or np.ndim(classes) != 1:
        classes = np.unique(np.concatenate([truth.astype(object), predicted.astype(object)]))
    try:
        accuracy = skm.accuracy_score(truth, predicted)
        if len(classes) == 2:
            f1 = skm.f1_score(truth, predicted, average="binary", pos_label=classes[1])
        else:
            f1 = skm.f1_score(truth, predicted, average="weighted")
    except (TypeError, ValueError) as err:
        raise JobInputError(
            f"predictions cannot be compared with the label ({one_line(err)}): is task_type right?"
        ) from None
    metrics = {"accuracy": float(accuracy), "f1": float(f1)}
    skipped: dict[str, str] = {}
    if estimator is None or not hasattr(estimator, "predict_proba"):
        reason = "model has no predict_proba"
        return metrics, {"roc_auc": reason, "log_loss": reason}
    try:
        proba = np.asarray(estimator.predict_proba(frame[_fitted_order(estimator, frame)]))
    except Exception as err:  # estimator code raises anything
        reason = f"predict_proba failed: {one_line(err)}"
        return metrics, {"roc_auc": reason, "log_loss": reason}
    try:
        if len(classes) == 2:
            metrics["roc_auc"] = float(skm.roc_auc_score(truth == classes[1], proba[:, 1]))
        else:
            metrics["roc_auc"] = float(skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes))
    except ValueError as err:
        skipped["roc_auc"] = one_line(err)
    try:
        metrics["log_loss"] = float(skm.log_loss(truth, proba, labels=classes))
    except ValueError as err:
        skipped["log_loss"] = one_line(err)
    return metrics, skipped


def _regression(ref: ModelReference, truth: Any, predicted: Any) -> tuple[dict, dict]:
    import numpy as np
    from sklearn import metrics as skm

    try:
        y_true, y_pred = truth.astype("float64"), predicted.astype("float64")
    except (TypeError, ValueError):
        raise JobInputError(
            f"model {ref.name!r} version {ref.version} or the label is not numeric: a regression needs "
            "numbers; is task_type right?"
        ) from None
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }, {}


def _fitted_order(estimator: Any, frame: Any) -> list[str]:
    fitted = getattr(estimator, "feature_names_in_", None)
    return [str(name) for name in fitted] if fitted is not None else list(frame.columns)
