"""Checks of an AI job operator before anything runs: pod arguments at DAG parse, inputs at task start."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_ai_provider.aws_credentials import aws_runtime_env
from airflow_ai_provider.config import ExecutionMode
from airflow_ai_provider.credentials import refuse_uri_credentials
from airflow_ai_provider.exceptions import AiProviderConfigError, ModelReferenceError
from airflow_ai_provider.kubernetes.pod_checks import (
    check_env_literals,
    check_pod_template,
    node_selector_dict,
    parse_gpus,
    resources_dict,
)
from airflow_ai_provider.mlflow_registry import resolve_model
from airflow_ai_provider.operators.arguments import is_templated
from airflow_ai_provider.runtime.contract import RUNTIME_MODULE
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.model_reference import ModelReference

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.hooks.mlflow import MlflowHook


def refuse_own_command(kwargs: Mapping[str, Any]) -> None:
    """Refuse ``cmds=``/``arguments=``: the operator runs the job runtime's command itself."""
    for name in ("cmds", "arguments"):
        if kwargs.get(name):
            raise AiProviderConfigError(
                f"{kwargs.get('task_id', '?')}: {name}= is not allowed: AI operators run "
                f"'python -m {RUNTIME_MODULE} <job>' themselves; pass the job's own arguments instead"
            )


class JobPreflight:
    """Mixin for :class:`~airflow_ai_provider.operators.base.AiJobOperator`: its checks of bad input.

    Literal arguments are checked when the DAG is parsed (:meth:`check_pod_arguments`); the rest
    once templates rendered, before any MLflow run is booked (:meth:`preflight`). Bad input raises a
    one-line :class:`AiProviderConfigError` that starts with the task id and is never retried.
    """

    #: Arguments that hold model references: each must resolve in the registry before the job starts.
    model_arguments: ClassVar[tuple[str, ...]] = ()
    #: Arguments that hold model references used only in some runs (a fallback): the registered
    #: model must exist, but its alias or version may appear later (``champion_previous`` does not
    #: exist before the second promotion). A missing one is refused when it is needed.
    optional_model_arguments: ClassVar[tuple[str, ...]] = ()
    #: Arguments that hold URIs: one carrying credentials is refused (at DAG parse when literal, when
    #: it renders otherwise), so that no spec, log, MLflow record or pod gets them.
    uri_arguments: ClassVar[tuple[str, ...]] = ()

    task_id: str
    aws_conn_id: str | None
    kubernetes_conn_id: str | None
    base_container_name: str
    container_resources: Any
    env_vars: Any
    full_pod_spec: Any
    pod_template_dict: Any
    pod_template_file: str | None
    mlflow_hook: MlflowHook
    hook: Any

    def __setattr__(self, key: str, value: Any) -> None:
        if key in type(self).uri_arguments:  # set by __init__ (DAG parse) and by template rendering
            # A template is checked once it renders; an upstream task's output is never a literal.
            for uri in _strings(value):
                if not is_templated(uri):
                    refuse_uri_credentials(uri, key, getattr(self, "task_id", None))
        super().__setattr__(key, value)

    @contextmanager
    def named_errors(self) -> Iterator[None]:
        """Let bad input found in the block out as one line that starts with this task's id (once)."""
        try:
            yield
        except AiProviderConfigError as err:
            raise type(err)(self._named(err)) from None
        except JobInputError as err:  # a shared parameter check from the runtime's contract
            raise AiProviderConfigError(self._named(err)) from None

    def _named(self, err: BaseException) -> str:
        """``err`` as one line that starts with this task's id (once)."""
        text = str(err)
        return text if text.startswith(f"{self.task_id}: ") else f"{self.task_id}: {text}"

    def check_pod_arguments(
        self, execution_mode: Any, gpus: Any, gpu_node_selector: dict[str, str] | None
    ) -> None:
        """Refuse, at DAG parse, arguments that cannot work or would leak a secret.

        Sets ``gpu`` (the parsed ``gpus``) and ``gpu_node_selector``.
        """
        if execution_mode is not None and not is_templated(execution_mode):
            ExecutionMode.parse(execution_mode)  # a typo fails at DAG parse, not at 3 a.m.
        with self.named_errors():
            self.gpu = parse_gpus(gpus)
            self.gpu_node_selector = (
                None
                if gpu_node_selector is None
                else node_selector_dict(gpu_node_selector, "gpu_node_selector")
            )
            if self.container_resources is not None and not is_templated(self.container_resources):
                resources_dict(self.container_resources)
            if self.env_vars and not isinstance(self.env_vars, str):
                check_env_literals(self.env_vars)
            if not is_templated(self.base_container_name):
                self._check_pod_templates(parsed=True)

    def _check_pod_templates(self, *, parsed: bool = False) -> None:
        """The main container of each pod template given comes first and gets no literal secret.

        :param parsed: at DAG parse: only the literal ``full_pod_spec``/``pod_template_dict`` (a
            template file is read when the task starts).
        """
        if not parsed and self.pod_template_file:
            from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

            template = PodGenerator.deserialize_model_file(self.pod_template_file)
            check_pod_template(
                template, self.base_container_name, where=f"pod template {self.pod_template_file}"
            )
        for where in ("pod_template_dict", "full_pod_spec"):
            template = getattr(self, where)
            if template is not None and not (parsed and isinstance(template, str)):
                check_pod_template(template, self.base_container_name, where=where)

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
        with self.named_errors():
            self.check_rendered_arguments(context)
            for argument in (*self.model_arguments, *self.optional_model_arguments):
                reference = getattr(self, argument, None)
                if not reference:
                    continue
                optional = argument in self.optional_model_arguments
                try:
                    resolve_model(
                        self.mlflow_hook,
                        ModelReference.parse(reference, AiProviderConfigError).name
                        if optional
                        else reference,
                    )
                except ModelReferenceError as err:
                    raise ModelReferenceError(f"{argument}={reference!r}: {err}") from None
            if mode is ExecutionMode.LOCAL:
                aws_runtime_env(self.aws_conn_id)
            else:
                self._check_cluster_configuration()

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


def _strings(value: Any) -> Iterator[str]:
    """The strings of a URI argument: the string itself, or those of a (nested) list."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
