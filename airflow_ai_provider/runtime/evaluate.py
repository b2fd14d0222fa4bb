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

Metrics: see :mod:`~airflow_ai_provider.runtime.scoring`. A threshold on a metric that could not be
computed rejects, naming why.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

from airflow_ai_provider.runtime import Log, log_line, reports, storage
from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import EvaluateParams
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.models.features import check_columns
from airflow_ai_provider.runtime.models.loading import load_model
from airflow_ai_provider.runtime.scoring import LOWER_IS_BETTER, Scored, infer_task_type, score

COMPARISON_ARTIFACT = "comparison.json"
COMPARISON_PLOT = "comparison.png"


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
            model = load_model(
                ref, spec.mlflow, os.path.join(scratch, str(index)), params.skops_trusted_types
            )
            role = "challenger" if index == 0 else "champion"
            log(f"loaded {role} {ref.name} version {ref.version} in {time.perf_counter() - begin:.1f}s")
            features.append(
                check_columns(data.schema, model.input_schema(), [params.label_column], "ignore", where)
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
        scored = []
        for ref, model, f in zip(refs, loaded, features, strict=True):
            scored.append(score(ref, model, f, table, truth, task_type))
            _log_scores(scored[-1], log)
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
    reports.log_report(
        spec, {COMPARISON_ARTIFACT: details}, {COMPARISON_PLOT: lambda: comparison_figure(details)}, log
    )
    metrics = {f"challenger_{key}": value for key, value in challenger.metrics.items()}
    if champion:
        metrics.update({f"champion_{key}": value for key, value in champion.metrics.items()})
    return reports.whole_input_result(
        spec, data, started, table.num_rows, model=loaded[0].info, details=details, metrics=metrics
    )


def _log_scores(scored: Scored, log: Log) -> None:
    shown = ", ".join(f"{key} {_fmt(value)}" for key, value in scored.metrics.items())
    skipped = f" (skipped: {', '.join(scored.skipped)})" if scored.skipped else ""
    log(f"{scored.ref.name} version {scored.ref.version}: {shown}{skipped}")


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

    # Each absolute bound: its kind, the thresholds, and the signs of a pass and of a failure.
    bounds = (("minimum", params.min_metrics, ">=", "<"), ("maximum", params.max_metrics, "<=", ">"))
    for kind, thresholds, holds, fails in bounds:
        for metric, bound in thresholds.items():
            if metric not in mine:
                checks.append(missing(metric, f"{kind} {_fmt(bound)}", challenger))
                continue
            passed = mine[metric] >= bound if kind == "minimum" else mine[metric] <= bound
            sign = holds if passed else fails
            checks.append({"metric": metric, "kind": kind, "value": mine[metric], "threshold": bound,
                           "passed": passed, "reason": f"{metric} {_fmt(mine[metric])} {sign} {kind} {_fmt(bound)}"})  # fmt: skip
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
