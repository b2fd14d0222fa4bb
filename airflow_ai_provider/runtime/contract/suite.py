"""Expectation suites for the ``validate`` job: read from a JSON or YAML file or given inline.

Two shapes are accepted, in a file or inline:

- Great Expectations' own suite format: ``{"name": "churn", "expectations": [{"type": ..., "kwargs":
  {...}, "meta": {...}}, ...]}`` (extra suite keys such as ``id``, ``meta`` or ``notes`` are ignored;
  the 0.x key ``expectation_type`` is read as ``type``);
- a plain list of expectations: ``[{"type": "expect_column_values_to_not_be_null", "kwargs":
  {"column": "customer_id"}}, ...]``.

Parsing needs no Great Expectations import, so the operator can check an inline suite when the DAG
is parsed; :func:`to_gx_suite` checks expectation types and arguments against Great Expectations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line

DEFAULT_SUITE_NAME = "expectations"
#: Expectation arguments that name data columns.
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)
#: Expectations whose column arguments are what they check, not columns that must exist beforehand.
SCHEMA_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_columns_to_match_set",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)


@dataclass(frozen=True)
class ExpectationDef:
    """One expectation: its Great Expectations type and arguments."""

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The data columns the expectation is about, in argument order."""
        names = [self.kwargs[key] for key in COLUMN_KWARGS if isinstance(self.kwargs.get(key), str)]
        for key in COLUMN_LIST_KWARGS:
            value = self.kwargs.get(key)
            if isinstance(value, (list, tuple)) and self.type not in SCHEMA_EXPECTATIONS:
                names.extend(str(name) for name in value)
        return names

    @property
    def label(self) -> str:
        """``type(column, ...)``, or the bare type for table-level expectations."""
        columns = self.columns
        return f"{self.type}({', '.join(columns)})" if columns else self.type


@dataclass(frozen=True)
class SuiteDef:
    """A named list of expectations."""

    name: str
    expectations: list[ExpectationDef]

    @property
    def path_name(self) -> str:
        """The suite name made safe for one path segment (report folder)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or DEFAULT_SUITE_NAME


def parse_suite(raw: Any, name: str | None = None, where: str = "expectations") -> SuiteDef:
    """Build a suite from decoded JSON/YAML: a GX suite object or a list of expectations.

    :param raw: the decoded document.
    :param name: the suite name; default the document's ``name``, else :data:`DEFAULT_SUITE_NAME`.
    :param where: what the document is, for error messages (a file URI or ``expectations``).
    """
    if isinstance(raw, dict):
        if "expectations" not in raw:
            raise JobInputError(
                f"{where} must be a list of expectations or a suite object with an 'expectations' list"
            )
        items = raw["expectations"]
        name = name or (str(raw["name"]) if raw.get("name") else None)
    else:
        items = raw
    if not isinstance(items, list):
        raise JobInputError(f"{where}: 'expectations' must be a list, got {type(items).__name__}")
    if not items:
        raise JobInputError(f"{where} has no expectations: add at least one")
    return SuiteDef(
        name or DEFAULT_SUITE_NAME, [_parse_item(item, pos, where) for pos, item in enumerate(items)]
    )


def _parse_item(item: Any, position: int, where: str) -> ExpectationDef:
    at = f"{where}: expectation #{position + 1}"
    if not isinstance(item, dict):
        raise JobInputError(f"{at} must be an object with 'type' and 'kwargs', got {type(item).__name__}")
    kind = item.get("type", item.get("expectation_type"))
    if not isinstance(kind, str) or not kind:
        raise JobInputError(f"{at} has no 'type' (e.g. \"expect_column_values_to_not_be_null\")")
    kwargs = item.get("kwargs") or {}
    meta = item.get("meta") or {}
    if not isinstance(kwargs, dict):
        raise JobInputError(f"{at} ({kind}): 'kwargs' must be an object")
    if not isinstance(meta, dict):
        raise JobInputError(f"{at} ({kind}): 'meta' must be an object")
    return ExpectationDef(kind, dict(kwargs), dict(meta))


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
    import pyarrow as pa
    import pyarrow.fs as pafs

    from airflow_ai_provider.runtime import storage

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


def check_columns(suite: SuiteDef, columns: list[str]) -> None:
    """Raise one :class:`JobInputError` for the first expectation on a column the data lacks."""
    present = set(columns)
    for expectation in suite.expectations:
        if expectation.type in SCHEMA_EXPECTATIONS:
            continue
        missing = [name for name in expectation.columns if name not in present]
        if missing:
            message = (
                f"expectation {expectation.label} of suite {suite.name} names column(s) "
                f"{', '.join(map(repr, missing))} not in the data; available columns: {', '.join(columns)}"
            )
            raise JobInputError(with_look_alikes(message, missing, columns))


def to_gx_suite(suite: SuiteDef, positions: list[int] | None = None) -> Any:
    """A Great Expectations ``ExpectationSuite`` of the expectations at ``positions`` (default all).

    Each expectation's ``meta`` gets ``_position`` (its index in ``suite``) so results can be matched
    back. Unknown types and invalid arguments raise a :class:`JobInputError` naming the expectation.
    """
    from great_expectations.core import ExpectationSuite

    chosen = range(len(suite.expectations)) if positions is None else positions
    # Built in one go: adding one by one would replace an earlier expectation of the same type on
    # the same column (Great Expectations upserts by domain), silently dropping part of the suite.
    return ExpectationSuite(
        name=suite.name,
        expectations=[gx_configuration(suite.expectations[p], p).to_domain_obj() for p in chosen],
    )


def gx_configuration(expectation: ExpectationDef, position: int) -> Any:
    """The Great Expectations configuration of one expectation, with its arguments checked."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectation_class(expectation.type)
    try:
        config = ExpectationConfiguration(
            type=expectation.type,
            kwargs=dict(expectation.kwargs),
            meta={**expectation.meta, "_position": position},
        )
        config.to_domain_obj()
    except Exception as err:  # pydantic validation errors of each expectation class
        first = one_line(err)
        raise JobInputError(
            f"expectation #{position + 1} {expectation.label} has invalid kwargs {sorted(expectation.kwargs)}: {first}"
        ) from None
    return config


def expectation_class(kind: str) -> type:
    """The Great Expectations class implementing ``kind``; :class:`JobInputError` when unknown."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(kind)
    except ExpectationNotFoundError:
        raise JobInputError(
            f"unknown expectation type {kind!r}: use a Great Expectations 1.x expectation name "
            "such as expect_column_values_to_not_be_null"
        ) from None
