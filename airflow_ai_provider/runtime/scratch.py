"""Temporary files of a job: their names, removal of what earlier tries left, atomic writes, full disks.

A temporary file is named after the file it becomes, so a later try finds and removes it; a full disk
or quota is one line naming what was being written."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets

from airflow_ai_provider.runtime.contract.errors import JobInputError, error_chain

#: errno values that mean "out of space", with how the message names them.
FULL_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the filesystem or its limits",
}


class StorageFullError(JobInputError):
    """A disk or quota filled up while writing. Not retried at once (the same try would fill it
    again): an operator frees space or points the job elsewhere, then clears the task."""


def temp_path(folder: str, name: str, tag: str = "") -> str:
    """A fresh temporary path in ``folder`` for a file that becomes ``name``:
    ``.<name>.[<tag>.]<token>.tmp``, so that :func:`remove_stale` of a later try finds it."""
    return os.path.join(folder, f"{_prefix(name, tag)}{secrets.token_hex(8)}.tmp")


def remove_stale(folder: str, name: str, tag: str = "") -> list[str]:
    """Delete the temporary files for ``name`` (and ``tag``) that earlier tries left in ``folder``."""
    prefix = _prefix(name, tag)
    removed: list[str] = []
    try:
        entries = os.scandir(folder)
    except OSError:
        return removed
    with entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                    os.remove(entry.path)
                    removed.append(entry.path)
    return removed


def fresh_temp(folder: str, name: str, tag: str = "") -> str:
    """Remove the temporary files earlier tries left in ``folder`` for ``name`` (and ``tag``), then
    create an empty new one (:func:`temp_path`) and return its path.

    Not :func:`tempfile.mkstemp`: its 0600 mode would stick to the published file; this honours the
    umask.
    """
    remove_stale(folder, name, tag)
    path = temp_path(folder, name, tag)
    with open(path, "xb"):
        pass
    return path


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, synced and renamed over
    ``path``: readers see the old file or the whole new one. The folder is created if needed, and the
    temporary files an earlier, killed try left for ``path`` are removed first."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = fresh_temp(folder, name)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise


def _prefix(name: str, tag: str) -> str:
    return f".{name}.{tag}." if tag else f".{name}."


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
