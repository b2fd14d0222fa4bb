"""Object storage for DAG code in the worker: file:// and s3:// locations, with the runtime's S3 settings.

Template ``@task`` code reads and writes data through these functions, so a data root may be a
local folder or an S3 prefix (AWS, MinIO) alike. With ``aws_conn_id`` the S3 settings come from that
Airflow AWS connection, exactly as a local runtime of the same task gets them
(:func:`~airflow_ai_provider.aws_credentials.aws_runtime_env` over the worker's environment);
without it from the worker's own AWS environment (variables, instance role, IRSA). Endpoint,
region and the pyarrow options are derived by :mod:`airflow_ai_provider.runtime.contract.locations`,
the same code the runtime uses.

Failures follow the provider's rule. Bad input (an unparseable URI, an unknown scheme, a missing
file, a refused request) raises :class:`~airflow_ai_provider.exceptions.AiProviderConfigError`,
never retried. Storage that does not answer raises
:class:`~airflow_ai_provider.exceptions.StorageUnavailableError`, retried by Airflow; each S3
request waits at most ``[ai_provider] service_timeout`` seconds, its attempts included. Messages
name the URI and the endpoint, never a credential.

Names starting with ``.`` or ``_`` are hidden, as for the runtime's input listing: a local write's
temporary file is one.
"""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from airflow_ai_provider.aws_credentials import aws_runtime_env
from airflow_ai_provider.config import service_timeout
from airflow_ai_provider.credentials import refuse_uri_credentials, scrub_uri
from airflow_ai_provider.exceptions import AiProviderConfigError, StorageUnavailableError
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.locations import (
    is_unreachable,
    join_uri,
    s3_endpoint,
    s3_filesystem_options,
    split_uri,
)
from airflow_ai_provider.runtime.contract.timeouts import ServiceBounds, is_timeout

HIDDEN_PREFIXES = (".", "_")


@dataclass(frozen=True)
class StoredFile:
    """One file in a folder: its URI, size in bytes and modification time (epoch seconds, ``None``
    when the store does not say)."""

    uri: str
    size: int
    modified: float | None


@dataclass(frozen=True)
class _Store:
    """A location resolved to its filesystem, with what error messages name."""

    scheme: str
    path: str
    fs: Any
    endpoint: str
    bounds: ServiceBounds

    @property
    def uri(self) -> str:
        return join_uri(self.scheme, self.path)

    def locate(self, uri: str) -> str:
        """The path of another URI on the same filesystem (``move``'s target)."""
        scheme, path = _split(uri)
        if scheme != self.scheme:
            raise AiProviderConfigError(
                f"cannot move {self.uri} to {join_uri(scheme, path)}: both must be file:// or both s3://"
            )
        return path


def data_uri(root: str, *parts: str) -> str:
    """The URI of ``parts`` under a data root: ``"/tmp/x", "a"`` -> ``file:///tmp/x/a``;
    ``"s3://b/p", "a"`` -> ``s3://b/p/a``.

    ``root`` is a local path (``/tmp/x`` means ``file:///tmp/x``), a ``file://`` or an ``s3://``
    URI. Parts are joined with ``/`` as given (Jinja in them is left to render later).

    :raises AiProviderConfigError: ``root`` is empty, has another scheme or an S3 URI no bucket.
    """
    if not isinstance(root, str) or not root.strip():
        raise AiProviderConfigError(
            f"data root {root!r} is empty: set AI_TEMPLATES_DATA_ROOT to a folder, file:// or s3:// URI"
        )
    try:
        base = join_uri(*_split(root.strip()))
    except AiProviderConfigError as err:
        raise AiProviderConfigError(f"data root: {err}") from None
    tail = "/".join(part.strip("/") for part in parts if part.strip("/"))
    if not tail:
        return base
    return f"{base}{'' if base.endswith('/') else '/'}{tail}"


@contextmanager
def filesystem(
    uri: str, *, what: str = "cannot access", aws_conn_id: str | None = None
) -> Iterator[tuple[Any, str]]:
    """The ``pyarrow.fs`` filesystem of ``uri`` and the path in it, for pyarrow readers and writers
    (``with filesystem(uri) as (fs, path): pyarrow.parquet.read_schema(path, filesystem=fs)``).

    Storage errors in the block are mapped as this module's own: ``what`` and ``uri`` in one line,
    retryable when the store did not answer, else bad input.
    """
    store = _store(uri, aws_conn_id)
    with _mapped(store, what):
        yield store.fs, store.path


def list_files(
    uri: str,
    *,
    suffixes: tuple[str, ...] = (),
    aws_conn_id: str | None = None,
    names: tuple[str, ...] = (),
) -> list[StoredFile]:
    """The files directly in the folder ``uri`` (not in its subfolders), sorted by URI.

    :param suffixes: keep only names ending in one of these (case-insensitive), e.g.
        ``(".parquet", ".csv")``; empty keeps every file. Hidden names are left out.
    :param names: exact file names kept as well, hidden or not (a ``_SUCCESS`` marker).
    :return: ``[]`` for a missing or empty folder.
    """
    import pyarrow.fs as pafs

    store = _store(uri, aws_conn_id)
    wanted = tuple(suffix.lower() for suffix in suffixes)
    with _mapped(store, "cannot list"):
        infos = store.fs.get_file_info(pafs.FileSelector(store.path, allow_not_found=True))
    files = [
        StoredFile(
            join_uri(store.scheme, info.path),
            int(info.size or 0),
            None if info.mtime_ns is None else info.mtime_ns / 1e9,
        )
        for info in infos
        if info.type == pafs.FileType.File
        and (
            info.base_name in names
            or (
                not info.base_name.startswith(HIDDEN_PREFIXES)
                and (not wanted or info.base_name.lower().endswith(wanted))
            )
        )
    ]
    return sorted(files, key=lambda stored: stored.uri)


