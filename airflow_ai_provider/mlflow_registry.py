"""The registry as tasks read it: alias names checked as MLflow does, references resolved and pinned."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.exceptions import AiProviderConfigError, ModelReferenceError
from airflow_ai_provider.hooks.mlflow import filter_value
from airflow_ai_provider.hooks.mlflow_entities import MlflowApiError
from airflow_ai_provider.runtime.contract.model_reference import ModelReference

if TYPE_CHECKING:
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient as MlflowClient

# MLflow's own alias rules (mlflow/utils/validation.py: _validate_model_alias_name and
# _validate_model_alias_name_reserved), repeated so that a DAG file is checked without importing
# mlflow. ``fullmatch`` is a little stricter than MLflow's ``match(...$)``: no trailing newline.
_ALIAS_CHARACTERS = re.compile(r"[\w\-]*")
_VERSION_ALIAS = re.compile(r"[vV]\d+")
MAX_ALIAS_LENGTH = 255
PREVIOUS_ALIAS_SUFFIX = "_previous"
PIN_PARAM_PREFIX = "pinned_model"
#: The pin recorded for an alias that pointed to no version when its DAG run first looked.
NO_VERSION_PIN = "none"


def check_alias_name(alias: Any, *, argument: str = "alias") -> str:
    """Return ``alias`` if MLflow accepts it as an alias name; raise :class:`AiProviderConfigError`.

    :param alias: the alias name, after templates rendered.
    :param argument: how the error message names the value.
    """
    if not isinstance(alias, str) or not alias:
        raise AiProviderConfigError(f"{argument}={alias!r} is not an alias name: give one such as 'champion'")
    if not _ALIAS_CHARACTERS.fullmatch(alias):
        raise AiProviderConfigError(
            f"{argument}={alias!r} is not a valid MLflow alias: use only letters, digits, '_' and '-'"
        )
    if len(alias) > MAX_ALIAS_LENGTH:
        raise AiProviderConfigError(
            f"{argument}={alias[:40]!r}... is {len(alias)} characters long: MLflow allows at most "
            f"{MAX_ALIAS_LENGTH}"
        )
    if alias.lower() == "latest":
        raise AiProviderConfigError(
            f"{argument}={alias!r} is reserved by MLflow ('latest' in any case means the newest "
            "version): choose another alias"
        )
    if _VERSION_ALIAS.fullmatch(alias):
        raise AiProviderConfigError(
            f"{argument}={alias!r} is reserved by MLflow (v<number> means that version): choose another alias"
        )
    return alias


def check_promotion_alias(alias: Any, *, argument: str = "alias") -> str:
    """Check ``alias`` and the ``<alias>_previous`` alias a promotion also writes."""
    check_alias_name(alias, argument=argument)
    previous = f"{alias}{PREVIOUS_ALIAS_SUFFIX}"
    if len(previous) > MAX_ALIAS_LENGTH:
        raise AiProviderConfigError(
            f"{argument}={alias[:40]!r}... is too long: the promotion also writes {argument}"
            f"+'{PREVIOUS_ALIAS_SUFFIX}', and MLflow allows at most {MAX_ALIAS_LENGTH} characters"
        )
    return alias


def resolve_model(hook: MlflowHook, reference: str) -> ModelReference:
    """Resolve ``name``, ``name@alias``, ``name/version`` or a ``models:/`` URI to one version.

    A bare name means the latest registered version.

    :param hook: the MLflow connection.
    :param reference: the model reference.
    :raises ModelReferenceError: the model, alias or version does not exist (not retried).
    """
    spec = ModelReference.parse(reference, AiProviderConfigError)
    with hook.client() as client:
        try:
            model = client.get_registered_model(spec.name)
        except MlflowApiError as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ModelReferenceError(
                    f"registered model {spec.name!r} does not exist in MLflow at {hook.registry_uri}"
                ) from None
            raise
        return _resolve_existing(client, spec, model.aliases)


def _resolve_existing(
    client: MlflowClient, spec: ModelReference, aliases: Mapping[str, Any]
) -> ModelReference:
    """``spec`` of a model known to exist, whose aliases (as read) are ``aliases``."""
    if spec.alias:
        try:
            version = client.get_model_version_by_alias(spec.name, spec.alias)
        except MlflowApiError:
            raise ModelReferenceError(
                f"model {spec.name!r} has no alias {spec.alias!r} "
                f"(its aliases: {', '.join(sorted(aliases)) or 'none'})"
            ) from None
        return spec.pin(version.version)
    if spec.version:
        try:
            client.get_model_version(spec.name, spec.version)
        except MlflowApiError:
            raise ModelReferenceError(
                f"model {spec.name!r} has no version {spec.version}: check the registry"
            ) from None
        return spec
    versions = client.search_model_versions(f"name = {filter_value(spec.name)}")
    if not versions:
        raise ModelReferenceError(f"model {spec.name!r} has no registered version yet")
    return spec.pin(max(int(v.version) for v in versions))


def pin_model(hook: MlflowHook, reference: str, parent_run_id: str) -> ModelReference:
    """Resolve ``reference`` once per DAG run and return the same version to every task and shard.

    The first task records the resolved version as a param of the DAG run's parent run; every
    later task takes the recorded one, even when the alias has moved since.

    :param hook: the MLflow connection.
    :param reference: the model reference.
    :param parent_run_id: the DAG run's parent run (:attr:`~airflow_ai_provider.mlflow_runs.TaskRun.parent_run_id`).
    :raises ModelReferenceError: no such model, alias or version, or the DAG run pinned the alias
        when it pointed nowhere (see :func:`pin_alias`); not retried.
    """
    spec = ModelReference.parse(reference, AiProviderConfigError)
    if spec.version:
        return resolve_model(hook, reference)
    recorded = _pin_once(hook, spec, parent_run_id, lambda: str(resolve_model(hook, reference).version))
    if recorded == NO_VERSION_PIN:
        raise ModelReferenceError(
            f"model {spec.name!r} had no alias {spec.alias!r} when this DAG run first looked (pinned as "
            f"{NO_VERSION_PIN!r}, e.g. by its quality gate): reference a version, or use the alias in a "
            "later DAG run"
        )
    return spec.pin(recorded)


def pin_alias(hook: MlflowHook, name: str, alias: str, parent_run_id: str) -> ModelReference | None:
    """Where ``alias`` of model ``name`` points for this DAG run, or ``None`` when it pointed nowhere.

    Like :func:`pin_model`, but an alias that does not exist yet is pinned too (as
    :data:`NO_VERSION_PIN`): a champion that appears later in the DAG run is not the one its
    quality gate saw, so its promotion must not replace it.
    """
    spec = ModelReference(name, alias=alias)
    recorded = _pin_once(
        hook, spec, parent_run_id, lambda: alias_version(hook, name, alias) or NO_VERSION_PIN
    )
    return None if recorded == NO_VERSION_PIN else spec.pin(recorded)


def _pin_once(hook: MlflowHook, spec: ModelReference, parent_run_id: str, resolve: Callable[[], str]) -> str:
    """The value pinned for ``spec`` in the parent run; the first caller records ``resolve()``.

    MLflow params are write-once, so a caller that resolved something else (the alias moved
    mid-run) gets a conflict and takes the recorded value instead.
    """
    key = f"{PIN_PARAM_PREFIX}/{spec.name}/{spec.alias or 'latest'}"
    with hook.client() as client:
        recorded = client.get_run(parent_run_id).data.params.get(key)
        if recorded is not None:
            return recorded
        value = resolve()
        try:
            client.log_param(parent_run_id, key, value)
            return value
        except MlflowApiError:
            recorded = client.get_run(parent_run_id).data.params.get(key)
            if recorded is None:
                raise
            return recorded


def alias_version(hook: MlflowHook, name: str, alias: str) -> str | None:
    """The version ``alias`` of model ``name`` points to, or None when the model has no such alias yet."""
    with hook.client() as client:
        aliases = client.get_registered_model(name).aliases
    return str(aliases[alias]) if alias in aliases else None
