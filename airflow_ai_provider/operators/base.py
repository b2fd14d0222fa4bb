"""The AI job operator: a KubernetesPodOperator that can also run its job as a local subprocess."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_ai_provider.config import ExecutionMode, default_execution_mode, default_runtime_image
from airflow_ai_provider.exceptions import JobFailedError
from airflow_ai_provider.execution.local import LocalJobRunner
from airflow_ai_provider.hooks.aws import aws_runtime_env
from airflow_ai_provider.hooks.mlflow import MlflowHook, RunIdentity, TaskRun
from airflow_ai_provider.links import MLFLOW_RUN_URL_KEY, MlflowRunLink
from airflow_ai_provider.runtime.spec import MlflowRef

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.runtime.spec import JobSpec

RUNTIME_MODULE = "airflow_ai_provider.runtime"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class AiJobOperator(KubernetesPodOperator):
    """Run one AI job (spec in, result out) in a Kubernetes pod or as a local subprocess.

    Every :class:`KubernetesPodOperator` argument works in ``kubernetes`` mode (image, namespace,
    resources, node selectors, tolerations, secrets, pod templates). In ``local`` mode the same
    runtime command runs on the worker. Either way the task books an MLflow run nested under its DAG
    run's parent run (a retry reuses it), returns the runtime's result as XCom, and gets a link to the
    MLflow run.

    :param execution_mode: ``local`` or ``kubernetes``; default ``[ai_provider] execution_mode``.
        (templated)
    :param mlflow_conn_id: MLflow connection; without one, ``MLFLOW_TRACKING_URI`` or an embedded
        store under ``AIRFLOW_HOME``.
    :param aws_conn_id: AWS connection whose credentials and endpoint a local runtime gets for S3.
        In kubernetes mode give the pod credentials with ``secrets=``/``env_from=`` or a service
        account instead; they never travel in the job spec.
    :param python: interpreter for the local runtime, e.g. a virtualenv that mirrors a model's image;
        default the worker's own. (templated)
    :param experiment_name: MLflow experiment; default the connection's, else ``airflow/<dag_id>``.
        (templated)
    """

    job_type: ClassVar[str]
    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "execution_mode",
        "python",
        "experiment_name",
    )
    operator_extra_links = (MlflowRunLink(),)

    def __init__(
        self,
        *,
        execution_mode: str | ExecutionMode | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        aws_conn_id: str | None = None,
        python: str | None = None,
        experiment_name: str | None = None,
        image: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["do_xcom_push"] = True  # the runtime's result is the task's result
        super().__init__(image=image or default_runtime_image(), **kwargs)
        if execution_mode is not None and "{{" not in str(execution_mode):
            ExecutionMode.parse(execution_mode)  # a typo fails at DAG parse, not at 3 a.m.
        self.execution_mode = execution_mode
        self.mlflow_conn_id = mlflow_conn_id
        self.aws_conn_id = aws_conn_id
        self.python = python
        self.experiment_name = experiment_name
        self._local_runner: LocalJobRunner | None = None

    @cached_property
    def mlflow_hook(self) -> MlflowHook:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id)

    @property
    def resolved_execution_mode(self) -> ExecutionMode:
        if self.execution_mode is None:
            return default_execution_mode()
        return ExecutionMode.parse(self.execution_mode)

    # ----------------------------------------------------------------------------------------------
    # What subclasses provide.

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        """Return the job spec for this task; resolve model references through the hook."""
        raise NotImplementedError

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        """Tags to set on the task's MLflow run from the runtime's result."""
        return {}

    def record_result(self, run: TaskRun, result: dict[str, Any]) -> None:
        """Log the result's numeric metrics, :meth:`result_tags` and the whole result JSON."""
        from mlflow.entities import Metric, RunTag

        now_ms = int(time.time() * 1000)
        metrics = {key: value for key, value in result.get("metrics", {}).items() if _is_number(value)}
        metrics.update({key: result[key] for key in ("rows_in", "rows_out") if _is_number(result.get(key))})
        with self.mlflow_hook.client() as client:
            client.log_batch(
                run.run_id,
                metrics=[Metric(key, float(value), now_ms, step=0) for key, value in metrics.items()],
                tags=[RunTag(key, str(value)) for key, value in self.result_tags(result).items()],
            )
            client.log_text(run.run_id, json.dumps(result, indent=2, sort_keys=True), "job_result.json")

    def mlflow_ref(self, run: TaskRun) -> MlflowRef:
        """Where the runtime finds MLflow and the run booked for this task (never credentials)."""
        hook = self.mlflow_hook
        return MlflowRef(
            tracking_uri=hook.tracking_uri,
            registry_uri=hook.settings.registry_uri,
            run_id=run.run_id,
            experiment_id=run.experiment_id,
        )

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        """The ``extra`` of the Asset events this task emits on its outlets."""
        return {"mlflow_run_id": run.run_id}

    # ----------------------------------------------------------------------------------------------
    # The shared flow.

    def runtime_command(self, spec: JobSpec, python: str = "python") -> list[str]:
        """The command that runs ``spec``: identical in a pod and on the worker but for ``python``."""
        return [python, "-m", RUNTIME_MODULE, spec.job, "--spec-json", spec.to_json()]

    def configure_pod_for(self, spec: JobSpec) -> None:
        """Point the pod's main container at the runtime command for ``spec``."""
        command = self.runtime_command(spec)
        self.cmds = command[:3]
        self.arguments = command[3:]

    def _identity(self, context: Context, mode: ExecutionMode) -> RunIdentity:
        from airflow.configuration import conf

        ti = context["ti"]
        dag_id, run_id = ti.dag_id, ti.run_id
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
        logical_date = context.get("logical_date")
        where = self.image if mode is ExecutionMode.KUBERNETES else (self.python or sys.executable)
        return RunIdentity(
            dag_id=dag_id,
            run_id=run_id,
            task_id=ti.task_id,
            map_index=ti.map_index if ti.map_index is not None else -1,
            try_number=ti.try_number,
            logical_date=logical_date.isoformat() if logical_date else None,
            airflow_url=f"{base_url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}",
            extra_tags={
                "ai.job": self.job_type,
                "ai.execution_mode": mode.value,
                ("ai.image" if mode is ExecutionMode.KUBERNETES else "ai.python"): str(where),
            },
        )

    def _experiment(self, context: Context) -> str:
        return (
            self.experiment_name
            or self.mlflow_hook.settings.experiment_name
            or f"airflow/{context['ti'].dag_id}"
        )

    def _book_run(self, context: Context, mode: ExecutionMode) -> tuple[RunIdentity, TaskRun]:
        who = self._identity(context, mode)
        run = self.mlflow_hook.start_task_run(who, self._experiment(context))
        context["ti"].xcom_push(key=MLFLOW_RUN_URL_KEY, value=run.url or "")
        self.log.info("MLflow run %s (parent %s) at %s", run.run_id, run.parent_run_id, run.url or "-")
        return who, run

    def execute(self, context: Context) -> dict[str, Any]:
        mode = self.resolved_execution_mode
        who, run = self._book_run(context, mode)
        try:
            spec = self.build_job_spec(context, run)
            result = self.run_job(context, spec, mode)
            return self._complete(context, who, run, result)
        except TaskDeferred:
            raise
        except BaseException:
            self.mlflow_hook.finish_task_run(run, who, succeeded=False)
            raise

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferrable kubernetes mode: finish the MLflow records once the pod is done."""
        who, run = self._book_run(context, ExecutionMode.KUBERNETES)
        try:
            result = super().trigger_reentry(context, event)
            return self._complete(context, who, run, result)
        except BaseException:
            self.mlflow_hook.finish_task_run(run, who, succeeded=False)
            raise

    def run_job(self, context: Context, spec: JobSpec, mode: ExecutionMode) -> dict[str, Any]:
        """Run ``spec`` in a pod or a local subprocess and return the runtime's result."""
        self.log.info("Job spec: %s", spec.to_json())
        if mode is ExecutionMode.LOCAL:
            return self._run_local(spec)
        self.configure_pod_for(spec)
        return super().execute(context)

    def _run_local(self, spec: JobSpec) -> dict[str, Any]:
        env = {**self.mlflow_hook.runtime_env(), **aws_runtime_env(self.aws_conn_id)}
        self._local_runner = LocalJobRunner(
            self.runtime_command(spec, python=self.python or sys.executable), env, self.log
        )
        try:
            return self._local_runner.run()
        finally:
            self._local_runner = None

    def _complete(
        self, context: Context, who: RunIdentity, run: TaskRun, result: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not isinstance(result, dict):
            raise JobFailedError(f"{self.job_type} job returned no result (got {type(result).__name__})")
        if result.get("status") != "success":
            message = f"{self.job_type} job failed: {result.get('error') or 'no error message'}"
            if result.get("retryable"):
                raise JobFailedError(message)
            raise AirflowFailException(message)  # bad input: retrying cannot help
        self.record_result(run, result)
        extra = self.asset_event_extra(run, result)
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = extra
        self.mlflow_hook.finish_task_run(run, who, succeeded=True)
        return {**result, "mlflow_run_id": run.run_id, "mlflow_run_url": run.url}

    def on_kill(self) -> None:
        if self._local_runner is not None:
            self._local_runner.kill()
            return
        super().on_kill()
