"""The training data: reading it, checking its columns and labels, and describing it (label statistics).

Every check runs before the training function does, and names the column and the input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_ai_provider.runtime.contract.params import TrainParams

#: Most classes a label summary counts; a numeric label with more is summarised by its distribution.
MAX_CLASSES = 20


@dataclass(frozen=True)
class TrainingData:
    """The checked training data.

    :param data: the opened input (files, digest).
    :param table: all rows as Arrow.
    :param frame: the same rows as pandas.
    :param features: the feature columns, in model input order.
    :param read_s: seconds spent reading.
    """

    data: storage.InputData
    table: pa.Table
    frame: pd.DataFrame
    features: list[str]
    read_s: float


def read(inputs: list[str], params: TrainParams) -> TrainingData:
    """Read and check the training data: columns, at least one row, no missing labels."""
    step = time.perf_counter()
    data = storage.InputData.open(inputs, params.input_format)
    features = check_columns(data, params, inputs)
    table = pa.Table.from_batches(list(data.batches()), schema=data.schema)
    if table.num_rows == 0:
        raise JobInputError(f"training data {', '.join(inputs)} has no rows: nothing to train on")
    check_label(table, params.label_column, inputs)
    frame = table.to_pandas()
    return TrainingData(data, table, frame, features, time.perf_counter() - step)


def check_columns(data: storage.InputData, params: TrainParams, inputs: list[str]) -> list[str]:
    """The feature columns; one error naming every missing column."""
    columns = data.columns
    where = ", ".join(inputs)
    if params.label_column not in columns:
        message = (
            f"label column {params.label_column!r} not in training data {where} "
            f"(columns: {', '.join(columns)}): set label_column"
        )
        raise JobInputError(with_look_alikes(message, [params.label_column], columns))
    missing = [name for name in [*params.id_columns, *(params.feature_columns or [])] if name not in columns]
    if missing:
        message = (
            f"column(s) {', '.join(map(repr, missing))} of id_columns/feature_columns not in training data "
            f"{where} (columns: {', '.join(columns)})"
        )
        raise JobInputError(with_look_alikes(message, missing, columns))
    if params.feature_columns is not None:
        features = list(params.feature_columns)
    else:
        excluded = {params.label_column, *params.id_columns}
        features = [name for name in columns if name not in excluded]
    if not features:
        raise JobInputError(f"training data {where} has no feature columns besides the label and id columns")
    return features


def check_label(table: pa.Table, label: str, inputs: list[str]) -> None:
    """Refuse missing labels (null or NaN) before the training function sees them."""
    missing = storage.missing_values(table.column(label))
    if missing:
        raise JobInputError(
            f"label column {label!r} has {missing} missing value(s) (null or NaN) of {table.num_rows} rows in "
            f"training data {', '.join(inputs)}: filter those rows out before training, or fix the ingest"
        )


def label_summary(label: pd.Series) -> dict[str, Any]:
    """Class counts for a label with few distinct values that is not a continuous float, else its
    mean, std, min and max."""
    import pandas as pd

    counts = label.value_counts(dropna=True, sort=True)
    continuous = pd.api.types.is_float_dtype(label.dtype) and not (label.dropna() % 1 == 0).all()
    numeric = pd.api.types.is_numeric_dtype(label.dtype) and not pd.api.types.is_bool_dtype(label.dtype)
    if not numeric or (len(counts) <= MAX_CLASSES and not continuous):
        return {"classes": {str(value): int(count) for value, count in counts.iloc[:MAX_CLASSES].items()}}
    values = pd.to_numeric(label, errors="coerce").dropna()
    return {
        "numeric": {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    }


def schema(table: pa.Table) -> dict[str, str]:
    """Column name to type, as the result and the dataset input record them."""
    return storage.column_types(table.schema)


def input_entries(data: storage.InputData) -> list[dict[str, Any]]:
    """One entry per input file for the result: URI, size and format."""
    return [
        {"uri": meta.file.uri, "bytes": meta.file.size, "format": meta.file.format} for meta in data.metas
    ]
