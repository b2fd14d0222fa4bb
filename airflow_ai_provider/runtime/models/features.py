"""The model's input features: an input file's columns and types checked against its signature.

:data:`ACCEPTED` lists, for each MLflow column type, the Arrow types that convert to it safely;
:func:`check_columns` names every missing, extra or mistyped column in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError

_INTS_SMALL = {pa.int8(), pa.int16(), pa.uint8(), pa.uint16()}
INTEGERS = _INTS_SMALL | {pa.int32(), pa.int64(), pa.uint32(), pa.uint64()}
FLOATS = {pa.float16(), pa.float32(), pa.float64()}
_STRINGS = {pa.string(), pa.large_string()}
_BINARY = {pa.binary(), pa.large_binary()}
#: For each MLflow column type: the Arrow types accepted (safe conversions only) and the type to cast to.
ACCEPTED: dict[str, tuple[set[pa.DataType], pa.DataType | None]] = {
    "double": (FLOATS | INTEGERS, pa.float64()),
    "float": ({pa.float16(), pa.float32()} | _INTS_SMALL, pa.float32()),
    "long": (INTEGERS - {pa.uint64()}, pa.int64()),
    "integer": (_INTS_SMALL | {pa.int32()}, pa.int32()),
    "boolean": ({pa.bool_()}, None),
    "string": (_STRINGS, None),
    "binary": (_BINARY, None),
}
_NAMES = {
    pa.float64(): "double",
    pa.float32(): "float",
    pa.int64(): "long",
    pa.int32(): "integer",
    pa.bool_(): "boolean",
    pa.string(): "string",
    pa.large_string(): "string",
}


@dataclass(frozen=True)
class Features:
    """The columns fed to the model, in order, and the Arrow types they are read as (where the
    signature fixes one)."""

    names: list[str]
    types: dict[str, pa.DataType]


def type_name(kind: pa.DataType) -> str:
    """The MLflow name of an Arrow type (``double``, ``long``...), else Arrow's own name."""
    return _NAMES.get(kind, str(kind))


def check_columns(
    schema: pa.Schema,
    signature: Any,
    id_columns: list[str],
    extra_columns: str,
    where: str,
) -> Features:
    """Check one input file's schema against the model's input signature.

    Raises one :class:`JobInputError` naming every missing column, every extra column the model does
    not use (unless ``extra_columns == "ignore"``) and every type mismatch. Safe numeric widening
    (e.g. integer to double) is allowed: columns are cast to the signature's type while reading.
    Without a column signature, all non-id columns are fed to the model.
    """
    present = set(schema.names)
    missing_ids = [name for name in id_columns if name not in present]
    if missing_ids:
        message = f"id column(s) {_quote(missing_ids)} of id_columns not in input {where}"
        raise JobInputError(with_look_alikes(message, missing_ids, schema.names))
    if signature is None or signature.is_tensor_spec() or not signature.has_input_names():
        return Features([name for name in schema.names if name not in id_columns], {})
    specs = signature.inputs
    wanted = {spec.name for spec in specs}
    missing = [spec.name for spec in specs if spec.required and spec.name not in present]
    extra = [name for name in schema.names if name not in wanted and name not in id_columns]
    problems = []
    if missing:
        problems.append(with_look_alikes(f"missing column(s) {_quote(missing)}", missing, schema.names))
    if extra and extra_columns != "ignore":
        problems.append(
            f"extra column(s) {_quote(extra)} not used by the model (list them in id_columns to "
            "keep them, or set extra_columns='ignore')"
        )
    types: dict[str, pa.DataType] = {}
    for spec in specs:
        if spec.name not in present:
            continue
        actual = schema.field(spec.name).type
        expected = getattr(spec.type, "name", None)
        accepted, target = ACCEPTED.get(expected, (None, None))
        if accepted is None:
            continue  # datetime, arrays, objects: left to the model's own checks
        if actual not in accepted and actual != pa.null():  # an all-null column casts to anything
            problems.append(f"column {spec.name!r} is {type_name(actual)}, model expects {expected}")
        elif target is not None:
            types[spec.name] = target
    if problems:
        raise JobInputError(f"input {where} does not match the model signature: {'; '.join(problems)}")
    return Features([spec.name for spec in specs if spec.name in present], types)


def _quote(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)
