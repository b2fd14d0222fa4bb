"""Quality gate: evaluate a challenger model against the current champion before promoting it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider.exceptions import AiProviderConfigError, ModelReferenceError
from airflow_ai_provider.mlflow_registry import pin_alias, pin_model
from airflow_ai_provider.operators.arguments import JobArguments, uri_list
from airflow_ai_provider.operators.base import AiJobOperator
from airflow_ai_provider.runtime.contract import EventKey, Tag
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.params import EvaluateParams
from airflow_ai_provider.runtime.contract.spec import JobSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.mlflow_runs import TaskRun

DEFAULT_CHAMPION_ALIAS = "champion"
DECISION_XCOM_KEY = "decision"


class QualityGateOperator(JobArguments, AiJobOperator):
    """Score a challenger and the current champion on the same holdout data and decide whether the
    challenger may be promoted.

    The job runs in the runtime (``evaluate``): it computes metrics per task type (classification:
    accuracy, f1, roc_auc, log_loss; regression: rmse, mae, r2; both: latency_ms_per_1k_rows),
    checks the challenger against absolute bounds and against the champion, and logs
    ``comparison.json`` and ``comparison.png`` into the task's MLflow run. The task returns the job
    result; ``result["details"]`` holds ``decision`` (``"promote"`` or ``"reject"``), ``reasons``
    (every check with its values), ``task_type``, ``challenger`` and ``champion`` (name, version,
    metrics; ``champion`` is ``None`` when there is none yet), ``thresholds`` and ``checks``. The
    decision is also pushed as XCom key ``decision``, so a ``@task.branch`` can follow it::

        gate = QualityGateOperator(task_id="gate", challenger="churn@challenger",
                                   holdout_uri="s3://data/holdout/", label_column="churned",
                                   min_metrics={"accuracy": 0.75}, max_degradation={"accuracy": 0.01})

        @task.branch
        def route(result):
            return "promote" if result["details"]["decision"] == "promote" else "notify"

        route(gate.output)

    Both references are pinned once per DAG run (recorded in the DAG run's MLflow parent run), so
    the gate and a later promotion task of the same run agree on the versions.

    :param challenger: the model to evaluate: ``name@alias``, ``name/version``, ``name`` (latest)
        or ``models:/...``. (templated)
    :param champion: the model to compare with; default ``<challenger name>@champion``, and when
        that alias does not exist yet there is no champion (absolute thresholds only). An explicit
        reference that does not resolve is an error. (templated)
    :param holdout_uri: labelled holdout data, Parquet or CSV, a file, folder or glob, local or
        ``s3://``; or a list. (templated)
    :param label_column: the holdout column with the true label. (templated)
    :param task_type: ``classification``, ``regression`` or ``None`` to infer it from the label;
        kept as ``model_task_type`` (``BaseOperator.task_type`` is the operator class name). (templated)
    :param min_metrics: lowest acceptable challenger metrics, e.g. ``{"accuracy": 0.75}``. (templated)
    :param max_metrics: highest acceptable challenger metrics, e.g. ``{"log_loss": 0.5}``. (templated)
    :param max_degradation: how much worse than the champion the challenger may be per metric, e.g.
        ``{"accuracy": 0.01}`` (a drop; a rise for lower-is-better metrics). (templated)
    :param fail_on_reject: fail the task (no retry) when the decision is ``reject``; by default the
        task succeeds either way and the DAG branches on the decision.
    :param input_format: ``parquet`` or ``csv``; default from the file extension.
    :param skops_trusted_types: extra trusted types for scikit-learn models saved with skops.
    :param scratch_dir: folder for the downloaded models; default ``$TMPDIR``.

    Thresholds are checked with the runtime's own check when the DAG is parsed (literal values) and
    again once templates render: each must be a finite number (a numeric string converts) on a
    metric the evaluation computes (for ``task_type`` when given).
    """

    job_type = "evaluate"
    job_params_class = EvaluateParams
    job_arguments = (
        "label_column",
        "task_type",
        "min_metrics",
        "max_metrics",
        "max_degradation",
        "input_format",
        "skops_trusted_types",
        "scratch_dir",
    )
    job_attributes: ClassVar[dict[str, str]] = {"task_type": "model_task_type"}
    uri_arguments = ("holdout_uri",)
    model_arguments = ("challenger", "champion")
    template_fields: Sequence[str] = (
        *AiJobOperator.template_fields,
        "challenger",
        "champion",
        "holdout_uri",
        "label_column",
        "model_task_type",
        "min_metrics",
        "max_metrics",
        "max_degradation",
    )

    def __init__(
        self,
        *,
        challenger: str,
        holdout_uri: str | list[str],
        label_column: str,
        champion: str | None = None,
        task_type: str | None = None,
        min_metrics: dict[str, float] | None = None,
        max_metrics: dict[str, float] | None = None,
        max_degradation: dict[str, float] | None = None,
        fail_on_reject: bool = False,
        input_format: str | None = None,
        skops_trusted_types: list[str] | None = None,
        scratch_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_job_arguments(
            challenger=challenger,
            champion=champion,
            holdout_uri=holdout_uri,
            label_column=label_column,
            model_task_type=task_type,  # BaseOperator.task_type is the operator class name
            min_metrics=min_metrics,
            max_metrics=max_metrics,
            max_degradation=max_degradation,
            fail_on_reject=fail_on_reject,
            input_format=input_format,
            skops_trusted_types=skops_trusted_types,
            scratch_dir=scratch_dir,
        )

    def job_values(self) -> dict[str, Any]:
        return {**super().job_values(), "task_type": self.model_task_type or None}

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        params = self.job_params()
        try:
            challenger = pin_model(self.mlflow_hook, self.challenger, run.parent_run_id)
            champion = self._pin_champion(challenger, run)
        except ModelReferenceError as err:
            raise AirflowFailException(str(err)) from None  # a wrong reference does not heal by retrying
        self.log.info(
            "Challenger %s pinned to version %s; champion: %s",
            self.challenger,
            challenger.version,
            f"version {champion.version}" if champion else "none yet (absolute thresholds only)",
        )
        return JobSpec(
            job=self.job_type,
            model=challenger,
            baseline_model=champion,
            inputs=uri_list(self.holdout_uri),
            mlflow=self.mlflow_ref(run),
            params=params,
        )

    def _pin_champion(self, challenger: ModelReference, run: TaskRun) -> ModelReference | None:
        if self.champion:
            return pin_model(self.mlflow_hook, self.champion, run.parent_run_id)
        return pin_alias(self.mlflow_hook, challenger.name, DEFAULT_CHAMPION_ALIAS, run.parent_run_id)

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        details = result.get("details", {})
        challenger, champion = details.get("challenger") or {}, details.get("champion") or {}
        return {
            Tag.DECISION: str(details.get("decision", "")),
            "ai.task_type": str(details.get("task_type", "")),
            Tag.CHALLENGER_NAME: str(challenger.get("name", "")),
            Tag.CHALLENGER_VERSION: str(challenger.get("version", "")),
            Tag.CHAMPION_VERSION: str(champion.get("version", "none")),
            Tag.INPUT_DIGEST: str(result.get("input_digest", "")),
        }

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        details = result.get("details", {})
        challenger, champion = details.get("challenger") or {}, details.get("champion") or {}
        return {
            "decision": details.get("decision"),
            EventKey.MODEL_NAME: challenger.get("name"),
            "challenger_version": challenger.get("version"),
            "champion_version": champion.get("version"),
            EventKey.MLFLOW_RUN_ID: run.run_id,
            EventKey.INPUT_DIGEST: result.get("input_digest"),
        }

    def on_job_success(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        """Push the decision; fail the task on *reject* when ``fail_on_reject`` is set."""
        details = result.get("details", {})
        decision = details.get("decision")
        context["ti"].xcom_push(key=DECISION_XCOM_KEY, value=decision)
        reasons = "; ".join(details.get("reasons", []))
        self.log.info("Decision for %s: %s (%s)", self.challenger, decision, reasons)
        if decision == "reject" and self.fail_on_reject:
            name = ModelReference.parse(self.challenger, AiProviderConfigError).name
            version = (details.get("challenger") or {}).get("version")
            raise AirflowFailException(f"challenger {name} version {version} rejected: {reasons}")
        return result


class ModelValidationOperator(QualityGateOperator):
    """Deprecated name of :class:`QualityGateOperator`; it works the same and warns when constructed."""

    def __init__(self, **kwargs: Any) -> None:
        warnings.warn(
            "ModelValidationOperator is deprecated: use QualityGateOperator "
            "(from airflow_ai_provider.operators.quality_gate import QualityGateOperator)",
            DeprecationWarning,
            stacklevel=2,  # the DAG file that constructs it
        )
        super().__init__(**kwargs)
