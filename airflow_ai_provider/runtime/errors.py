"""Errors the runtime reports as a one-line message in its result."""

from __future__ import annotations


class JobError(Exception):
    """A job failed for a reason the user can act on. The message is one line."""

    retryable = False


class JobInputError(JobError):
    """Bad input: spec, data, columns, model reference or output location. A retry cannot help."""


class JobServiceError(JobError):
    """A service (MLflow, object storage) could not be reached. A retry may help."""

    retryable = True
