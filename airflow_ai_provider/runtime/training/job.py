"""The ``train`` job: run the user's training function, log its model and register it as a new version.

The training function and what it gets and returns are described in :mod:`.context`. The job reads
and checks the training data (:mod:`.data`), calls the function (:mod:`.user_code`), logs the model
into the task's MLflow run (``spec.mlflow.run_id``) with an inferred signature, an input example,
pinned pip requirements, the hyper-parameters as params, the metrics and the training data as a
dataset input; logs the reference profile of the training data (``reference_profile.json``) and a
model card (``model_card.md``) (:mod:`.model_logging`, :mod:`.model_card`); registers a new version
with lineage tags and the model card as its description, waits until it is ``READY`` and only then
points the alias (default ``challenger``) at it (:mod:`.registration`).

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
no model or returns something unsupported fails the job with :class:`JobInputError` (no retry: the
same code on the same data fails again); its traceback goes to the task log.

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

import time
from typing import Any

from airflow_ai_provider.runtime import Log, log_line, tracking
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import TrainParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.memory import peak_rss_mb
from airflow_ai_provider.runtime.training import data as training_data
from airflow_ai_provider.runtime.training import registration, user_code
from airflow_ai_provider.runtime.training.context import TrainingContext
from airflow_ai_provider.runtime.training.model_card import MODEL_CARD_ARTIFACT, training_card
from airflow_ai_provider.runtime.training.model_logging import log_training


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Run one ``train`` job and return its result (raises :class:`JobError` on failure)."""
    started = time.time()
    params = TrainParams.from_spec(spec.params)
    run_id = spec.mlflow.run_id
    if not run_id:
        raise JobInputError("train job spec has no mlflow.run_id: the MLflow run the model is logged into")
    tracking.probe_servers(spec.mlflow)
    tracking.configure_mlflow(spec.mlflow)
    client = tracking.client(spec.mlflow)
    result = JobResult(job=spec.job, status="running", input_source=",".join(spec.inputs))

    tracking_uri = spec.mlflow.tracking_uri
    existing = registration.find_version(client, params, tracking_uri) if params.training_key else None
    if existing is not None:
        log(
            f"model {params.model_name} version {existing.version} was registered by an earlier try of "
            f"this task (training key {params.training_key}): reusing it, not training again"
        )
        version, summary = registration.reuse(client, params, existing, tracking_uri, log)
        _fill_result(result, params, str(version.version), version.run_id, summary, reused=True)
    else:
        _train_and_register(spec, params, client, run_id, result, log)
    ended = time.time()
    result.status = "success"
    result.timings = {"started_at": started, "ended_at": ended, **result.timings}
    result.metrics.setdefault("duration_s", round(ended - started, 3))
    result.metrics.setdefault("peak_rss_mb", peak_rss_mb())
    return result


def _train_and_register(
    spec: JobSpec, params: TrainParams, client: Any, run_id: str, result: JobResult, log: Log
) -> None:
    """Train, log and register a new version; fill ``result`` with it."""
    function = user_code.load_function(params.training_function)
    training = training_data.read(spec.inputs, params)
    table = training.table
    log(
        f"read {table.num_rows} rows x {table.num_columns} columns from {len(training.data.metas)} file(s) in "
        f"{training.read_s:.1f}s; label {params.label_column!r}, {len(training.features)} features"
    )

    step = time.perf_counter()
    context = TrainingContext(
        data=training.frame,
        table=table,
        label=params.label_column,
        features=list(training.features),
        params=dict(params.hyperparameters),
        log=log,
        run_id=run_id,
    )
    trained = user_code.call(function, context, params.training_function)
    train_s = time.perf_counter() - step
    log(f"{params.training_function} returned a {trained.flavor} model in {train_s:.1f}s: {trained.metrics}")

    step = time.perf_counter()
    model_info = log_training(client, spec, params, trained, training, log)
    log_s = time.perf_counter() - step

    summary = {
        "metrics": trained.metrics,
        "rows": table.num_rows,
        "features": training.features,
        "label": params.label_column,
        "training_data_digest": training.data.digest,
        "training_data_uri": ",".join(spec.inputs),
        "flavor": trained.flavor,
    }
    label = training_data.label_summary(training.frame[params.label_column])
    card = training_card(params, summary, label, run_id)

    step = time.perf_counter()
    version = registration.register(
        client, params, model_info, run_id, card, summary, spec.mlflow.tracking_uri
    )
    register_s = time.perf_counter() - step
    log(f"registered {params.model_name} version {version} (alias {params.alias!r}) in {register_s:.1f}s")
    _fill_result(result, params, version, run_id, summary, reused=False)
    result.inputs = training_data.input_entries(training.data)
    result.input_schema = training_data.schema(table)
    result.timings = {
        "read_s": round(training.read_s, 3),
        "train_s": round(train_s, 3),
        "log_s": round(log_s, 3),
        "register_s": round(register_s, 3),
    }


def _fill_result(
    result: JobResult,
    params: TrainParams,
    version: str,
    run_id: str,
    summary: dict[str, Any],
    *,
    reused: bool,
) -> None:
    """The model, metrics, digest and details of the result, for a fresh or a reused version."""
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
