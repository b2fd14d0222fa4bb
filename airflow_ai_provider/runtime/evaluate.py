"""The ``evaluate`` job: the quality gate between a challenger model and the current champion.

Both models (``spec.model``, the challenger, and ``spec.baseline_model``, the champion or ``None``)
are scored on the same holdout data (``spec.inputs``, Parquet or CSV, ``file://`` or ``s3://``),
which is read whole into memory: a holdout is a sample, not the full data set. The decision is
``promote`` when every check passes, else ``reject``; every check is reported in ``reasons`` with its
values. ``comparison.json`` and ``comparison.png`` (one bar chart per metric, challenger next to
champion) are logged into the task's MLflow run (``spec.mlflow.run_id``) when there is one.

Parameters (``spec.params``):

- ``label_column`` (str, required): the true label in the holdout.
- ``task_type`` (``"classification"``, ``"regression"`` or none): when none, inferred from the
  label: integer, boolean or string with at most 20 distinct values is classification, floating
  point with more than 20 is regression; anything else needs ``task_type``.
- ``min_metrics`` / ``max_metrics`` (dict metric -> number): absolute bounds on challenger metrics.
- ``max_degradation`` (dict metric -> number >= 0): how much worse than the champion the challenger
  may be; a drop for higher-is-better metrics, a rise for lower-is-better ones (errors, latency).
- ``input_format``, ``skops_trusted_types``, ``scratch_dir``: as for ``infer``.

Metrics (``sklearn.metrics``): classification ``accuracy``, ``f1`` (binary for two classes, with
the model's second class as positive, else weighted), ``roc_auc`` and ``log_loss`` (only when the
model's raw estimator has ``predict_proba``); regression ``rmse``, ``mae``, ``r2``; both
``latency_ms_per_1k_rows`` (one ``predict`` call over the holdout). A threshold on a metric that
could not be computed rejects, naming why.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_ai_provider.runtime import log_line, storage
from airflow_ai_provider.runtime import model as models
from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.params import EvaluateParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec, MlflowRef
from airflow_ai_provider.runtime.contract.timeouts import mlflow_unavailable
from airflow_ai_provider.runtime.memory import peak_rss_mb

Log = Callable[[str], None]
MAX_CLASSES = 20
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "latency_ms_per_1k_rows"}
COMPARISON_ARTIFACT = "comparison.json"
COMPARISON_PLOT = "comparison.png"


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


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Evaluate the challenger (and the champion) on the holdout and decide; raise JobError on failure."""
    started = time.time()
    params = EvaluateParams.from_spec(spec.params)
    storage.check_scratch_dir(params.scratch_dir)
    data = storage.InputData.open(spec.inputs, params.input_format)
    where = ", ".join(spec.inputs)
    if params.label_column not in data.columns:
        message = (
            f"holdout {where} has no label column {params.label_column!r} (columns: {', '.join(data.columns)}): "
            "set label_column to the column holding the true label"
        )
        raise JobInputError(with_look_alikes(message, [params.label_column], data.columns))
    refs = [spec.model, *([spec.baseline_model] if spec.baseline_model else [])]
    with tempfile.TemporaryDirectory(prefix="ai-eval-", dir=params.scratch_dir) as scratch:
        loaded, features = [], []
        for index, ref in enumerate(refs):
            begin = time.perf_counter()
            model = models.load_model(
                ref, spec.mlflow, os.path.join(scratch, str(index)), params.skops_trusted_types
            )
            role = "challenger" if index == 0 else "champion"
            log(f"loaded {role} {ref.name} version {ref.version} in {time.perf_counter() - begin:.1f}s")
            features.append(
                models.check_columns(
                    data.schema, model.input_schema(), [params.label_column], "ignore", where
                )
            )
            loaded.append(model)
        columns = list(dict.fromkeys([name for f in features for name in f.names] + [params.label_column]))
        table = data.read_table(columns)
        log(
            f"holdout: {table.num_rows} rows, {len(columns) - 1} feature columns from {len(data.metas)} files"
        )
        label = table.column(params.label_column)
        missing = storage.missing_values(label)
        if missing:
            raise JobInputError(
                f"label column {params.label_column!r} of holdout {where} has {missing} missing value(s) "
                f"(null or NaN) of {table.num_rows} rows: drop those rows from the holdout"
            )
        task_type = params.task_type or infer_task_type(label, params.label_column)
        params.check_metric_names(task_type)
        truth = label.to_numpy(zero_copy_only=False)
        scored = [
            _score(ref, model, f, table, truth, task_type, log)
            for ref, model, f in zip(refs, loaded, features, strict=True)
        ]
    challenger, champion = scored[0], (scored[1] if len(scored) > 1 else None)
    decision, reasons, checks = decide(challenger, champion, params)
    log(f"decision: {decision}: {'; '.join(reasons)}")

    details = {
        "decision": decision,
        "reasons": reasons,
        "task_type": task_type,
        "challenger": challenger.summary(),
        "champion": champion.summary() if champion else None,
        "thresholds": {
            "min_metrics": params.min_metrics,
            "max_metrics": params.max_metrics,
            "max_degradation": params.max_degradation,
        },
        "checks": checks,
        "holdout": {"uris": list(spec.inputs), "rows": table.num_rows, "digest": data.digest},
    }
    if spec.mlflow.run_id:
        log_report(spec.mlflow, {COMPARISON_ARTIFACT: details}, {COMPARISON_PLOT: comparison_figure(details)})
        log(f"logged {COMPARISON_ARTIFACT} and {COMPARISON_PLOT} to MLflow run {spec.mlflow.run_id}")

    ended = time.time()
    result = JobResult(job=spec.job, status="success", model=loaded[0].info, details=details)
    result.rows_in = table.num_rows
    result.input_source = ",".join(spec.inputs)
    result.input_digest = data.digest
    result.input_schema = storage.column_types(data.schema)
    result.timings = {"started_at": started, "ended_at": ended}
    result.metrics = {f"challenger_{key}": value for key, value in challenger.metrics.items()}
    if champion:
        result.metrics.update({f"champion_{key}": value for key, value in champion.metrics.items()})
    result.metrics.update(duration_s=round(ended - started, 3), peak_rss_mb=peak_rss_mb())
    return result


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


