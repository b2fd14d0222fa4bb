"""Expectation suites for the ``validate`` job: their shape, parsing and the columns they name.

Two shapes are accepted, in a file or inline:

- Great Expectations' own suite format: ``{"name": "churn", "expectations": [{"type": ..., "kwargs":
  {...}, "meta": {...}}, ...]}`` (extra suite keys such as ``id``, ``meta`` or ``notes`` are ignored;
  the 0.x key ``expectation_type`` is read as ``type``);
- a plain list of expectations: ``[{"type": "expect_column_values_to_not_be_null", "kwargs":
  {"column": "customer_id"}}, ...]``.

Parsing needs no Great Expectations import, so the operator can check an inline suite when the DAG
is parsed. The job reads suite files with :mod:`airflow_ai_provider.runtime.validation.suite_files`
and checks expectation types and arguments against Great Expectations with
:mod:`airflow_ai_provider.runtime.validation.gx_suite`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError

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
