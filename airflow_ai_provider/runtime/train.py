"""The ``train`` job: run the user's training function and register the model it returns.

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

    def train(ctx):
        model = HistGradientBoostingClassifier(**ctx.params).fit(ctx.data[ctx.features], ctx.data[ctx.label])
        return model, {"accuracy": 0.81}

The job then logs the model into the task's MLflow run (``spec.mlflow.run_id``) with an inferred
signature, an input example, pinned pip requirements, the hyper-parameters as params, the metrics
and the training data as a dataset input; logs the reference profile of the training data
(``reference_profile.json``) and a model card (``model_card.md``); registers a new version with
lineage tags and the model card as its description, waits until it is ``READY`` and only then points
the alias (default ``challenger``) at it.

Retries are idempotent: with ``params.training_key`` set (the operator sets
``<dag_id>/<run_id>/<task_id>/<map_index>``), a version carrying that key as tag ``ai.training_key``
means an earlier try got as far as registering; it is reused (alias set, same result, ``reused``
true) instead of training again. A failure before the version is created registers nothing.

The result's ``model`` is ``{"name", "version", "alias"}``, its ``metrics`` the function's metrics
plus ``duration_s``, and its ``details``: ``model_name``, ``version``, ``alias``, ``model_uri``
(``models:/<name>/<version>``), ``run_id``, ``training_data_digest``, ``rows``, ``features``,
``label``, ``reference_profile_uri``, ``model_card_artifact`` and ``reused``.

Labels are checked first: a label column with missing values (null or NaN) fails the job before the
training function runs, naming the column and the count. A training function that raises, returns
no model or returns something unsupported fails the job
with :class:`JobInputError` (no retry: the same code on the same data fails again); its traceback
goes to the task log.

Parameters (``spec.params``, checked by :class:`~.params.TrainParams`):

- ``training_function`` (str, required): ``package.module:function``.
- ``label_column`` (str, required): the label column.
- ``model_name`` (str, required): registered model name.
- ``alias`` (str, default ``challenger``): alias pointed at the new version.
- ``feature_columns`` (list of str, or one name as a string): the features; default all but the
  label and id columns.
- ``id_columns`` (list of str, or one name as a string): columns that are neither features nor label.
- ``hyperparameters`` (dict): passed to the training function as ``ctx.params``, logged as params.
- ``pip_requirements`` (list of str): the model's requirements; default pins of the installed
  mlflow, scikit-learn, pandas, numpy and cloudpickle (MLflow's own inference takes seconds).
- ``training_key`` (str): identifies one training task across its tries.
- ``intended_use``, ``limitations`` (str): shown in the model card.
- ``dag_id``, ``dag_run_id``, ``task_id``, ``image`` (str): lineage, recorded as version tags.
- ``input_format`` (``parquet`` or ``csv``): overrides the format taken from file suffixes.
- ``registration_timeout_s`` (int, default 300): how long to wait for the version to be ``READY``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import math
import numbers
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from airflow_ai_provider.runtime import log_line, storage
from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobError, JobInputError, JobServiceError, one_line
from airflow_ai_provider.runtime.contract.params import TrainParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.contract.timeouts import MLFLOW_SERVICE_CODES, mlflow_unavailable
from airflow_ai_provider.runtime.model_card import MODEL_CARD_ARTIFACT, ModelCard
from airflow_ai_provider.runtime.tracking import configure_mlflow, probe_tracking_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

Log = Callable[[str], None]
MODEL_ARTIFACT = "model"
#: What a successful training wrote, read back when a retry reuses the version.
SUMMARY_ARTIFACT = "training_summary.json"
TRAINING_KEY_TAG = "ai.training_key"
#: MLflow settings while the model is logged (see :func:`_log_model`).
NO_UV_DETECTION = {"MLFLOW_UV_AUTO_DETECT": "false", "MLFLOW_LOG_UV_FILES": "false"}
SIGNATURE_ROWS = 1000
EXAMPLE_ROWS = 5
MAX_CLASSES = 20
DEFAULT_PINS = ("scikit-learn", "pandas", "numpy", "cloudpickle")
SUPPORTED = (
    "return a scikit-learn estimator (with fit and predict) or an mlflow.pyfunc.PythonModel, "
    "alone, as (model, metrics) or as {'model': model, 'metrics': {...}}"
)


@dataclass(frozen=True)
class TrainingContext:
    """What the training function gets (see the module docstring)."""

    data: pd.DataFrame
    table: pa.Table
    label: str
    features: list[str]
    params: dict[str, Any]
    log: Callable[[str], None]
    run_id: str | None


@dataclass
class _Trained:
    """The training function's output, checked."""

    model: Any
    metrics: dict[str, float]
    flavor: str


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Run one ``train`` job and return its result (raises :class:`JobError` on failure)."""
    started = time.time()
    params = TrainParams.from_spec(spec.params)
    run_id = spec.mlflow.run_id
    if not run_id:
        raise JobInputError("train job spec has no mlflow.run_id: the MLflow run the model is logged into")
    for uri in dict.fromkeys(
        [spec.mlflow.tracking_uri, spec.mlflow.registry_uri or spec.mlflow.tracking_uri]
    ):
        probe_tracking_server(uri)
    configure_mlflow(spec.mlflow)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=spec.mlflow.tracking_uri, registry_uri=spec.mlflow.registry_uri)
    result = JobResult(job=spec.job, status="running", input_source=",".join(spec.inputs))

    existing = _find_version(client, params, spec.mlflow.tracking_uri) if params.training_key else None
    if existing is not None:
        log(
            f"model {params.model_name} version {existing.version} was registered by an earlier try of "
            f"this task (training key {params.training_key}): reusing it, not training again"
        )
        _reuse(client, params, existing, result, spec.mlflow.tracking_uri, log)
    else:
        _train_and_register(spec, params, client, run_id, result, log)
    ended = time.time()
    result.status = "success"
    result.timings = {"started_at": started, "ended_at": ended, **result.timings}
    result.metrics.setdefault("duration_s", round(ended - started, 3))
    return result


# --- fresh training --------------------------------------------------------------------------------


def _train_and_register(
    spec: JobSpec, params: TrainParams, client: Any, run_id: str, result: JobResult, log: Log
) -> None:
    function = load_function(params.training_function)
    step = time.perf_counter()
    data = storage.InputData.open(spec.inputs, params.input_format)
    features = _check_columns(data, params, spec.inputs)
    table = pa.Table.from_batches(list(data.batches()), schema=data.schema)
    if table.num_rows == 0:
        raise JobInputError(f"training data {', '.join(spec.inputs)} has no rows: nothing to train on")
    _check_label(table, params.label_column, spec.inputs)
    frame = table.to_pandas()
    read_s = time.perf_counter() - step
    log(
        f"read {table.num_rows} rows x {table.num_columns} columns from {len(data.metas)} file(s) in "
        f"{read_s:.1f}s; label {params.label_column!r}, {len(features)} features"
    )

    step = time.perf_counter()
    context = TrainingContext(
        data=frame,
        table=table,
        label=params.label_column,
        features=list(features),
        params=dict(params.hyperparameters),
        log=log,
        run_id=run_id,
    )
    trained = _call(function, context, params.training_function)
    train_s = time.perf_counter() - step
    log(f"{params.training_function} returned a {trained.flavor} model in {train_s:.1f}s: {trained.metrics}")

    step = time.perf_counter()
    with _mlflow_errors("cannot log the training run", spec.mlflow.tracking_uri):
        _log_run_records(client, run_id, params, trained.metrics, spec.inputs, data, table)
        experiment_id = spec.mlflow.experiment_id or client.get_run(run_id).info.experiment_id
        model_info = _log_model(trained, frame[features], params, run_id, experiment_id, log)
        from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile

        client.log_dict(run_id, build_profile(table, features), PROFILE_ARTIFACT)
    log_s = time.perf_counter() - step

    summary = {
        "metrics": trained.metrics,
        "rows": table.num_rows,
        "features": features,
        "label": params.label_column,
        "training_data_digest": data.digest,
        "training_data_uri": ",".join(spec.inputs),
        "flavor": trained.flavor,
    }
    card = _model_card(params, summary, label_summary(frame[params.label_column]), run_id)

    step = time.perf_counter()
    with _mlflow_errors(f"cannot register model {params.model_name!r}", spec.mlflow.tracking_uri):
        expected = _next_version(client, params.model_name)
        card = replace(card, version=expected)
        client.log_text(run_id, card.to_markdown(), MODEL_CARD_ARTIFACT)
        client.log_dict(run_id, summary, SUMMARY_ARTIFACT)
        version = _create_version(client, params, model_info, run_id, card, summary)
        if str(version.version) != expected:  # another registration took the number meanwhile
            card = replace(card, version=str(version.version))
            client.update_model_version(params.model_name, version.version, description=card.description())
            client.log_text(run_id, card.to_markdown(), MODEL_CARD_ARTIFACT)
        client.set_registered_model_alias(params.model_name, params.alias, version.version)
    register_s = time.perf_counter() - step
    log(
        f"registered {params.model_name} version {version.version} (alias {params.alias!r}) in "
        f"{register_s:.1f}s"
    )
    _fill_result(result, params, str(version.version), run_id, summary, reused=False)
    result.inputs = _input_entries(data)
    result.input_schema = _schema(table)
    result.timings = {
        "read_s": round(read_s, 3),
        "train_s": round(train_s, 3),
        "log_s": round(log_s, 3),
        "register_s": round(register_s, 3),
    }


def _model_card(
    params: TrainParams, summary: dict[str, Any], label: dict[str, Any], run_id: str
) -> ModelCard:
    from airflow_ai_provider.runtime.profile import profile_uri

    return ModelCard(
        model_name=params.model_name,
        version=None,
        alias=params.alias,
        intended_use=params.intended_use,
        limitations=params.limitations,
        data_uri=summary["training_data_uri"],
        data_digest=summary["training_data_digest"],
        rows=summary["rows"],
        features=summary["features"],
        label=params.label_column,
        label_summary=label,
        metrics=summary["metrics"],
        hyperparameters=params.hyperparameters,
        code_reference=params.training_function,
        flavor=summary["flavor"],
        environment=params.image,
        lineage={
            "DAG": params.dag_id or "",
            "DAG run": params.dag_run_id or "",
            "Task": params.task_id or "",
            "Training key": params.training_key or "",
        },
        mlflow_run_id=run_id,
        reference_profile_uri=profile_uri(run_id),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


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


def _check_columns(data: storage.InputData, params: TrainParams, inputs: list[str]) -> list[str]:
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


def _check_label(table: pa.Table, label: str, inputs: list[str]) -> None:
    """Refuse missing labels (null or NaN) before the training function sees them."""
    missing = storage.missing_values(table.column(label))
    if missing:
        raise JobInputError(
            f"label column {label!r} has {missing} missing value(s) (null or NaN) of {table.num_rows} rows in "
            f"training data {', '.join(inputs)}: filter those rows out before training, or fix the ingest"
        )


def _call(function: Callable[[TrainingContext], Any], context: TrainingContext, reference: str) -> _Trained:
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
    return _Trained(model, _check_metrics(metrics, reference), flavor)


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


def default_pip_requirements() -> list[str]:
    """Pins of the installed mlflow, scikit-learn, pandas, numpy and cloudpickle (those installed)."""
    import mlflow

    pins = [f"mlflow=={mlflow.__version__}"]
    for distribution in DEFAULT_PINS:
        try:
            pins.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def _log_run_records(
    client: Any,
    run_id: str,
    params: TrainParams,
    metrics: dict[str, float],
    inputs: list[str],
    data: storage.InputData,
    table: pa.Table,
) -> None:
    """Hyper-parameters, metrics (before the model, so MLflow links them to it) and the dataset."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(name, value, now_ms, 0) for name, value in metrics.items()],
        params=[Param(name, _param_value(value)) for name, value in params.hyperparameters.items()],
    )
    source = ",".join(inputs)
    dataset = Dataset(
        name=inputs[0].rstrip("/").rsplit("/", 1)[-1] or "training-data",
        digest=data.digest[:32],
        source_type="s3" if source.startswith("s3://") else "local",
        source=json.dumps({"uri": source, "sha256": data.digest}),
        schema=json.dumps(_schema(table)),
        profile=json.dumps({"num_rows": table.num_rows}),
    )
    client.log_inputs(
        run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]
    )


