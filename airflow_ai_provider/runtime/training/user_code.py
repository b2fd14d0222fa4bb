"""The user's training code: importing ``package.module:function``, calling it, checking its return.

Whatever goes wrong in the user's code is a :class:`JobInputError` (never retried: the same code on
the same data fails again); its traceback goes to the task log.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobError, JobInputError, one_line
from airflow_ai_provider.runtime.training.context import SUPPORTED, TrainingContext


@dataclass
class Trained:
    """The training function's output, checked.

    :param model: the model it returned.
    :param metrics: its metrics, as floats.
    :param flavor: how the model is stored (see :func:`model_flavor`).
    """

    model: Any
    metrics: dict[str, float]
    flavor: str


def load_function(reference: str) -> Callable[[TrainingContext], Any]:
    """Import ``package.module:function`` (the attribute may be dotted, e.g. ``module:Class.method``)."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise JobInputError(
            f"cannot import module {module_name!r} of training function {reference}: {one_line(err)} "
            "(install it in the image, or put it on PYTHONPATH)"
        ) from None
    except Exception as err:  # the module itself raised while importing
        traceback.print_exc()
        raise JobInputError(
            f"importing module {module_name!r} of training function {reference} failed: "
            f"{type(err).__name__}: {one_line(err)}"
        ) from None
    try:
        function = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise JobInputError(
            f"module {module_name!r} has no function {attribute!r} (training function {reference})"
        ) from None
    if not callable(function):
        raise JobInputError(f"training function {reference} is a {type(function).__name__}, not a function")
    return function


def call(function: Callable[[TrainingContext], Any], context: TrainingContext, reference: str) -> Trained:
    """Call the training function and check what it returned."""
    try:
        returned = function(context)
    except JobError:
        raise
    except Exception as err:
        traceback.print_exc()
        raise JobInputError(
            f"training function {reference} failed: {type(err).__name__}: {one_line(err)}"
        ) from None
    metrics: Any = {}
    if isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[1], dict):
        model, metrics = returned
    elif isinstance(returned, dict):
        if "model" not in returned:
            keys = ", ".join(map(str, list(returned)[:10])) or "none"
            raise JobInputError(
                f"training function {reference} returned a dict without a 'model' key (keys: {keys}): {SUPPORTED}"
            )
        model, metrics = returned["model"], returned.get("metrics") or {}
    else:
        model = returned
    if model is None:
        raise JobInputError(f"training function {reference} returned no model: {SUPPORTED}")
    flavor = model_flavor(model)
    if flavor is None:
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        raise JobInputError(
            f"training function {reference} returned a {kind}, not a supported model: {SUPPORTED}"
        )
    return Trained(model, _check_metrics(metrics, reference), flavor)


def model_flavor(model: Any) -> str | None:
    """``python_function`` for an ``mlflow.pyfunc.PythonModel``, ``sklearn`` for anything with ``fit``
    and ``predict``, else ``None``."""
    from mlflow.pyfunc import PythonModel

    if isinstance(model, PythonModel):
        return "python_function"
    if isinstance(model, type):
        return None  # a class, not a fitted estimator
    if callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None)):
        return "sklearn"
    return None


def _check_metrics(metrics: Any, reference: str) -> dict[str, float]:
    """The metrics as floats; one error naming the first that is not a finite number."""
    if not isinstance(metrics, dict):
        raise JobInputError(
            f"training function {reference} returned metrics of type {type(metrics).__name__}: "
            "return a dict of metric name to number"
        )
    checked = {}
    for name, value in metrics.items():
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise JobInputError(
                f"metric {name!r} returned by training function {reference} is {value!r}, not a finite number"
            )
        checked[str(name)] = float(value)
    return checked
