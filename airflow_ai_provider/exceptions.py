"""Exceptions raised by the provider's control plane."""

from __future__ import annotations

from airflow.exceptions import AirflowException


class AiProviderError(AirflowException):
    """Base class for this provider's errors."""


class AiProviderConfigError(AiProviderError):
    """A setting or operator argument is invalid."""


class ModelReferenceError(AiProviderError):
    """A model name, alias or version does not exist in the registry."""


class MlflowUnavailableError(AiProviderError):
    """The MLflow tracking server could not be reached."""


class JobFailedError(AiProviderError):
    """The job runtime reported a failure; the message is the runtime's one-line error."""


class ConcurrentPromotionError(AiProviderError):
    """An alias moved since this DAG run saw it; the promotion refuses to overwrite it."""
