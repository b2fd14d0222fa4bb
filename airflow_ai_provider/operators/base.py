"""The AI job operator's flow: job spec, run in a pod or a local subprocess, complete the task's run."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_ai_provider.aws_credentials import aws_runtime_env
from airflow_ai_provider.config import ExecutionMode, default_runtime_image, resolve_execution_mode
from airflow_ai_provider.cost import (
    EVENT_KEY,
    Prices,
    Usage,
    configured_prices,
    cost_extra,
    cost_metrics,
    job_pod_usage,
    process_usage,
    record_dag_run_cost,
    record_task_cost,
)
from airflow_ai_provider.exceptions import AiProviderConfigError, JobFailedError
from airflow_ai_provider.execution.local import LocalJobRunner, local_trace_env
from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.kubernetes import (
    configured_gpu_node_selector,
    configured_resources,
    configured_run_as_user,
    configured_scratch_size_limit,
)
from airflow_ai_provider.kubernetes.pod_checks import check_built_pod, resources_dict
from airflow_ai_provider.kubernetes.pod_defaults import merge_resources, secure_pod
from airflow_ai_provider.kubernetes.pod_env import (
    pod_annotations,
    pod_labels,
    pod_model_cache_env,
    task_env,
    task_keys,
)
from airflow_ai_provider.kubernetes.pod_failures import raise_pod_failure
from airflow_ai_provider.links import MlflowRunLink
from airflow_ai_provider.mlflow_runs import RunIdentity, TaskRun, finish_task_run
from airflow_ai_provider.openlineage import OpenLineageMixin
from airflow_ai_provider.operators.preflight import JobPreflight, refuse_own_command
from airflow_ai_provider.operators.task_run import MlflowTaskRunMixin, task_instance_key
from airflow_ai_provider.runtime.contract import RUNTIME_MODULE, STATUS_SUCCESS, EventKey, Tag
from airflow_ai_provider.runtime.contract.errors import JobInputError

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

    from airflow_ai_provider.runtime.contract.spec import JobSpec


class _JsonResponse:
    """What ``ApiClient.deserialize`` reads: an object with the JSON text in ``data``."""

    def __init__(self, value: Any) -> None:
        self.data = json.dumps(value)


class AiJobOperator(OpenLineageMixin, MlflowTaskRunMixin, JobPreflight, KubernetesPodOperator):
    """Run one AI job (spec in, result out) in a Kubernetes pod or as a local subprocess.

    Every :class:`KubernetesPodOperator` argument works in ``kubernetes`` mode (image, namespace,
    resources, node selectors, tolerations, secrets, pod templates). In ``local`` mode the same
    runtime command runs on the worker. Either way the task books an MLflow run nested under its DAG
    run's parent run (a retry reuses it), returns the runtime's result as XCom, and gets a link to the
    MLflow run.

    In ``kubernetes`` mode the pod gets secure defaults wherever the user's arguments, pod template or
    ``full_pod_spec`` set nothing (see ``docs/kubernetes.md``): non-root user 1000, seccomp
    ``RuntimeDefault``, read-only root filesystem with an ``emptyDir`` at ``/tmp``, no privilege
    escalation, all capabilities dropped (the XCom sidecar too); resource requests and limits from
    ``[ai_provider] default_resources_<job>``; ``ai.airflow.apache.org/*`` labels and annotations
    (DAG, task, run, model); the trace context (``TRACEPARENT``) in the environment. A failed pod is
    reported in plain words (OOMKilled, image pull errors, missing secrets).

    :param execution_mode: ``local`` or ``kubernetes``; default ``[ai_provider] execution_mode``.
        (templated)
    :param mlflow_conn_id: MLflow connection; without one, ``MLFLOW_TRACKING_URI`` or an embedded
        store under ``AIRFLOW_HOME``.
    :param aws_conn_id: AWS connection whose credentials and endpoint a local runtime gets for S3.
        Not used in kubernetes mode: give the pod credentials by reference with
        ``secrets=[Secret("env", ...)]``/``env_from=`` or a service account (IRSA); a secret-looking
        ``env_vars`` entry with a literal value is refused. Credentials never travel in the job spec.
    :param gpus: GPUs for the job's container: a count (``gpus=1``, NVIDIA) or
        ``{"count": 2, "vendor": "amd"}`` (vendors ``nvidia``, ``amd``, ``intel``). Sets the vendor's
        resource limit (``nvidia.com/gpu``), a ``NoSchedule`` toleration for it and the GPU node
        selector. Kubernetes mode only.
    :param gpu_node_selector: node labels for GPU pods; default ``[ai_provider] gpu_node_selector``.
    :param python: interpreter for the local runtime, e.g. a virtualenv that mirrors a model's image;
        default the worker's own. (templated)
    :param experiment_name: MLflow experiment; default the connection's, else ``airflow/<dag_id>``.
        (templated)
    """

    job_type: ClassVar[str]
    #: Retry defaults of the job type; operator arguments and DAG ``default_args`` win. Quick jobs
    #: retry soon with exponential backoff; training overrides this to retry once, later.
    retry_defaults: ClassVar[dict[str, Any]] = {
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
    }
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
        gpus: int | dict[str, Any] | None = None,
        gpu_node_selector: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_own_command(kwargs)
        kwargs["do_xcom_push"] = True  # the runtime's result is the task's result
        # A failed container's last log lines become its termination message, shown in the task error.
        kwargs.setdefault("termination_message_policy", "FallbackToLogsOnError")
        for key, value in self.retry_defaults.items():
            kwargs.setdefault(key, value)
        super().__init__(image=image or default_runtime_image(), **kwargs)
        self.check_pod_arguments(execution_mode, gpus, gpu_node_selector)
        self.gpus = gpus
        self.execution_mode = execution_mode
        self.mlflow_conn_id = mlflow_conn_id
        self.aws_conn_id = aws_conn_id
        self.python = python
        self.experiment_name = experiment_name
        self._local_runner: LocalJobRunner | None = None
        self._job_spec: JobSpec | None = None
        self._pod_result: Any = None
        self._final_pod: k8s.V1Pod | None = None
        self._usage = Usage()  # of this try's jobs, priced at _prices (airflow_ai_provider.cost)
        self._prices: Prices | None = None

    @property
    def resolved_execution_mode(self) -> ExecutionMode:
        return resolve_execution_mode(self.execution_mode)

    def runtime_location(self, mode: ExecutionMode) -> str:
        """Where the runtime runs: the image in kubernetes mode, else the local interpreter."""
        return str(self.image if mode is ExecutionMode.KUBERNETES else (self.python or sys.executable))

    # ----------------------------------------------------------------------------------------------
    # What subclasses provide (and :meth:`result_tags` of the task-run mixin).

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        """Return the job spec for this task; resolve model references through the registry."""
        raise NotImplementedError

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        """The ``extra`` of the Asset events this task emits on its outlets."""
        return {EventKey.MLFLOW_RUN_ID: run.run_id}

    def on_job_success(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        """Act on a successful job's result once the task's MLflow run is finished; return the task's
        result (the quality gate pushes its decision, drift detection emits its event)."""
        return result

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
        self._job_spec = spec

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """The KubernetesPodOperator pod, checked and completed with the secure defaults.

        Raises :class:`AiProviderConfigError` when the pod cannot run the job: the main container is
        not ``containers[0]``, does not run the job runtime, or gets a secret as a literal value.
        """
        from kubernetes.client import ApiClient

        with self.named_errors():
            self._check_pod_templates()
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        client = ApiClient()
        manifest = client.sanitize_for_serialization(pod)
        keys = task_keys(context, self)
        with self.named_errors():
            check_built_pod(manifest, self.base_container_name, self.job_type)
            main = manifest["spec"]["containers"][0]
            resources = merge_resources(
                resources_dict(main.get("resources"), "container_resources"),
                configured_resources(self.job_type),
                self.gpu,
            )
            gpu_node_selector = (
                self.gpu_node_selector
                if self.gpu_node_selector is not None
                else configured_gpu_node_selector()
            )
            secured = secure_pod(
                manifest,
                base_container_name=self.base_container_name,
                resources=resources,
                gpu=self.gpu,
                gpu_node_selector=gpu_node_selector,
                labels=pod_labels(keys, self.job_type, self._job_spec),
                annotations=pod_annotations(keys, self._job_spec),
                env={**task_env(context), **pod_model_cache_env(main)},
                run_as_user=configured_run_as_user(),
                scratch_size_limit=configured_scratch_size_limit(),
            )
        return client.deserialize(_JsonResponse(secured), "V1Pod")

    def extract_xcom(self, pod: k8s.V1Pod, **kwargs: Any) -> Any:
        """Read the runtime's result, kept so a failed job's own error reaches the task."""
        self._pod_result = super().extract_xcom(pod, **kwargs)
        return self._pod_result

    def cleanup(
        self,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        xcom_result: dict | None = None,
        context: Context | None = None,
    ) -> None:
        """Keep a failed pod's last state (before KPO deletes it) to explain the failure."""
        from airflow.providers.cncf.kubernetes.utils.container import container_is_succeeded

        failed = remote_pod is not None and not container_is_succeeded(remote_pod, self.base_container_name)
        if failed and not self._killed:
            try:
                self._final_pod = self.pod_manager.read_pod(remote_pod)
            except Exception:  # the pod may be gone; what KPO saw last still helps
                self._final_pod = remote_pod
        super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)

    def _pod_failure(self, error: BaseException) -> dict[str, Any]:
        """The runtime's own failed result, or ``error`` put in plain words from the pod's state."""
        if isinstance(self._pod_result, dict) and self._pod_result.get("status") not in (
            None,
            STATUS_SUCCESS,
        ):
            return self._pod_result  # the runtime said why; _complete decides about retries
        raise_pod_failure(self._final_pod, self.base_container_name, self.job_type, error)

    def _identity(self, context: Context, mode: ExecutionMode) -> RunIdentity:
        from airflow.configuration import conf

        ti = context["ti"]
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
        logical_date = context.get("logical_date")
        return self.task_identity(
            context,
            {
                Tag.JOB: self.job_type,
                Tag.EXECUTION_MODE: mode.value,
                (Tag.IMAGE if mode is ExecutionMode.KUBERNETES else Tag.PYTHON): self.runtime_location(mode),
            },
            logical_date=logical_date.isoformat() if logical_date else None,
            airflow_url=f"{base_url}/dags/{quote(ti.dag_id)}/runs/{quote(ti.run_id, safe='')}",
        )

    def execute(self, context: Context) -> dict[str, Any]:
        mode = self.resolved_execution_mode
        self._prices, self._usage = configured_prices(), Usage()
        self.preflight(context, mode)
        who = self._identity(context, mode)
        run = self.book_task_run(context, who)
        with self.guarded_task_run(run, who, let_through=(TaskDeferred,)):
            try:
                spec = self.build_job_spec(context, run)
                result = self._complete(context, who, run, self.run_job(context, spec, mode))
            except JobInputError as err:
                if isinstance(err, AirflowFailException):
                    raise
                raise AiProviderConfigError(self._named(err)) from None  # never retried
        return self.on_job_success(context, result)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferrable kubernetes mode: finish the MLflow records once the pod is done."""
        who = self._identity(context, ExecutionMode.KUBERNETES)
        run = self.book_task_run(context, who)
        with self.guarded_task_run(run, who):
            try:
                result = super().trigger_reentry(context, event)
            except (TaskDeferred, AirflowFailException, JobFailedError):
                raise
            except Exception as err:
                result = self._pod_failure(err)
            self._note_pod_usage(result)
            completed = self._complete(context, who, run, result)
        return self.on_job_success(context, completed)

    def run_job(self, context: Context, spec: JobSpec, mode: ExecutionMode) -> dict[str, Any]:
        """Run ``spec`` in a pod or a local subprocess and return the runtime's result."""
        self.log.info("Job spec: %s", spec.to_json())
        if mode is ExecutionMode.LOCAL:
            return self._run_local(spec, context)
        if self.aws_conn_id:
            self.log.info(
                "aws_conn_id %s is not copied into pods: the pod gets S3 access from secrets=, env_from= "
                "or its service account",
                self.aws_conn_id,
            )
        self.configure_pod_for(spec)
        # A second job in the same task (e.g. the inference fallback) needs a pod of its own.
        self.pod_request_obj = self.pod = self.remote_pod = None
        self._pod_result = self._final_pod = None
        try:
            result = super().execute(context)
        except (TaskDeferred, AirflowFailException, JobFailedError):
            raise
        except Exception as err:
            return self._pod_failure(err)
        self._note_pod_usage(result)
        return result

    def _note_pod_usage(self, result: Any) -> None:
        """Add the finished pod's declared resources times its run time to this try's usage."""
        from kubernetes.client import ApiClient

        serialize = ApiClient().sanitize_for_serialization
        final = serialize(self.remote_pod or self.pod)
        self._usage += job_pod_usage(serialize(self.pod_request_obj), final, self.base_container_name, result)

    def _run_local(self, spec: JobSpec, context: Context) -> dict[str, Any]:
        env = {
            **self.mlflow_hook.runtime_env(),
            **aws_runtime_env(self.aws_conn_id),
            **local_trace_env(context),
        }
        self._local_runner = LocalJobRunner(
            self.runtime_command(spec, python=self.python or sys.executable),
            env,
            self.log,
            task_key=task_instance_key(context),
        )
        try:
            return self._local_runner.run()
        finally:
            if self._local_runner.rusage is not None:
                self._usage += process_usage(self._local_runner.rusage, self._local_runner.wall_seconds)
            self._local_runner = None

    def _complete(
        self, context: Context, who: RunIdentity, run: TaskRun, result: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not isinstance(result, dict):
            raise JobFailedError(f"{self.job_type} job returned no result (got {type(result).__name__})")
        if result.get("status") != STATUS_SUCCESS:
            self.record_failure(run, result)
            message = f"{self.job_type} job failed: {result.get('error') or 'no error message'}"
            if result.get("retryable"):
                raise JobFailedError(message)
            raise AirflowFailException(message)  # bad input: retrying cannot help
        self.record_result(run, result)
        prices = self._prices or configured_prices()
        metrics = cost_metrics(self._usage, prices)
        record_task_cost(self.mlflow_hook, run, metrics, prices.currency)
        cost = cost_extra(metrics, prices.currency)
        extra = {**self.asset_event_extra(run, result), EVENT_KEY: cost}
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = extra
        finish_task_run(self.mlflow_hook, run, who, succeeded=True)
        record_dag_run_cost(self.mlflow_hook, run, who, prices.currency)
        return {**result, EVENT_KEY: cost, "mlflow_run_id": run.run_id, "mlflow_run_url": run.url}

    def on_kill(self) -> None:
        if self._local_runner is not None:
            self._local_runner.kill()
            return
        super().on_kill()