def _score(
    ref: ModelReference,
    model: models.LoadedModel,
    features: models.Features,
    table: pa.Table,
    truth: Any,
    task_type: str,
    log: Log,
) -> Scored:
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
    shown = ", ".join(f"{key} {_fmt(value)}" for key, value in metrics.items())
    log(
        f"{ref.name} version {ref.version}: {shown}"
        + (f" (skipped: {', '.join(skipped)})" if skipped else "")
    )
    return Scored(ref, model.info, metrics, skipped)


def _classification(model: models.LoadedModel, frame: Any, truth: Any, predicted: Any) -> tuple[dict, dict]:
    import numpy as np
    from sklearn import metrics as skm

    estimator = _raw_model(model)
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


def _raw_model(model: models.LoadedModel) -> Any:
    try:
        return model.pyfunc.get_raw_model()
    except Exception:  # flavors without a raw model
        return None


def _fitted_order(estimator: Any, frame: Any) -> list[str]:
    fitted = getattr(estimator, "feature_names_in_", None)
    return [str(name) for name in fitted] if fitted is not None else list(frame.columns)


# --- the decision ----------------------------------------------------------------------------------


def decide(
    challenger: Scored, champion: Scored | None, params: EvaluateParams
) -> tuple[str, list[str], list]:
    """Check the challenger against the thresholds and the champion.

    :return: ``("promote" | "reject", reasons, checks)``: the reasons are the failed checks when
        rejecting, every check when promoting; each check is a dict with its values.
    """
    checks: list[dict[str, Any]] = []
    mine = challenger.metrics

    def missing(metric: str, against: str, model: Scored) -> dict[str, Any]:
        why = model.skipped.get(metric, "not computed")
        who = f"{model.ref.name} v{model.ref.version}"
        return {"metric": metric, "kind": against, "passed": False,
                "reason": f"{metric} of {who} could not be computed ({why}): cannot check {against}"}  # fmt: skip

    for metric, bound in params.min_metrics.items():
        if metric not in mine:
            checks.append(missing(metric, f"minimum {_fmt(bound)}", challenger))
            continue
        passed = mine[metric] >= bound
        sign = ">=" if passed else "<"
        checks.append({"metric": metric, "kind": "minimum", "value": mine[metric], "threshold": bound,
                       "passed": passed, "reason": f"{metric} {_fmt(mine[metric])} {sign} minimum {_fmt(bound)}"})  # fmt: skip
    for metric, bound in params.max_metrics.items():
        if metric not in mine:
            checks.append(missing(metric, f"maximum {_fmt(bound)}", challenger))
            continue
        passed = mine[metric] <= bound
        sign = "<=" if passed else ">"
        checks.append({"metric": metric, "kind": "maximum", "value": mine[metric], "threshold": bound,
                       "passed": passed, "reason": f"{metric} {_fmt(mine[metric])} {sign} maximum {_fmt(bound)}"})  # fmt: skip
    notes: list[str] = []
    if champion is None:
        notes.append("no champion yet: absolute thresholds only")
    else:
        tag = f"champion v{champion.ref.version}"
        if not params.max_degradation:
            notes.append(f"compared with {tag}: no max_degradation set, so no check against it")
        for metric, allowed in params.max_degradation.items():
            for model in (challenger, champion):
                if metric not in model.metrics:
                    checks.append(missing(metric, f"degradation against {tag}", model))
                    break
            else:
                checks.append(_degradation(metric, mine[metric], champion.metrics[metric], allowed, tag))
    if not checks and champion is None:
        notes.append("no thresholds set")
    failed = [check["reason"] for check in checks if not check["passed"]]
    if failed:
        return "reject", failed + notes, checks
    return "promote", notes + [check["reason"] for check in checks], checks


