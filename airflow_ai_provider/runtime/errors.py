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


def one_line(err: BaseException | str) -> str:
    """``err`` as a single line: whitespace runs (newlines included) collapse to one space."""
    text = " ".join(str(err).split())
    if isinstance(err, BaseException) and not text:
        return type(err).__name__
    return text


class ModelLoadError(JobInputError):
    """The model version exists but cannot be loaded (a missing package, a broken artifact)."""
