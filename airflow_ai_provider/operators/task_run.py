"""The MLflow run of one task: booked under its DAG run's parent run, guarded, recorded and closed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.execution.run_guard import TaskRunGuard
from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.hooks.mlflow_entities import Metric, RunTag
from airflow_ai_provider.links import MLFLOW_RUN_URL_KEY
from airflow_ai_provider.mlflow_runs import RunIdentity, TaskRun, fail_task_run, start_task_run
from airflow_ai_provider.runtime.contract import Artifact, Tag
from airflow_ai_provider.runtime.contract.param_checks import is_number
from airflow_ai_provider.runtime.contract.spec import MlflowRef

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context


def map_index(ti: Any) -> int:
    """The task instance's map index; ``-1`` for a task that is not mapped."""
    index = getattr(ti, "map_index", None)
    return -1 if index is None else index


def task_instance_key(context: Mapping[str, Any]) -> str:
    """``<dag_id>/<run_id>/<task_id>/<map_index>``: the same for every try of one task instance."""
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{map_index(ti)}"


class MlflowTaskRunMixin:
    """Mixin for operators that record their task in MLflow (the AI job operators, promotion).

    A task books one MLflow run nested under its DAG run's parent run (a retry reuses it), pushes
    the run's URL for :class:`~airflow_ai_provider.links.MlflowRunLink`, runs its work while a
    :class:`~airflow_ai_provider.execution.run_guard.TaskRunGuard` closes the runs should the task
    process die, and marks the run failed when the work raises.
    """

    mlflow_conn_id: str
    experiment_name: str | None
    task_id: str
    log: logging.Logger

    @cached_property
    def mlflow_hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    def task_identity(self, context: Context, extra_tags: dict[str, str], **fields: Any) -> RunIdentity:
        """Who books the run: this task instance and try, with ``extra_tags`` and more ``fields``."""
        ti = context["ti"]
        return RunIdentity(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=map_index(ti),
            try_number=ti.try_number,
            extra_tags=extra_tags,
            **fields,
        )

    def _experiment(self, context: Context) -> str:
        return self.mlflow_hook.task_experiment_name(self.experiment_name, context["ti"].dag_id)

    def book_task_run(self, context: Context, who: RunIdentity) -> TaskRun:
        """Start (or, on a retry, resume) the task's run and push its URL for the task's link."""
        run = start_task_run(self.mlflow_hook, who, self._experiment(context))
        context["ti"].xcom_push(key=MLFLOW_RUN_URL_KEY, value=run.url or "")
        self.log.info("MLflow run %s (parent %s) at %s", run.run_id, run.parent_run_id, run.url or "-")
        return run

    @contextmanager
    def guarded_task_run(
        self, run: TaskRun, who: RunIdentity, let_through: tuple[type[BaseException], ...] = ()
    ) -> Iterator[None]:
        """Guard ``run`` while the block runs; mark it failed when the block raises.

        :param let_through: exceptions that end the block without failing the run (a deferral).
        """
        with TaskRunGuard.for_task_run(self.mlflow_hook, run, who):
            try:
                yield
            except let_through:
                raise
            except BaseException:
                fail_task_run(self.mlflow_hook, run, who)
                raise

    def mlflow_ref(self, run: TaskRun) -> MlflowRef:
        """Where the runtime finds MLflow and the run booked for this task (never credentials)."""
        hook = self.mlflow_hook
        return MlflowRef(
            tracking_uri=hook.tracking_uri,
            registry_uri=hook.settings.registry_uri,
            run_id=run.run_id,
            experiment_id=run.experiment_id,
        )

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        """Tags to set on the task's MLflow run from the runtime's result."""
        return {}

    def record_result(self, run: TaskRun, result: dict[str, Any]) -> None:
        """Log the result's numeric metrics, :meth:`result_tags` and the whole result JSON."""
        now_ms = int(time.time() * 1000)
        metrics = {key: value for key, value in result.get("metrics", {}).items() if is_number(value)}
        metrics.update({key: result[key] for key in ("rows_in", "rows_out") if is_number(result.get(key))})
        with self.mlflow_hook.client() as client:
            client.log_batch(
                run.run_id,
                metrics=[Metric(key, float(value), now_ms, step=0) for key, value in metrics.items()],
                tags=[RunTag(key, str(value)) for key, value in self.result_tags(result).items()],
            )
            client.log_text(run.run_id, json.dumps(result, indent=2, sort_keys=True), Artifact.JOB_RESULT)

    def record_failure(self, run: TaskRun, result: dict[str, Any]) -> None:
        """Keep a failed job's result in its MLflow run too (the error, what it had counted)."""
        try:
            with self.mlflow_hook.client(on_failure=True) as client:
                client.set_tag(run.run_id, Tag.ERROR, str(result.get("error", ""))[:5000])
                client.log_text(run.run_id, json.dumps(result, indent=2, sort_keys=True), Artifact.JOB_RESULT)
        except Exception:
            self.log.warning("Could not record the failed result in MLflow run %s", run.run_id, exc_info=True)
