"""The AI job operator: a KubernetesPodOperator that can also run its job as a local subprocess."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, TaskDeferred

from airflow_ai_provider.config import (
    ExecutionMode,
    default_execution_mode,
    default_runtime_image,
    service_timeout,
)
from airflow_ai_provider.credentials import refuse_uri_credentials
from airflow_ai_provider.exceptions import AiProviderConfigError, JobFailedError, ModelReferenceError
from airflow_ai_provider.execution.local import LocalJobRunner, task_instance_key
from airflow_ai_provider.execution.run_guard import TaskRunGuard
from airflow_ai_provider.hooks.aws import aws_runtime_env
from airflow_ai_provider.hooks.mlflow import MlflowHook, RunIdentity, TaskRun
from airflow_ai_provider.kubernetes import (
    configured_gpu_node_selector,
    configured_resources,
    configured_run_as_user,
    configured_scratch_size_limit,
)
from airflow_ai_provider.kubernetes.pod_defaults import (
    lookup_annotations,
    lookup_labels,
    merge_resources,
    secure_pod,
    trace_env,
)
from airflow_ai_provider.kubernetes.validation import (
    check_built_pod,
    check_env_literals,
    check_pod_template,
    explain_pod_failure,
    node_selector_dict,
    parse_gpus,
    resources_dict,
)
from airflow_ai_provider.links import MLFLOW_RUN_URL_KEY, MlflowRunLink
from airflow_ai_provider.operators.arguments import is_templated
from airflow_ai_provider.runtime.contract import (
    RUNTIME_MODULE,
    SERVICE_TIMEOUT_ENV,
    STATUS_SUCCESS,
    Artifact,
    EventKey,
    Tag,
)
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import MlflowRef

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

    from airflow_ai_provider.runtime.contract.spec import JobSpec


def _trace_carrier(ti: Any) -> dict[str, str]:
    """W3C trace context of the running task: its current span, else the carrier Airflow gave the task."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    if "traceparent" not in carrier:
        carrier = dict(getattr(ti, "context_carrier", None) or {})
    return carrier


def _openlineage_parent_id(ti: Any) -> str | None:
    """``<namespace>/<job>/<run id>`` of the task's OpenLineage run, when the provider is installed."""
    try:
        from airflow.providers.openlineage.plugins.macros import lineage_parent_id
    except ImportError:
        return None
    try:
        return lineage_parent_id(ti)
    except Exception:  # lineage is best effort: never fail the job for it
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _JsonResponse:
    """What ``ApiClient.deserialize`` reads: an object with the JSON text in ``data``."""

    def __init__(self, value: Any) -> None:
        self.data = json.dumps(value)


