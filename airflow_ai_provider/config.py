"""Execution modes and provider defaults read from the ``[ai_provider]`` Airflow config section."""

from __future__ import annotations

import os
import tempfile
from enum import Enum

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.get_provider_info import DEFAULT_RUNTIME_IMAGE
from airflow_ai_provider.runtime.contract import MODEL_CACHE_ENV
from airflow_ai_provider.runtime.contract.timeouts import DEFAULT_SERVICE_TIMEOUT, parse_seconds

CONFIG_SECTION = "ai_provider"
DEFAULT_MODEL_CACHE_DIR = os.path.join(tempfile.gettempdir(), f"airflow-ai-model-cache-{os.getuid()}")
DEFAULT_MODEL_CACHE_MAX_MB = 2048
DEFAULT_WARM_RUNTIME_IDLE_SECONDS = 600
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


class ExecutionMode(str, Enum):
    """Where an AI job's runtime runs.

    ``kubernetes``: in its own pod, started by KubernetesPodOperator.
    ``local``: as a subprocess of the Airflow worker, with the same command and result file.
    """

    LOCAL = "local"
    KUBERNETES = "kubernetes"

    @classmethod
    def parse(cls, value: str | ExecutionMode, *, source: str = "execution_mode") -> ExecutionMode:
        """Turn a user-given value into a mode, with an error that names where it came from."""
        if isinstance(value, ExecutionMode):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(mode.value for mode in cls)
            raise AiProviderConfigError(f"invalid {source} {value!r}: expected one of {choices}") from None


def _conf_get(option: str, fallback: str) -> str:
    from airflow.configuration import conf

    return conf.get(CONFIG_SECTION, option, fallback=fallback)


def default_execution_mode() -> ExecutionMode:
    """The mode set by ``[ai_provider] execution_mode`` (env ``AIRFLOW__AI_PROVIDER__EXECUTION_MODE``)."""
    return ExecutionMode.parse(
        _conf_get("execution_mode", ExecutionMode.LOCAL.value),
        source="[ai_provider] execution_mode (AIRFLOW__AI_PROVIDER__EXECUTION_MODE)",
    )


def resolve_execution_mode(value: str | ExecutionMode | None) -> ExecutionMode:
    """The mode an operator's ``execution_mode`` argument chooses; ``None`` means the configured one."""
    if value is None:
        return default_execution_mode()
    return ExecutionMode.parse(value)


def default_runtime_image() -> str:
    """The runtime image used in kubernetes mode when an operator names none."""
    return _conf_get("runtime_image", DEFAULT_RUNTIME_IMAGE)


def service_timeout() -> int:
    """Seconds one try may wait on an MLflow or S3 endpoint that does not answer.

    ``[ai_provider] service_timeout`` (env ``AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT``), default 20. The
    worker's MLflow calls and the runtime's MLflow and S3 clients derive their timeouts and retries
    from it (see :mod:`airflow_ai_provider.runtime.contract.timeouts`).
    """
    raw = _conf_get("service_timeout", str(DEFAULT_SERVICE_TIMEOUT))
    try:
        return parse_seconds(raw)
    except ValueError as err:
        raise AiProviderConfigError(
            f"invalid [ai_provider] service_timeout (AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT) {raw!r}: {err}"
        ) from None


def model_cache_dir() -> str | None:
    """The worker's model cache folder, shared by the local runtimes of every shard and task.

    ``[ai_provider] model_cache_dir`` (env ``AIRFLOW__AI_PROVIDER__MODEL_CACHE_DIR``), default
    ``<temp dir>/airflow-ai-model-cache-<uid>``; an empty value or ``off`` turns the cache off.

    :raises AiProviderConfigError: the folder is not an absolute path.
    """
    raw = _conf_get("model_cache_dir", DEFAULT_MODEL_CACHE_DIR).strip()
    if raw.lower() in ("", "off", "none", "false"):
        return None
    if not os.path.isabs(raw):
        raise AiProviderConfigError(
            f"invalid [ai_provider] model_cache_dir (AIRFLOW__AI_PROVIDER__MODEL_CACHE_DIR) {raw!r}: use an "
            "absolute folder, or 'off'"
        )
    return raw


def model_cache_max_mb() -> int:
    """Megabytes the model cache may hold (``[ai_provider] model_cache_max_mb``, default 2048).

    :raises AiProviderConfigError: the value is not a positive whole number.
    """
    raw = _conf_get("model_cache_max_mb", str(DEFAULT_MODEL_CACHE_MAX_MB)).strip()
    if not raw.isdigit() or int(raw) <= 0:
        raise AiProviderConfigError(
            f"invalid [ai_provider] model_cache_max_mb (AIRFLOW__AI_PROVIDER__MODEL_CACHE_MAX_MB) {raw!r}: "
            "use a positive number of megabytes"
        )
    return int(raw)


def model_cache_env(folder: str | None = None) -> dict[str, str]:
    """``$AI_PROVIDER_MODEL_CACHE`` for a runtime that caches models in ``folder`` (default
    :func:`model_cache_dir`); empty when the cache is off."""
    folder = folder or model_cache_dir()
    if folder is None:
        return {}
    return {MODEL_CACHE_ENV: f"{folder}:{model_cache_max_mb()}"}


def warm_runtime_enabled() -> bool:
    """Whether local runtimes start in the warm runtime server (``[ai_provider] warm_runtime``, env
    ``AIRFLOW__AI_PROVIDER__WARM_RUNTIME``, default ``True``): one process per worker and interpreter
    that imported the heavy libraries once and forks one child per job.

    :raises AiProviderConfigError: the value is not a boolean.
    """
    raw = _conf_get("warm_runtime", "True").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise AiProviderConfigError(
        f"invalid [ai_provider] warm_runtime (AIRFLOW__AI_PROVIDER__WARM_RUNTIME) {raw!r}: use True or False"
    )


def warm_runtime_idle_seconds() -> int:
    """Seconds the warm runtime server stays up without a job (``[ai_provider] warm_runtime_idle_seconds``,
    default 600).

    :raises AiProviderConfigError: the value is not a number of seconds of at least 1.
    """
    raw = _conf_get("warm_runtime_idle_seconds", str(DEFAULT_WARM_RUNTIME_IDLE_SECONDS))
    try:
        return parse_seconds(raw)
    except ValueError as err:
        raise AiProviderConfigError(
            "invalid [ai_provider] warm_runtime_idle_seconds (AIRFLOW__AI_PROVIDER__WARM_RUNTIME_IDLE_SECONDS) "
            f"{raw!r}: {err}"
        ) from None
