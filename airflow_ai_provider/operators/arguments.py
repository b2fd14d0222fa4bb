"""Operator arguments checked with the runtime's own parameter checks, at DAG parse and after rendering.

An operator collects the job parameters from its arguments and hands them to the job's parameter
class in :mod:`airflow_ai_provider.runtime.contract.params`, the same check the runtime makes. At DAG parse
only literal values are checked (a value holding ``{{`` or an upstream ``XComArg`` renders later),
also for ``partial()`` of a mapped task; the check runs again on the rendered values at task start,
before any MLflow run is booked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from airflow.sdk.definitions._internal.mixins import ResolveMixin

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.runtime.contract import params as job_params
from airflow_ai_provider.runtime.contract.errors import JobInputError


def is_templated(value: Any) -> bool:
    """Whether ``value`` is only known once the task runs: a template or an upstream task's output."""
    if isinstance(value, ResolveMixin):
        return True
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_templated(key) or is_templated(item) for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(is_templated(item) for item in value)
    if value is None or isinstance(value, (bool, int, float)):
        return False
    return "{{" in str(value)  # an object holding a template somewhere (a Kubernetes model)


def uri_list(value: str | list[str]) -> list[str]:
    """One URI or a list of them, as the list a job spec's ``inputs`` holds."""
    return [value] if isinstance(value, str) else list(value)


def check_job_params(
    task_id: str, kind: type[job_params.JobParams], values: Mapping[str, Any], *, rendered: bool
) -> dict[str, Any]:
    """The job parameters in ``values`` checked by ``kind`` (``None`` means "the job's default").

    :param rendered: ``False`` at DAG parse: templated values are skipped and an error is an
        :class:`AiProviderConfigError` naming the task; ``True`` after rendering: every value is
        checked and an error stays a :class:`JobInputError` (the operator's flow names the task).
    :return: the checked values, as the job spec carries them.
    """
    given = {name: value for name, value in values.items() if value is not None or name in kind.nullable}
    if not rendered:
        given = {name: value for name, value in given.items() if not is_templated(value)}
    try:
        return kind.check(given, partial=not rendered)
    except JobInputError as err:
        if rendered:
            raise
        raise AiProviderConfigError(f"{task_id}: {err}") from None


def check_shard(task_id: str, index: Any, count: Any, *, rendered: bool) -> tuple[int, int] | None:
    """``(shard_index, shard_count)`` checked like the runtime's shard; ``None`` while templated."""
    index_known = index is not None and not is_templated(index)  # None: mapped, known at task start
    try:
        if rendered or (index_known and not is_templated(count)):
            return job_params.shard(index, count)
        if not is_templated(count):
            job_params.integer(count, "shard_count")
        if index_known:
            job_params.integer(index, "shard_index", minimum=0)
        return None
    except JobInputError as err:
        if rendered:
            raise
        raise AiProviderConfigError(f"{task_id}: {err}") from None


class JobArguments:
    """Mixin for AI job operators: the job parameters they pass, checked with the runtime's check.

    :attr:`job_arguments` names the job parameters the operator takes as arguments of the same name
    (and :attr:`job_attributes` maps an argument to the attribute holding it, where the two differ).
    """

    job_params_class: ClassVar[type[job_params.JobParams]]
    job_arguments: ClassVar[tuple[str, ...]] = ()
    job_attributes: ClassVar[dict[str, str]] = {}
    task_id: str

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Also check the literal job arguments of a mapped task when the DAG is parsed."""
        task_id = str(kwargs.get("task_id", "?"))
        values = {name: kwargs[name] for name in cls.job_arguments if name in kwargs}
        check_job_params(task_id, cls.job_params_class, values, rendered=False)
        cls.check_partial_arguments(task_id, kwargs)
        return super().partial(**kwargs)  # type: ignore[misc]

    @classmethod
    def check_partial_arguments(cls, task_id: str, kwargs: Mapping[str, Any]) -> None:
        """Checks of ``partial()`` arguments beyond the job parameters."""

    def set_job_arguments(self, **arguments: Any) -> None:
        """Keep the operator's own ``arguments`` as attributes, then check the literal job parameters
        among them, so that a bad one fails when the DAG is parsed."""
        for name, value in arguments.items():
            setattr(self, name, value)
        self.job_params(rendered=False)

    def job_values(self) -> dict[str, Any]:
        """The job parameters as the arguments hold them (rendered once the task runs)."""
        return {name: getattr(self, self.job_attributes.get(name, name)) for name in self.job_arguments}

    def job_params(self, *, rendered: bool = True) -> dict[str, Any]:
        """The job parameters from the arguments, checked as the runtime checks them (see
        :func:`check_job_params`)."""
        return check_job_params(self.task_id, self.job_params_class, self.job_values(), rendered=rendered)

    def check_rendered_arguments(self, context: Any) -> None:
        """After rendering, before any MLflow run: the same check on the rendered values."""
        self.job_params()
