"""Input files: listing URIs, folders and globs, reading each file's metadata, naming an unreadable file."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from airflow_ai_provider.runtime.contract.columns import check_unique_names
from airflow_ai_provider.runtime.contract.errors import JobInputError, clip, one_line
from airflow_ai_provider.runtime.contract.params import FORMATS
from airflow_ai_provider.runtime.storage.locations import Location, parse_uri, storage_error

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_FOOTER_TAIL = 64 << 10


@dataclass(frozen=True)
class InputFile:
    """One input file with its size and format."""

    location: Location
    size: int
    format: str

    @property
    def uri(self) -> str:
        return self.location.uri


@dataclass
class FileMeta:
    """What the planner knows about one input file before reading it."""

    file: InputFile
    schema: pa.Schema
    row_group_rows: list[int] = field(default_factory=list)
    parquet_metadata: Any = None
    fingerprint: str = ""


# --- listing ---------------------------------------------------------------------------------------


def _format_of(name: str) -> str | None:
    lower = name.lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if lower.endswith(suffix)), None)


def _visible(path: str, root: str) -> bool:
    relative = path[len(root) :].strip("/")
    return not any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def _file_info(fs: pafs.FileSystem, target: str | pafs.FileSelector, uri: str, what: str) -> Any:
    """``fs.get_file_info(target)``, a storage failure mapped to a one-line error about ``uri``."""
    try:
        return fs.get_file_info(target)
    except OSError as err:
        raise storage_error(err, uri, what) from None


def _expand(uri: str, input_format: str | None) -> list[tuple[Location, int]]:
    location = parse_uri(uri)
    fs = location.fs
    parent, _, last = location.path.rpartition("/")
    if any(char in last for char in "*?["):
        infos = _file_info(fs, pafs.FileSelector(parent, allow_not_found=True), uri, "cannot list input")
        matched = [
            (Location(location.scheme, info.path), info.size)
            for info in infos
            if info.type == pafs.FileType.File
            and fnmatch.fnmatchcase(info.base_name, last)
            and (last.startswith(("_", ".")) or not info.base_name.startswith(("_", ".")))
        ]
        if not matched:
            raise JobInputError(f"input glob matches no file: {uri}")
        return matched
    info = _file_info(fs, location.path, uri, "cannot read input")
    if info.type == pafs.FileType.File:
        return [(location, info.size)]
    if info.type != pafs.FileType.Directory:
        raise JobInputError(f"input not found: {uri}")
    infos = _file_info(fs, pafs.FileSelector(location.path, recursive=True), uri, "cannot list input")
    wanted = (lambda name: _format_of(name) == input_format) if input_format else _format_of
    found = [
        (Location(location.scheme, info.path), info.size)
        for info in infos
        if info.type == pafs.FileType.File and _visible(info.path, location.path) and wanted(info.base_name)
    ]
    if not found:
        kinds = " / ".join(f"*{suffix}" for suffix, fmt in SUFFIXES.items() if fmt == (input_format or fmt))
        raise JobInputError(f"input folder has no {kinds} files: {uri}")
    return found


def list_inputs(uris: list[str], input_format: str | None = None) -> list[InputFile]:
    """Expand input URIs (files, folders, globs) to a sorted, de-duplicated list of files of one format.

    Folders are listed recursively; names starting with ``_`` or ``.`` are skipped. The format comes
    from ``input_format`` or else from the file suffix, and all files must share it.
    """
    if input_format is not None and input_format not in FORMATS:
        raise JobInputError(f"input_format must be one of {', '.join(FORMATS)}, got {input_format!r}")
    sized: dict[Location, int] = {}
    for uri in uris:
        for location, size in _expand(uri, input_format):
            sized.setdefault(location, size)
    files = []
    for location in sorted(sized, key=lambda loc: loc.uri):
        fmt = input_format or _format_of(location.path)
        if fmt is None:
            suffix = os.path.splitext(location.path)[1] or "no suffix"
            raise JobInputError(
                f"cannot tell the format of input {location.uri} ({suffix}): give Parquet (.parquet, .pq) "
                "or CSV (.csv) files, or set input_format to parquet or csv if the file is one of those"
            )
        files.append(InputFile(location, sized[location], fmt))
    formats = sorted({f.format for f in files})
    if len(formats) > 1:
        examples = ", ".join(next(f.uri for f in files if f.format == fmt) for fmt in formats)
        raise JobInputError(
            f"inputs mix formats {' and '.join(formats)} (e.g. {examples}): give files of one format, "
            "or set input_format to read only those"
        )
    return files


# --- metadata --------------------------------------------------------------------------------------


def _parquet_meta(file: InputFile) -> FileMeta:
    import pyarrow.parquet as pq

    try:
        with file.location.fs.open_input_file(file.location.path) as handle:
            size = handle.size()
            tail = handle.read_at(min(size, _FOOTER_TAIL), max(size - _FOOTER_TAIL, 0))
            if size < 12 or tail[-4:] != b"PAR1":
                raise JobInputError(f"input file is not a Parquet file (no PAR1 footer): {file.uri}")
            footer_len = int.from_bytes(tail[-8:-4], "little")
            if footer_len + 8 <= len(tail):
                footer = tail[-8 - footer_len : -8]
            else:
                footer = handle.read_at(footer_len, size - 8 - footer_len)
            metadata = pq.read_metadata(handle)
    except (OSError, pa.ArrowException) as err:
        raise storage_error(err, file.uri, "input file is not a readable Parquet file") from None
    rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    try:
        schema = metadata.schema.to_arrow_schema()
    except (pa.ArrowException, ValueError) as err:
        raise JobInputError(
            f"input file {file.uri} has a Parquet schema Arrow cannot read: {one_line(err)}"
        ) from None
    check_unique_names(schema.names, file.uri)
    return FileMeta(file, schema, rows, metadata, hashlib.sha256(footer).hexdigest())


def _csv_meta(file: InputFile) -> FileMeta:
    import pyarrow.csv as pacsv

    try:
        with file.location.fs.open_input_stream(file.location.path) as stream:
            schema = pacsv.open_csv(stream).schema
    except (OSError, pa.ArrowException) as err:
        if "CSV parse error" in str(err):
            raise read_error(err, FileMeta(file, pa.schema([]))) from None
        raise storage_error(err, file.uri, "input file is not a readable CSV file") from None
    check_unique_names(schema.names, file.uri)
    return FileMeta(file, schema)


def read_metadata(files: list[InputFile]) -> list[FileMeta]:
    """Read each file's schema (and for Parquet its row groups and footer), a few files at a time."""
    reader = _parquet_meta if files[0].format == "parquet" else _csv_meta
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        return list(pool.map(reader, files))


