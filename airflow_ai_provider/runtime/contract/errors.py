"""Errors the runtime reports as a one-line message in its result."""

from __future__ import annotations

import re
from collections.abc import Iterator

# What a message must never echo: a URI's userinfo and the values of credential query parameters.
# (The control plane refuses such URIs before a job starts; this covers what reaches the runtime
# anyway, e.g. from its environment or a library's error text.)
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]+@")
_SECRET_PARAM = re.compile(
    r"([?&][^=&\s]*(?:token|signature|credential|secret|password|passwd|sig|key)[^=&\s]*=)[^&\s'\"]+", re.I
)
#: How many links of an exception chain :func:`error_chain` follows.
CHAIN_DEPTH = 10


class JobError(Exception):
    """A job failed for a reason the user can act on. The message is one line."""

    retryable = False


class JobInputError(JobError):
    """Bad input: spec, data, columns, model reference or output location. A retry cannot help."""


class JobServiceError(JobError):
    """A service (MLflow, object storage) could not be reached. A retry may help."""

    retryable = True


def scrub_credentials(text: str) -> str:
    """``text`` with URI userinfo and credential query values replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def one_line(err: BaseException | str) -> str:
    """``err`` as a single line without credentials: whitespace runs (newlines included) collapse to
    one space, and URIs lose their userinfo and credential query values (:func:`scrub_credentials`)."""
    text = scrub_credentials(" ".join(str(err).split()))
    if isinstance(err, BaseException) and not text:
        return type(err).__name__
    return text


class ModelLoadError(JobInputError):
    """The model version exists but cannot be loaded (a missing package, a broken artifact)."""


def clip(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def brief(err: BaseException | str, limit: int = 300) -> str:
    """``err`` on one line (:func:`one_line`), cut to ``limit`` characters (a library's own message
    can run long)."""
    return clip(one_line(err), limit)


def error_chain(err: BaseException, depth: int = CHAIN_DEPTH) -> Iterator[BaseException]:
    """``err``, then what it was raised from or during (``__cause__``, else ``__context__``), and so on,
    at most ``depth`` exceptions."""
    seen: BaseException | None = err
    for _ in range(depth):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__
