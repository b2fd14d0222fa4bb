"""Temporary files of a job: their names, removal of what earlier tries left, atomic writes, full disks.

The names and the atomic write are :mod:`.contract.files` (both planes write files alike); a full disk
or quota is one line naming what was being written."""

from __future__ import annotations

import errno
import os

from airflow_ai_provider.runtime.contract.errors import JobInputError, error_chain
from airflow_ai_provider.runtime.contract.files import (  # noqa: F401 (re-exported for the runtime)
    fresh_temp,
    remove_stale,
    temp_path,
    write_atomic,
)

#: errno values that mean "out of space", with how the message names them.
FULL_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the filesystem or its limits",
}


class StorageFullError(JobInputError):
    """A disk or quota filled up while writing. Not retried at once (the same try would fill it
    again): an operator frees space or points the job elsewhere, then clears the task."""


def full_errno(err: BaseException) -> int | None:
    """The out-of-space errno behind ``err`` (itself or what it was raised from), else ``None``.

    Libraries that collect failures into a message of their own (MLflow's parallel artifact
    downloads) keep only the text, so the message is searched for the errno's text too.
    """
    for seen in error_chain(err):
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return seen.errno
        text = str(seen)
        for code in FULL_ERRNOS:
            if f"[Errno {code}]" in text or os.strerror(code) in text:
                return code
    return None


def storage_full(
    err: BaseException, where: str, remedy: str = "free space there or point the job at another location"
) -> StorageFullError | None:
    """A one-line :class:`StorageFullError` naming ``where`` when ``err`` is out of space, else ``None``."""
    code = full_errno(err)
    if code is None:
        return None
    return StorageFullError(
        f"{FULL_ERRNOS[code]} ({errno.errorcode[code]}) while writing {where}: {remedy}, then clear the "
        "task to run it again"
    )
