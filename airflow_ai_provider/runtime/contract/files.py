"""Atomic file writes both planes use: temporary files named after their target, renamed into place.

A temporary file is named after the file it becomes, so a later try finds and removes what a killed
try left (:func:`remove_stale`)."""

from __future__ import annotations

import contextlib
import os
import secrets


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