def _param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _log_model(
    trained: _Trained, features: pd.DataFrame, params: TrainParams, run_id: str, experiment_id: str, log: Log
) -> Any:
    """Log the model into the run (and its experiment) with a signature, an input example and explicit
    requirements.

    MLflow's uv project detection is off meanwhile: run from a folder holding ``uv.lock`` (as a local
    runtime on a worker may be), MLflow would copy that project's lock file into the model and
    record its environment instead of the model's requirements.
    """
    requirements = params.pip_requirements or default_pip_requirements()
    example = features.head(EXAMPLE_ROWS)
    # MLflow files a logged model under the fluent API's current experiment, not its run's
    experiment = {"MLFLOW_EXPERIMENT_ID": experiment_id, "MLFLOW_EXPERIMENT_NAME": None}
    with _environment({**NO_UV_DETECTION, **experiment}):
        info = _log_flavor(trained, features, example, requirements, params, run_id)
    log(f"logged the model as {info.model_uri} in run {run_id} (requirements: {', '.join(requirements)})")
    return info


def _log_flavor(
    trained: _Trained,
    features: pd.DataFrame,
    example: pd.DataFrame,
    requirements: list[str],
    params: TrainParams,
    run_id: str,
) -> Any:
    import mlflow
    from mlflow.models import Model, infer_signature

    if trained.flavor == "sklearn":
        sample = features.head(SIGNATURE_ROWS)
        try:
            predictions = trained.model.predict(sample)
        except Exception as err:
            raise JobInputError(
                f"the model returned by {params.training_function} cannot predict on its training "
                f"features: {type(err).__name__}: {one_line(err)}"
            ) from None
        info = mlflow.sklearn.log_model(
            trained.model,
            name=MODEL_ARTIFACT,
            run_id=run_id,
            signature=infer_signature(sample, predictions),
            input_example=example,
            pip_requirements=requirements,
            serialization_format="cloudpickle",
        )
    else:  # a PythonModel: MLflow infers the signature from the input example
        info = Model.log(
            artifact_path=None,
            name=MODEL_ARTIFACT,
            flavor=mlflow.pyfunc,
            python_model=trained.model,
            run_id=run_id,
            input_example=example,
            pip_requirements=requirements,
        )
    return info


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, unset) environment variables for the block, then restore them exactly."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- registration ----------------------------------------------------------------------------------


