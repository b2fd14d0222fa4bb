"""Promotion with optional human approval, and its compensation: rollback.

Both only change registry metadata (aliases and version tags), so they run in the Airflow worker in
either execution mode; there is nothing to start a pod for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Asset, BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_ai_provider.alias_ledger import AliasMove, move_alias
from airflow_ai_provider.exceptions import AiProviderConfigError, ModelReferenceError
from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.hooks.mlflow_entities import RunTag
from airflow_ai_provider.links import MlflowRunLink
from airflow_ai_provider.mlflow_registry import (
    PREVIOUS_ALIAS_SUFFIX,
    check_alias_name,
    check_promotion_alias,
    pin_alias,
    pin_model,
    resolve_model,
)
from airflow_ai_provider.mlflow_runs import TaskRun, finish_task_run
from airflow_ai_provider.openlineage import OpenLineageMixin, promotion_lineage
from airflow_ai_provider.operators.arguments import is_templated
from airflow_ai_provider.operators.task_run import MlflowTaskRunMixin
from airflow_ai_provider.runtime.contract import EventKey, Tag
from airflow_ai_provider.runtime.contract.model_reference import ModelReference

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class ModelApprovalOperator(ApprovalOperator):
    """Ask a human to approve a promotion; no answer within ``response_timeout`` means *Reject*.

    On *Reject* (chosen or by timeout) the downstream promotion is skipped, so a run never hangs and
    never promotes without a yes. The response (who, when, comment) reaches
    :class:`PromoteModelOperator` through XCom and is recorded on the promoted version.

    :param response_timeout: how long to wait for an answer; default 24 hours.
    :param kwargs: ``ApprovalOperator``'s arguments, among them ``subject``, the question shown in the
        Airflow UI (templated), and ``body``, Markdown details such as the quality gate's reasons
        (templated).
    """

    def __init__(self, *, response_timeout: timedelta = timedelta(hours=24), **kwargs: Any) -> None:
        kwargs.setdefault("defaults", [ApprovalOperator.REJECT])
        kwargs.setdefault("params", {"comment": ""})
        super().__init__(response_timeout=response_timeout, **kwargs)


class PromoteModelOperator(OpenLineageMixin, MlflowTaskRunMixin, BaseOperator):
    """Move an alias (default ``champion``) to the challenger version pinned for this DAG run.

    The move happens only if the alias still points where this DAG run saw it (the version pinned
    when the quality gate or this task first resolved it, or nowhere if it pointed nowhere then,
    see :func:`~airflow_ai_provider.mlflow_registry.pin_alias`): a concurrent promotion makes this task
    fail clearly instead of silently overwriting (see
    :func:`~airflow_ai_provider.alias_ledger.move_alias`). The promoted version gets tags saying
    who approved it, why and when, and from which DAG run, once the alias points at it; the replaced
    version stays reachable as the alias ``<alias>_previous`` and in this task's result, for
    :class:`RollbackModelOperator`.

    Every error is one line. Bad input (an alias MLflow refuses or reserves, an unknown model or
    version, a missing approval task) and a lost race (:class:`ConcurrentPromotionError`) fail the
    task without a retry and write nothing; a literal alias or model reference is checked when the
    DAG file is parsed, a templated one when the task starts. An unreachable MLflow is retried.

    :param model: challenger reference, e.g. ``churn@challenger`` or ``churn/7``. (templated)
    :param alias: alias to move. (templated)
    :param reason: why the model is promoted, recorded on the version. (templated)
    :param approval_task_id: a :class:`ModelApprovalOperator` upstream; its answer is required
        (anything but *Approve* skips the promotion) and recorded; empty means no approval step. (templated)
    :param mlflow_conn_id: MLflow connection.
    :param experiment_name: MLflow experiment for the task's run; default the connection's
        ``experiment_name``, then ``airflow/<dag_id>`` (as the AI job operators).
    """

    template_fields: Sequence[str] = ("model", "alias", "reason", "approval_task_id")
    operator_extra_links = (MlflowRunLink(),)
    action = "promote"

    def __init__(
        self,
        *,
        model: str,
        alias: str = "champion",
        reason: str | None = None,
        approval_task_id: str | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        experiment_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 2)
        kwargs.setdefault("retry_delay", timedelta(seconds=30))
        super().__init__(**kwargs)
        self.model = model
        self.alias = alias
        self.reason = reason
        self.approval_task_id = approval_task_id
        self.mlflow_conn_id = mlflow_conn_id
        self.experiment_name = experiment_name
        self.check_arguments(rendered=False)

    def check_arguments(self, *, rendered: bool) -> None:
        """Refuse a bad alias or model reference: literal ones at DAG parse, all once rendered.

        :raises AiProviderConfigError: one line naming the argument.
        """
        if rendered or not is_templated(self.alias):
            check_promotion_alias(self.alias)
        if self.model and (rendered or not is_templated(self.model)):
            ModelReference.parse(self.model, AiProviderConfigError)

    def _check_upstream_task(self, context: Context, argument: str, task_id: str | None) -> None:
        if task_id and task_id not in context["dag"].task_ids:
            raise AiProviderConfigError(
                f"{argument}={task_id!r} is not a task of DAG {context['dag'].dag_id!r}: name the task "
                "whose result this one reads"
            )

    def plan_move(self, context: Context, run: TaskRun) -> tuple[str, str | None, str | None]:
        """Return (model name, version the alias must point to now, version to point it to)."""
        hook = self.mlflow_hook
        challenger = pin_model(hook, self.model, run.parent_run_id)
        # As the quality gate saw it; "no champion" is pinned too, so a champion that appears
        # meanwhile makes the move fail instead of being replaced unseen.
        seen = pin_alias(hook, challenger.name, self.alias, run.parent_run_id)
        return challenger.name, seen.version if seen else None, challenger.version

    def _approval(self, context: Context) -> dict[str, str]:
        if not self.approval_task_id:
            return {}
        answer = context["ti"].xcom_pull(task_ids=self.approval_task_id)
        if answer is not None and not (isinstance(answer, dict) and "chosen_options" in answer):
            raise AiProviderConfigError(
                f"approval_task_id={self.approval_task_id!r} returned {type(answer).__name__}, not an "
                "approval answer: point it at a ModelApprovalOperator"
            )
        if not answer or answer.get("chosen_options") != [ApprovalOperator.APPROVE]:
            raise AirflowSkipException(f"{self.action} not approved in task {self.approval_task_id!r}")
        user = answer.get("responded_by_user") or {}
        return {
            Tag.APPROVED_BY: str(user.get("name") or user.get("id") or "unknown"),
            Tag.APPROVED_AT: str(answer.get("responded_at", "")),
            Tag.APPROVAL_COMMENT: str((answer.get("params_input") or {}).get("comment", "")),
        }

    def check_rendered_arguments(self, context: Context) -> None:
        """Check the rendered arguments before anything is written."""
        self.check_arguments(rendered=True)
        self._check_upstream_task(context, "approval_task_id", self.approval_task_id)

    def preflight(self) -> None:
        """Refuse an unknown model, alias or version before the task's MLflow run is booked."""
        resolve_model(self.mlflow_hook, self.model)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_rendered_arguments(context)
        hook = self.mlflow_hook
        approval = self._approval(context)
        with hook.errors(f"{self.action} of {self.model or 'model'}@{self.alias}"):
            self.preflight()
            return self._execute(context, approval)

    def _execute(self, context: Context, approval: dict[str, str]) -> dict[str, Any]:
        hook = self.mlflow_hook
        ti = context["ti"]
        who = self.task_identity(context, {Tag.JOB: self.action})
        run = self.book_task_run(context, who)
        with self.guarded_task_run(run, who):
            name, expected, target = self.plan_move(context, run)
            tags = {**self.target_tags(expected, f"{ti.dag_id}/{ti.run_id}"), **approval}
            self.log.info("Moving %s@%s from version %s to %s", name, self.alias, expected, target)
            claimant = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
            if who.map_index >= 0:
                claimant = f"{claimant}[{who.map_index}]"
            if not move_alias(hook, AliasMove(name, self.alias, expected, target, claimant), tags):
                self.log.info("An earlier try of this task already moved %s@%s", name, self.alias)
            self.after_move(name, expected, f"{ti.dag_id}/{ti.run_id}")
            result = {
                EventKey.MODEL_NAME: name,
                "alias": self.alias,
                "version": target,
                EventKey.MODEL_VERSION: target,  # the key every model event carries
                "previous_version": expected,
                "action": self.action,
                EventKey.MLFLOW_RUN_ID: run.run_id,
                "model_run_id": self._version_run_id(name, target),
                **{key.removeprefix("ai."): value for key, value in approval.items()},
            }
            with hook.client() as client:
                client.log_batch(
                    run.run_id, tags=[RunTag(f"ai.{key}", str(value)) for key, value in result.items()]
                )
            for outlet in self.outlets or []:
                if isinstance(outlet, Asset):
                    context["outlet_events"][outlet].extra = result
            finish_task_run(hook, run, who, succeeded=True)
            self.remember_lineage(run, result)
            return result

    def lineage_from_record(self, run: TaskRun, result: dict[str, Any], dag_id: str) -> OperatorLineage:
        """The model version the alias now points at, with the task's MLflow run."""
        return promotion_lineage(
            result, run, self.mlflow_hook.task_experiment_name(self.experiment_name, dag_id)
        )

    def target_tags(self, replaced: str | None, dag_run: str) -> dict[str, str]:
        """Tags recorded on the version the alias moves to."""
        return {
            Tag.PROMOTED_AT: datetime.now(timezone.utc).isoformat(),
            Tag.PROMOTED_BY_DAG_RUN: dag_run,
            Tag.PROMOTION_REASON: self.reason or "",
            Tag.REPLACED_VERSION: replaced or "none",
        }

    def after_move(self, name: str, replaced: str | None, dag_run: str) -> None:
        """Keep the replaced version reachable as ``<alias>_previous`` for a later rollback."""
        if replaced is not None:
            with self.mlflow_hook.client() as client:
                client.set_registered_model_alias(name, f"{self.alias}{PREVIOUS_ALIAS_SUFFIX}", replaced)

    def _version_run_id(self, name: str, version: str | None) -> str | None:
        if version is None:
            return None
        with self.mlflow_hook.client() as client:
            return client.get_model_version(name, version).run_id