# --- reading errors --------------------------------------------------------------------------------


def printable(text: str, limit: int = 300) -> str:
    """``text`` with control and other unprintable characters (binary data) shown as ``?``, cut to
    ``limit`` characters: a parser's message may quote a line of a file that is not text."""
    return clip("".join(char if char.isprintable() else "?" for char in text), limit)


def read_error(err: Exception, meta: FileMeta) -> Exception:
    """A reading failure as a one-line job error naming the file and, for CSV, the row or column."""
    text = printable(one_line(err))
    if meta.file.format == "csv":
        found = re.search(r"In CSV column #(\d+): CSV conversion error to (\w+)", text)
        if found and int(found.group(1)) < len(meta.schema.names):
            column = meta.schema.names[int(found.group(1))]
            return JobInputError(
                f"input file {meta.file.uri}: column {column!r} has a value that is not {found.group(2)} "
                f"({text}): fix the value or give the column one type in every row"
            )
        if "CSV parse error" in text:
            return JobInputError(
                f"input file {meta.file.uri} is not valid CSV ({text}): every row needs as many fields "
                "as the header"
            )
    if isinstance(err, (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)):
        return JobInputError(f"cannot read input file {meta.file.uri}: {text}")
    return storage_error(err, meta.file.uri, "cannot read input file")
