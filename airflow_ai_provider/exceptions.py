"""Exceptions raised by the provider's control plane, classified as bad input or infrastructure.

Bad input or configuration subclasses :class:`~airflow.sdk.exceptions.AirflowFailException`, so
Airflow fails the task at once instead of retrying something a retry cannot fix. It also subclasses
the runtime's :class:`~airflow_ai_provider.runtime.contract.errors.JobInputError`, so one ``except`` catches
bad input wherever it was detected. Infrastructure errors (:class:`MlflowUnavailableError`,
:class:`StorageUnavailableError`, :class:`JobFailedError` with a retryable cause) are plain Airflow
exceptions: they are retried.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_ai_provider.runtime.contract.errors import JobInputError


class AiProviderError(AirflowException):
    """Base class for this provider's errors."""


class AiProviderConfigError(AiProviderError, AirflowFailException, JobInputError):
    """A setting or operator argument is invalid: never retried."""


class ModelReferenceError(AiProviderConfigError):
    """A model name, alias or version does not exist in the registry: never retried."""


class ConcurrentPromotionError(AiProviderConfigError):
    """An alias moved since this DAG run saw it; the promotion refuses to overwrite it (not retried:
    the DAG run must be re-run to evaluate against the new version)."""


class MlflowUnavailableError(AiProviderError):
    """The MLflow tracking server could not be reached or did not answer in time: retried."""


class StorageUnavailableError(AiProviderError):
    """Object storage could not be reached or did not answer in time: retried."""


class JobFailedError(AiProviderError):
    """The job runtime reported a retryable failure; the message is the runtime's one-line error."""