class RollbackModelOperator(PromoteModelOperator):
    """Undo this DAG run's promotion (compensation): point the alias back to the replaced version.

    Put it after the post-promotion check with ``trigger_rule="one_failed"``: it reads what the
    promotion task moved and moves it back, with the same guard against concurrent changes. If
    there was no previous version, the alias is removed. The rolled-back version is tagged with the
    reason. If the promotion did not happen (skipped, rejected), there is nothing to undo and the
    task skips.

    :param promote_task_id: the :class:`PromoteModelOperator` whose move to undo.
    :param model: registered model name (only for the record; the promote task's result wins).
    """

    action = "rollback"

    def __init__(self, *, promote_task_id: str, model: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("reason", "post-promotion check failed")
        super().__init__(model=model, **kwargs)
        self.promote_task_id = promote_task_id

    def check_rendered_arguments(self, context: Context) -> None:
        super().check_rendered_arguments(context)
        self._check_upstream_task(context, "promote_task_id", self.promote_task_id)

    def preflight(self) -> None:
        """Nothing to resolve: what to undo comes from the promotion task's result."""

    def plan_move(self, context: Context, run: TaskRun) -> tuple[str, str | None, str | None]:
        promoted = context["ti"].xcom_pull(task_ids=self.promote_task_id)
        if not promoted or promoted.get("action") != "promote":
            raise AirflowSkipException(
                f"task {self.promote_task_id!r} promoted nothing: nothing to roll back"
            )
        if (
            self.model
            and ModelReference.parse(self.model, AiProviderConfigError).name != promoted["model_name"]
        ):
            raise ModelReferenceError(
                f"rollback of {self.model!r} but task {self.promote_task_id!r} promoted {promoted['model_name']!r}"
            )
        self.alias = check_alias_name(
            promoted["alias"], argument=f"alias promoted by {self.promote_task_id!r}"
        )
        return promoted["model_name"], promoted["version"], promoted["previous_version"]

    def target_tags(self, replaced: str | None, dag_run: str) -> dict[str, str]:
        return {
            "ai.restored_at": datetime.now(timezone.utc).isoformat(),
            "ai.restored_by_dag_run": dag_run,
            "ai.restore_reason": self.reason or "",
        }

    def after_move(self, name: str, replaced: str | None, dag_run: str) -> None:
        """Mark the rolled-back version, so nobody mistakes it for a healthy candidate."""
        if replaced is None:
            return
        tags = {
            Tag.ROLLED_BACK_AT: datetime.now(timezone.utc).isoformat(),
            Tag.ROLLED_BACK_BY_DAG_RUN: dag_run,
            Tag.ROLLBACK_REASON: self.reason or "",
        }
        with self.mlflow_hook.client() as client:
            for key, value in tags.items():
                client.set_model_version_tag(name, replaced, key, value)
