"""The user contract of the ``train`` job: what a training function receives and what it returns.

The training function is named ``package.module:function`` and must be importable where the runtime
runs (installed in the image, or on the worker's ``PYTHONPATH``/working directory in local mode).
It is called with one argument, a :class:`TrainingContext`:

- ``data``: the training data as a pandas DataFrame (all columns of the input);
- ``table``: the same data as a pyarrow Table;
- ``label``: the label column's name;
- ``features``: the feature columns, ``params.feature_columns`` or else every column but the label
  and the ``params.id_columns``;
- ``params``: the hyper-parameters (``params.hyperparameters``), a dict;
- ``log``: a function that prints one line to the task log;
- ``run_id``: the MLflow run the model is logged into.

It returns one of:

- a model;
- a tuple ``(model, metrics)``;
- a dict ``{"model": model, "metrics": metrics}``;

where ``metrics`` maps names to numbers (e.g. holdout accuracy) and the model is a scikit-learn
estimator (anything with ``fit`` and ``predict``, saved with cloudpickle) or an
``mlflow.pyfunc.PythonModel``. Example::

    from airflow_ai_provider.runtime.training import TrainingContext

    def train(ctx: TrainingContext):
        model = HistGradientBoostingClassifier(**ctx.params).fit(ctx.data[ctx.features], ctx.data[ctx.label])
        return model, {"accuracy": 0.81}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: What a training function may return, quoted by every error about its return value.
SUPPORTED = (
    "return a scikit-learn estimator (with fit and predict) or an mlflow.pyfunc.PythonModel, "
    "alone, as (model, metrics) or as {'model': model, 'metrics': {...}}"
)


@dataclass(frozen=True)
class TrainingContext:
    """What the training function gets (see the module docstring).

    :param data: the training data, all columns.
    :param table: the same data as Arrow.
    :param label: the label column.
    :param features: the feature columns, in model input order.
    :param params: the hyper-parameters.
    :param log: prints one line to the task log.
    :param run_id: the task's MLflow run, where the model goes.
    """

    data: pd.DataFrame
    table: pa.Table
    label: str
    features: list[str]
    params: dict[str, Any]
    log: Callable[[str], None]
    run_id: str | None