def _lineage(params: TrainParams) -> dict[str, str]:
    return {
        "airflow.dag_id": params.dag_id or "",
        "airflow.run_id": params.dag_run_id or "",
        "airflow.task_id": params.task_id or "",
        TRAINING_KEY_TAG: params.training_key or "",
    }


def _version_tags(params: TrainParams, run_id: str, summary: dict[str, Any]) -> dict[str, str]:
    from airflow_ai_provider.runtime.profile import PROFILE_TAG, profile_uri

    tags = {
        **_lineage(params),
        "ai.image": params.image or "",
        "ai.training_data_digest": summary["training_data_digest"],
        "ai.training_data_uri": summary["training_data_uri"],
        "ai.code_reference": params.training_function,
        PROFILE_TAG: profile_uri(run_id),
    }
    return {key: value for key, value in tags.items() if value}


def _next_version(client: Any, name: str) -> str:
    """The version number the registry will most likely give the next version of ``name``."""
    from mlflow.exceptions import MlflowException

    try:
        latest = client.search_model_versions(
            f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
        )
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return "1"
        raise
    return str(int(latest[0].version) + 1) if latest else "1"


def _create_version(
    client: Any, params: TrainParams, model_info: Any, run_id: str, card: ModelCard, summary: dict[str, Any]
) -> Any:
    """Create the registered model if needed, then the version with its tags and description; wait
    until it is ``READY``."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(params.model_name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        params.model_name,
        source=model_info.model_uri,
        run_id=run_id,
        tags=_version_tags(params, run_id, summary),
        description=card.description(),
        model_id=model_info.model_id,
        await_creation_for=params.registration_timeout_s,
    )
    return _wait_ready(client, params.model_name, str(version.version), params.registration_timeout_s)


def _wait_ready(client: Any, name: str, version: str, timeout_s: int) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        current = client.get_model_version(name, version)
        if current.status == "READY":
            return current
        if current.status == "FAILED_REGISTRATION":
            raise JobServiceError(
                f"model {name!r} version {version} failed registration ({current.status_message or 'no message'}): "
                "delete that version and retry the task"
            )
        if time.monotonic() > deadline:
            raise JobServiceError(
                f"model {name!r} version {version} is still {current.status} after {timeout_s}s: retry the task"
            )
        time.sleep(1)


def _find_version(client: Any, params: TrainParams, tracking_uri: str) -> Any | None:
    """The version an earlier try of this training task registered, if any."""
    from mlflow.exceptions import MlflowException

    key = params.training_key or ""
    with _mlflow_errors(f"cannot search versions of model {params.model_name!r}", tracking_uri):
        try:
            if "'" in key:  # not expressible in a filter string: filter here
                found = client.search_model_versions(f"name = '{params.model_name}'")
            else:
                found = client.search_model_versions(
                    f"name = '{params.model_name}' and tags.`{TRAINING_KEY_TAG}` = '{key}'"
                )
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
    mine = [version for version in found if version.tags.get(TRAINING_KEY_TAG) == key]
    return min(mine, key=lambda version: int(version.version)) if mine else None


def _reuse(
    client: Any, params: TrainParams, version: Any, result: JobResult, tracking_uri: str, log: Log
) -> None:
    """Finish what an earlier try started: wait for the version, set the alias, rebuild the result."""
    with _mlflow_errors(f"cannot reuse model {params.model_name!r} version {version.version}", tracking_uri):
        version = _wait_ready(client, params.model_name, str(version.version), params.registration_timeout_s)
        summary = _load_summary(client, version)
        model = client.get_registered_model(params.model_name)
        if str(model.aliases.get(params.alias, "")) != str(version.version):
            client.set_registered_model_alias(params.model_name, params.alias, version.version)
            log(f"alias {params.alias!r} of {params.model_name} now points to version {version.version}")
    _fill_result(result, params, str(version.version), version.run_id, summary, reused=True)


def _load_summary(client: Any, version: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ai-train-") as scratch:
        try:
            path = client.download_artifacts(version.run_id, SUMMARY_ARTIFACT, scratch)
        except Exception:  # no summary (registered by other means): the version's own tags
            tags = version.tags
            return {
                "metrics": {},
                "rows": 0,
                "features": [],
                "label": "",
                "training_data_digest": tags.get("ai.training_data_digest", ""),
                "training_data_uri": tags.get("ai.training_data_uri", ""),
            }
        with open(path) as handle:
            return json.load(handle)


def _fill_result(
    result: JobResult,
    params: TrainParams,
    version: str,
    run_id: str,
    summary: dict[str, Any],
    *,
    reused: bool,
) -> None:
    from airflow_ai_provider.runtime.profile import profile_uri

    result.model = {"name": params.model_name, "version": version, "alias": params.alias}
    result.metrics = dict(summary.get("metrics") or {})
    result.rows_in = int(summary.get("rows") or 0)
    result.input_digest = summary.get("training_data_digest")
    result.details = {
        "model_name": params.model_name,
        "version": version,
        "alias": params.alias,
        "model_uri": f"models:/{params.model_name}/{version}",
        "run_id": run_id,
        "training_data_digest": summary.get("training_data_digest"),
        "rows": result.rows_in,
        "features": list(summary.get("features") or []),
        "label": summary.get("label"),
        "reference_profile_uri": profile_uri(run_id),
        "model_card_artifact": f"runs:/{run_id}/{MODEL_CARD_ARTIFACT}",
        "reused": reused,
    }


def _schema(table: pa.Table) -> dict[str, str]:
    return storage.column_types(table.schema)


def _input_entries(data: storage.InputData) -> list[dict[str, Any]]:
    return [
        {"uri": meta.file.uri, "bytes": meta.file.size, "format": meta.file.format} for meta in data.metas
    ]


@contextmanager
def _mlflow_errors(what: str, tracking_uri: str) -> Iterator[None]:
    """Turn MLflow failures into one-line job errors: retryable when the server is the problem."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except JobError:
        raise
    except MlflowException as err:
        code = getattr(err, "error_code", None)
        if (
            code in MLFLOW_SERVICE_CODES
            or "Max retries exceeded" in str(err)
            or "failed with exception" in str(err)
        ):
            raise mlflow_unavailable(what, tracking_uri, err) from None
        raise JobInputError(f"{what}: {one_line(err)}") from None
    except OSError as err:  # artifact store transport errors
        raise JobServiceError(f"{what}: {one_line(err)}") from None