def _degradation(metric: str, value: float, reference: float, allowed: float, tag: str) -> dict[str, Any]:
    lower = metric in LOWER_IS_BETTER
    worse_by = (value - reference) if lower else (reference - value)
    passed = worse_by <= allowed + 1e-12
    direction = ("above" if lower else "below") if worse_by > 0 else ("below" if lower else "above")
    reason = (
        f"{metric} {_fmt(value)} is {_fmt(abs(worse_by))} {direction} {tag} ({_fmt(reference)}), "
        f"allowed {_fmt(allowed)}"
    )
    if worse_by == 0:
        reason = f"{metric} {_fmt(value)} equals {tag} ({_fmt(reference)}), allowed {_fmt(allowed)}"
    return {"metric": metric, "kind": "degradation", "value": value, "champion": reference,
            "threshold": allowed, "passed": passed, "reason": reason}  # fmt: skip


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.1f}"


# --- report ----------------------------------------------------------------------------------------


def comparison_figure(details: dict[str, Any]) -> Any:
    """One small bar chart per metric: challenger next to champion (when there is one)."""
    from matplotlib.figure import Figure

    challenger, champion = details["challenger"], details["champion"]
    names = list(challenger["metrics"])
    figure = Figure(figsize=(max(3.0 * len(names), 6.0), 3.6), layout="constrained")
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        labels = [f"challenger v{challenger['version']}"]
        values = [challenger["metrics"][name]]
        if champion and name in champion["metrics"]:
            labels.append(f"champion v{champion['version']}")
            values.append(champion["metrics"][name])
        bars = ax.bar(labels, values, color=["#4c72b0", "#999999"][: len(values)])
        ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=8)
        better = "lower" if name in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{name}\n({better} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    figure.suptitle(f"{challenger['name']}: {details['decision']}", fontsize=11)
    return figure


def log_report(mlflow_ref: MlflowRef, documents: dict[str, Any], figures: dict[str, Any]) -> None:
    """Log JSON ``documents`` and matplotlib ``figures`` (PNG) into the task's MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_ref.tracking_uri, registry_uri=mlflow_ref.registry_uri)
    try:
        for name, document in documents.items():
            client.log_text(
                mlflow_ref.run_id, json.dumps(document, indent=2, sort_keys=True, default=str), name
            )
        with tempfile.TemporaryDirectory(prefix="ai-report-") as folder:
            for name, figure in figures.items():
                path = os.path.join(folder, name)
                figure.savefig(path, dpi=100)
                client.log_artifact(mlflow_ref.run_id, path)
    except Exception as err:  # HTTP and artifact store errors
        what = f"cannot log {', '.join([*documents, *figures])} to MLflow run {mlflow_ref.run_id}"
        raise mlflow_unavailable(what, mlflow_ref.tracking_uri, err) from None
