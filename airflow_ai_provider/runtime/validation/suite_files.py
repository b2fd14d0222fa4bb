"""The suite a ``validate`` spec names: read from a JSON or YAML file, or taken from the inline list."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.suite import DEFAULT_SUITE_NAME, SuiteDef, parse_suite


def load_suite(params: dict[str, Any]) -> SuiteDef:
    """The suite a ``validate`` spec names: ``params.suite_uri`` or ``params.expectations``."""
    uri, inline, name = params.get("suite_uri"), params.get("expectations"), params.get("suite_name")
    if (uri is None) == (inline is None):
        raise JobInputError("give exactly one of suite_uri (a suite file) and expectations (a list)")
    if name is not None and not isinstance(name, str):
        raise JobInputError(f"suite_name must be a string, got {type(name).__name__}")
    if uri is not None:
        if not isinstance(uri, str) or not uri:
            raise JobInputError(f"suite_uri must be a file URI or path, got {uri!r}")
        return load_suite_file(uri, name)
    if isinstance(inline, str):
        try:
            inline = json.loads(inline)
        except json.JSONDecodeError as err:
            raise JobInputError(f"expectations is a string but not valid JSON: {one_line(err)}") from None
    return parse_suite(inline, name)


def load_suite_file(uri: str, name: str | None = None) -> SuiteDef:
    """Read a suite from a JSON or YAML file (local path, ``file://`` or ``s3://``).

    ``.yaml``/``.yml`` files are read as YAML, anything else as JSON. The default suite name is the
    document's ``name``, else the file name without its suffix.
    """
    text = _read_text(uri)
    stem = uri.rstrip("/").rsplit("/", 1)[-1]
    is_yaml = stem.lower().endswith((".yaml", ".yml"))
    if is_yaml:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise JobInputError(f"suite file {uri} is not valid YAML: {one_line(err)}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise JobInputError(f"suite file {uri} is not valid JSON: {one_line(err)}") from None
    suite = parse_suite(raw, name, where=f"suite file {uri}")
    if not name and not (isinstance(raw, dict) and raw.get("name")):
        suite = SuiteDef(stem.rsplit(".", 1)[0] or DEFAULT_SUITE_NAME, suite.expectations)
    return suite


def _read_text(uri: str) -> str:
    location = storage.parse_uri(uri)
    try:
        info = location.fs.get_file_info(location.path)
        if info.type != pafs.FileType.File:
            raise JobInputError(f"suite file not found: {uri} (check suite_uri)")
        with location.fs.open_input_stream(location.path) as stream:
            data = stream.read()
    except (OSError, pa.ArrowException) as err:
        raise storage.storage_error(err, uri, "cannot read suite file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise JobInputError(f"suite file {uri} is not UTF-8 text") from None