def move(source_uri: str, target_uri: str, *, aws_conn_id: str | None = None) -> None:
    """Move one file: a rename locally, a copy then a delete on S3; an existing target is replaced.

    A retry after a move that completed (no source, the target there) does nothing; a retry after
    a copy that completed without its delete copies again and deletes.

    :raises AiProviderConfigError: neither the source nor the target exists, the source is not a
        file, or the two URIs are on different schemes.
    """
    import pyarrow.fs as pafs

    store = _store(source_uri, aws_conn_id)
    target = store.locate(target_uri)
    fs = store.fs
    with _mapped(store, "cannot move"):
        source_type = fs.get_file_info(store.path).type
        if source_type == pafs.FileType.NotFound:
            if fs.get_file_info(target).type == pafs.FileType.File:
                return  # moved by an earlier try
            raise AiProviderConfigError(f"cannot move {store.uri}: no such file (nor at {target_uri})")
        if source_type != pafs.FileType.File:
            raise AiProviderConfigError(f"cannot move {store.uri}: not a file")
        if target == store.path:
            return
        if store.scheme == "file":
            fs.create_dir(os.path.dirname(target), recursive=True)
            fs.move(store.path, target)
        else:
            fs.copy_file(store.path, target)
            fs.delete_file(store.path)


def read_bytes(uri: str, *, aws_conn_id: str | None = None) -> bytes:
    """The whole content of the file ``uri``.

    :raises AiProviderConfigError: no file there (or it cannot be read).
    """
    import pyarrow.fs as pafs

    store = _store(uri, aws_conn_id)
    with _mapped(store, "cannot read"):
        if store.fs.get_file_info(store.path).type != pafs.FileType.File:
            raise AiProviderConfigError(f"cannot read {store.uri}: no such file")
        with store.fs.open_input_stream(store.path) as stream:
            return stream.read()


def write_bytes(uri: str, data: bytes, *, aws_conn_id: str | None = None) -> None:
    """Write the file ``uri`` atomically, replacing it: readers see the old file or the whole new one.

    Locally a hidden temporary file in the same folder is renamed over the target (removed again
    if the write fails, and the temporary files a killed earlier write of the same file left are
    removed once this one is in place); on S3 an object is visible only once its upload completed.
    """
    store = _store(uri, aws_conn_id)
    fs = store.fs
    with _mapped(store, "cannot write"):
        if store.scheme == "s3":
            with fs.open_output_stream(store.path) as out:
                out.write(data)
            return
        folder, name = os.path.split(store.path)
        fs.create_dir(folder, recursive=True)
        temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with fs.open_output_stream(temporary) as out:
                out.write(data)
            fs.move(temporary, store.path)
        except BaseException:
            with suppress(OSError):
                fs.delete_file(temporary)
            raise
        for leftover in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
            with suppress(OSError):  # what a killed earlier write of this file left behind
                os.remove(leftover)


# --- internals ---------------------------------------------------------------------------------------


def _split(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.strip():
        raise AiProviderConfigError(f"storage URI {uri!r} is empty: give a folder, file:// or s3:// URI")
    refuse_uri_credentials(uri, "storage URI")
    try:
        return split_uri(uri)
    except JobInputError as err:
        raise AiProviderConfigError(str(err)) from None


def _store(uri: str, aws_conn_id: str | None) -> _Store:
    """The filesystem of ``uri``: local, or S3 with the connection's settings over the environment."""
    import pyarrow.fs as pafs

    scheme, path = _split(uri)
    bounds = ServiceBounds(service_timeout())
    if scheme == "file":
        return _Store(scheme, path, pafs.LocalFileSystem(), "local disk", bounds)
    environ = {**os.environ, **aws_runtime_env(aws_conn_id)}
    endpoint = scrub_uri(s3_endpoint(environ) or "AWS S3")
    try:
        fs = pafs.S3FileSystem(**s3_filesystem_options(environ, bounds))
    except (OSError, ValueError, TypeError) as err:
        raise AiProviderConfigError(f"S3 settings for {join_uri(scheme, path)}: {one_line(err)}") from None
    return _Store(scheme, path, fs, endpoint, bounds)


@contextmanager
def _mapped(store: _Store, what: str) -> Iterator[None]:
    """Storage errors of the block as the provider's: retryable when the store did not answer, else
    bad input, in one line naming ``store``'s URI."""
    try:
        yield
    except OSError as err:
        text = one_line(err)
        if store.scheme == "s3" and is_unreachable(err):
            if is_timeout(err):
                failure = (
                    f"did not answer within {store.bounds.s3_worst_case} s "
                    f"([ai_provider] service_timeout): {text}"
                )
            else:
                failure = f"could not be reached: {text}"
            raise StorageUnavailableError(
                f"{what} {store.uri}: object storage at {store.endpoint} {failure}"
            ) from None
        raise AiProviderConfigError(f"{what} {store.uri}: {text}") from None