class AiJobOperator(KubernetesPodOperator):
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
    #: Arguments that hold model references: each must resolve in the registry before the job starts.
    model_arguments: ClassVar[tuple[str, ...]] = ()
    #: Arguments that hold model references used only in some runs (a fallback): the registered
    #: model must exist, but its alias or version may appear later (``champion_previous`` does not
    #: exist before the second promotion). A missing one is refused when it is needed.
    optional_model_arguments: ClassVar[tuple[str, ...]] = ()
    #: Arguments that hold URIs: one carrying credentials is refused (at DAG parse when literal, when
    #: it renders otherwise), so that no spec, log, MLflow record or pod gets them.
    uri_arguments: ClassVar[tuple[str, ...]] = ()
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
        task = kwargs.get("task_id", "?")
        for name in ("cmds", "arguments"):
            if kwargs.get(name):
                raise AiProviderConfigError(
                    f"{task}: {name}= is not allowed: AI operators run 'python -m {RUNTIME_MODULE} <job>' "
                    "themselves; pass the job's own arguments instead"
                )
        kwargs["do_xcom_push"] = True  # the runtime's result is the task's result
        # A failed container's last log lines become its termination message, shown in the task error.
        kwargs.setdefault("termination_message_policy", "FallbackToLogsOnError")
        for key, value in self.retry_defaults.items():
            kwargs.setdefault(key, value)
        super().__init__(image=image or default_runtime_image(), **kwargs)
        if execution_mode is not None and "{{" not in str(execution_mode):
            ExecutionMode.parse(execution_mode)  # a typo fails at DAG parse, not at 3 a.m.
        try:
            self.gpu = parse_gpus(gpus)
            self.gpu_node_selector = (
                None
                if gpu_node_selector is None
                else node_selector_dict(gpu_node_selector, "gpu_node_selector")
            )
            self._check_pod_arguments()
        except AiProviderConfigError as err:
            raise AiProviderConfigError(f"{self.task_id}: {err}") from None
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

    def _check_pod_arguments(self) -> None:
        """Refuse, at DAG parse, pod arguments that cannot work or would leak a secret."""
        if self.container_resources is not None and not is_templated(self.container_resources):
            resources_dict(self.container_resources)
        if self.env_vars and not isinstance(self.env_vars, str):
            check_env_literals(self.env_vars)
        for where, template in (
            ("full_pod_spec", self.full_pod_spec),
            ("pod_template_dict", self.pod_template_dict),
        ):
            if (
                template is not None
                and not isinstance(template, str)
                and not is_templated(self.base_container_name)
            ):
                check_pod_template(template, self.base_container_name, where=where)

    def __setattr__(self, key: str, value: Any) -> None:
        if key in type(self).uri_arguments:  # set by __init__ (DAG parse) and by template rendering
            refuse_uri_credentials(value, key, getattr(self, "task_id", None))
        super().__setattr__(key, value)

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
            client.log_text(run.run_id, json.dumps(result, indent=2, sort_keys=True), Artifact.JOB_RESULT)

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
        return {EventKey.MLFLOW_RUN_ID: run.run_id}

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
        from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
        from kubernetes.client import ApiClient

        try:
            if self.pod_template_file:
                template = PodGenerator.deserialize_model_file(self.pod_template_file)
                check_pod_template(
                    template, self.base_container_name, where=f"pod template {self.pod_template_file}"
                )
            for where in ("pod_template_dict", "full_pod_spec"):
                if getattr(self, where) is not None:
                    check_pod_template(getattr(self, where), self.base_container_name, where=where)
        except AiProviderConfigError as err:
            raise AiProviderConfigError(f"{self.task_id}: {err}") from None
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        client = ApiClient()
        manifest = client.sanitize_for_serialization(pod)
        try:
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
                labels=lookup_labels(**self._lookup_keys(context), **self._model_labels()),
                annotations=lookup_annotations(**self._lookup_keys(context), **self._run_annotations()),
                env=self._pod_env(context),
                run_as_user=configured_run_as_user(),
                scratch_size_limit=configured_scratch_size_limit(),
            )
        except AiProviderConfigError as err:
            raise AiProviderConfigError(f"{self.task_id}: {err}") from None
        return client.deserialize(_JsonResponse(secured), "V1Pod")

    def _lookup_keys(self, context: Context | None) -> dict[str, str | None]:
        if context is not None:
            ti = context["ti"]
            return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id}
        return {"dag_id": self.dag_id if self.has_dag() else None, "task_id": self.task_id, "run_id": None}

    def _model_labels(self) -> dict[str, str | None]:
        spec = self._job_spec
        if spec is None:
            return {"job": self.job_type}
        if spec.model is not None:
            return {"job": spec.job, "model_name": spec.model.name, "model_version": str(spec.model.version)}
        return {"job": spec.job, "model_name": spec.params.get("model_name")}

    def _run_annotations(self) -> dict[str, str | None]:
        spec = self._job_spec
        if spec is None:
            return {}
        model = spec.model
        return {
            "mlflow_run_id": spec.mlflow.run_id,
            "model_uri": f"models:/{model.name}/{model.version}" if model is not None else None,
        }

    def _pod_env(self, context: Context | None) -> dict[str, str]:
        """Airflow identity, service timeout, W3C trace context and OpenLineage parent, for the pod."""
        if context is None:
            return {}
        ti = context["ti"]
        env = {
            "AIRFLOW_CTX_DAG_ID": str(ti.dag_id),
            "AIRFLOW_CTX_TASK_ID": str(ti.task_id),
            "AIRFLOW_CTX_DAG_RUN_ID": str(ti.run_id),
            "AIRFLOW_CTX_TRY_NUMBER": str(ti.try_number),
            SERVICE_TIMEOUT_ENV: str(service_timeout()),
        }
        return {**env, **trace_env(_trace_carrier(ti), _openlineage_parent_id(ti))}

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
        from kubernetes.client import ApiClient

        state = ApiClient().sanitize_for_serialization(self._final_pod) if self._final_pod else None
        explained = explain_pod_failure(state, self.base_container_name)
        if explained is None:
            raise error
        message, retryable = explained
        name = (state or {}).get("metadata", {}).get("name", "?")
        text = f"{self.job_type} job pod {name}: {message}"
        if retryable:
            raise JobFailedError(text) from error
        raise AirflowFailException(text) from error

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
                Tag.JOB: self.job_type,
                Tag.EXECUTION_MODE: mode.value,
                (Tag.IMAGE if mode is ExecutionMode.KUBERNETES else Tag.PYTHON): str(where),
            },
        )

    def _experiment(self, context: Context) -> str:
        return self.mlflow_hook.task_experiment_name(self.experiment_name, context["ti"].dag_id)

    def _book_run(self, context: Context, mode: ExecutionMode) -> tuple[RunIdentity, TaskRun]:
        who = self._identity(context, mode)
        run = self.mlflow_hook.start_task_run(who, self._experiment(context))
        context["ti"].xcom_push(key=MLFLOW_RUN_URL_KEY, value=run.url or "")
        self.log.info("MLflow run %s (parent %s) at %s", run.run_id, run.parent_run_id, run.url or "-")
        return who, run

    def check_rendered_arguments(self, context: Context) -> None:
        """Check arguments after their templates rendered; raise :class:`AiProviderConfigError`.

        Subclasses convert and check their own templated arguments here, so a value that does not
        convert fails the task once, naming the argument, before any MLflow run exists.
        """

    def preflight(self, context: Context, mode: ExecutionMode) -> None:
        """Refuse bad input before anything is written: no MLflow run, registration or output.

        Checks the rendered arguments, that every model reference exists in the registry, and that
        the connections the job needs exist. Bad input raises an :class:`AiProviderConfigError`
        (never retried); an unreachable MLflow server raises :class:`MlflowUnavailableError` (retried).
        """
        try:
            self.check_rendered_arguments(context)
            for argument in (*self.model_arguments, *self.optional_model_arguments):
                reference = getattr(self, argument, None)
                if not reference:
                    continue
                optional = argument in self.optional_model_arguments
                try:
                    self.mlflow_hook.resolve_model(
                        ModelReference.parse(reference, AiProviderConfigError).name if optional else reference
                    )
                except ModelReferenceError as err:
                    raise ModelReferenceError(f"{argument}={reference!r}: {err}") from None
            if mode is ExecutionMode.LOCAL:
                aws_runtime_env(self.aws_conn_id)
            else:
                self._check_cluster_configuration()
        except AiProviderConfigError as err:
            raise type(err)(self._named(err)) from None
        except JobInputError as err:  # a shared parameter check from the runtime's contract
            raise AiProviderConfigError(self._named(err)) from None

    def _check_cluster_configuration(self) -> None:
        """Load the Kubernetes client configuration (no API call): a worker without one is misconfigured."""
        from kubernetes.config import ConfigException

        try:
            self.hook.core_v1_client  # noqa: B018 - builds the client from the configuration
        except ConfigException as err:
            raise AiProviderConfigError(
                f"kubernetes execution mode found no cluster configuration ({one_line(err)}): run the "
                "worker in the cluster (in_cluster=True), set kubernetes_conn_id or config_file, or use "
                "execution_mode='local'"
            ) from None
        except AirflowNotFoundException:
            raise AiProviderConfigError(
                f"kubernetes_conn_id {self.kubernetes_conn_id!r}: no such Airflow connection; create it "
                "(type kubernetes) or leave kubernetes_conn_id at its default"
            ) from None

    def _named(self, err: BaseException) -> str:
        """``err`` as one line that starts with this task's id (once)."""
        text = str(err)
        return text if text.startswith(f"{self.task_id}: ") else f"{self.task_id}: {text}"

    def execute(self, context: Context) -> dict[str, Any]:
        mode = self.resolved_execution_mode
        self.preflight(context, mode)
        who, run = self._book_run(context, mode)
        with TaskRunGuard.for_task_run(self.mlflow_hook, run, who):
            try:
                spec = self.build_job_spec(context, run)
                result = self.run_job(context, spec, mode)
                return self._complete(context, who, run, result)
            except TaskDeferred:
                raise
            except BaseException as err:
                self.mlflow_hook.fail_task_run(run, who)
                if isinstance(err, JobInputError) and not isinstance(err, AirflowFailException):
                    raise AiProviderConfigError(self._named(err)) from None  # never retried
                raise

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Deferrable kubernetes mode: finish the MLflow records once the pod is done."""
        who, run = self._book_run(context, ExecutionMode.KUBERNETES)
        with TaskRunGuard.for_task_run(self.mlflow_hook, run, who):
            try:
                try:
                    result = super().trigger_reentry(context, event)
                except (TaskDeferred, AirflowFailException, JobFailedError):
                    raise
                except Exception as err:
                    result = self._pod_failure(err)
                return self._complete(context, who, run, result)
            except BaseException:
                self.mlflow_hook.fail_task_run(run, who)
                raise

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
            return super().execute(context)
        except (TaskDeferred, AirflowFailException, JobFailedError):
            raise
        except Exception as err:
            return self._pod_failure(err)

    def _run_local(self, spec: JobSpec, context: Context) -> dict[str, Any]:
        env = {**self.mlflow_hook.runtime_env(), **aws_runtime_env(self.aws_conn_id)}
        self._local_runner = LocalJobRunner(
            self.runtime_command(spec, python=self.python or sys.executable),
            env,
            self.log,
            task_key=task_instance_key(context),
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
        if result.get("status") != STATUS_SUCCESS:
            self._record_failure(run, result)
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

    def _record_failure(self, run: TaskRun, result: dict[str, Any]) -> None:
        """Keep a failed job's result in its MLflow run too (the error, what it had counted)."""
        try:
            with self.mlflow_hook.client(on_failure=True) as client:
                client.set_tag(run.run_id, Tag.ERROR, str(result.get("error", ""))[:5000])
                client.log_text(run.run_id, json.dumps(result, indent=2, sort_keys=True), Artifact.JOB_RESULT)
        except Exception:
            self.log.warning("Could not record the failed result in MLflow run %s", run.run_id, exc_info=True)

    def on_kill(self) -> None:
        if self._local_runner is not None:
            self._local_runner.kill()
            return
        super().on_kill()
