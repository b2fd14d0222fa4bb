"""The model's input features: an input file's columns and types checked against its signature.

:data:`ACCEPTED` lists, for each MLflow column type, the Arrow types that convert to it safely;
:func:`check_columns` names every missing, extra or mistyped column in one line. Text columns must be
Arrow strings, ``Array`` columns lists of the right element type, and a tensor signature's input one
list column of the tensor's width or that many numeric columns (:class:`TensorInput`).
"""

from __future__ import annotations

import math
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
class TensorInput:
    """A tensor signature's input: its numpy ``dtype`` and ``shape`` (``-1`` first, the rows), fed
    from one list column (``from_list``) or from numeric columns, one per value of a row."""

    dtype: str
    shape: tuple[int, ...]
    from_list: bool

    @property
    def width(self) -> int:
        """Values per row."""
        return math.prod(self.shape[1:])

    def describe(self) -> str:
        return f"a {self.dtype} tensor of shape {self.shape}"


@dataclass(frozen=True)
class Features:
    """The columns fed to the model, in order, the Arrow types they are read as (where the
    signature fixes one) and, for a tensor signature, the tensor they become."""

    names: list[str]
    types: dict[str, pa.DataType]
    tensor: TensorInput | None = None


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
    if signature is not None and signature.is_tensor_spec() and len(signature.inputs) == 1:
        return _check_tensor(schema, signature.inputs[0], id_columns, extra_columns, where)
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
        if type(spec.type).__name__ == "Array":
            problems.extend(_check_array(spec.name, actual, spec.type))
            continue
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


def _check_array(name: str, actual: pa.DataType, expected: Any) -> list[str]:
    """An ``Array(<type>)`` column: a list column whose elements convert to ``<type>``."""
    element = getattr(expected.dtype, "name", None)
    accepted, _ = ACCEPTED.get(element, (None, None))
    if accepted is None or actual == pa.null():
        return []  # arrays of arrays or objects: left to the model's own checks
    if not _is_list(actual):
        return [f"column {name!r} is {type_name(actual)}, model expects an array of {element}"]
    if actual.value_type not in accepted:
        return [
            f"column {name!r} holds {type_name(actual.value_type)} values, model expects an array of {element}"
        ]
    return []


def _check_tensor(
    schema: pa.Schema, spec: Any, id_columns: list[str], extra_columns: str, where: str
) -> Features:
    """A one-tensor signature: one list column of the tensor's width and element type (the one named
    as the tensor, or the only list column), or as many numeric columns as a row has values."""
    import numpy as np

    shape = tuple(int(size) for size in spec.shape)
    candidates = [name for name in schema.names if name not in id_columns]
    if not shape or shape[0] != -1 or any(size < 0 for size in shape[1:]):
        return Features(candidates, {})  # variable-size tensors: left to the model's own checks
    tensor = TensorInput(str(np.dtype(spec.type)), shape, True)
    lists = [name for name in candidates if _is_list(schema.field(name).type)]
    fail = f"input {where} does not match the model signature ({tensor.describe()})"
    if lists:
        column = spec.name if spec.name in lists else lists[0] if len(lists) == 1 else None
        if column is None:
            raise JobInputError(f"{fail}: list columns {_quote(lists)} for one tensor; keep one of them")
        others = [name for name in candidates if name != column]
        if others and extra_columns != "ignore":
            raise JobInputError(
                f"{fail}: extra column(s) {_quote(others)} next to the tensor column {column!r} (list them "
                "in id_columns to keep them, or set extra_columns='ignore')"
            )
        kind = schema.field(column).type
        if not _casts(kind.value_type, tensor.dtype):
            raise JobInputError(
                f"{fail}: column {column!r} holds {type_name(kind.value_type)} values; write it as a list "
                f"of {tensor.dtype}"
            )
        if pa.types.is_fixed_size_list(kind) and kind.list_size != tensor.width:
            raise JobInputError(
                f"{fail}: column {column!r} has {kind.list_size} values a row, the model takes {tensor.width}"
            )
        return Features([column], {}, tensor)
    wrong = [name for name in candidates if not _casts(schema.field(name).type, tensor.dtype)]
    if wrong:
        found = ", ".join(f"{name!r} ({type_name(schema.field(name).type)})" for name in wrong)
        raise JobInputError(f"{fail}: column(s) {found} do not convert to {tensor.dtype}; cast them")
    if len(candidates) != tensor.width:
        raise JobInputError(
            f"{fail}: {len(candidates)} feature column(s) for {tensor.width} values a row; give "
            f"{tensor.width} numeric columns or one list column of {tensor.width} values"
        )
    return Features(candidates, {}, TensorInput(tensor.dtype, shape, False))


def tensor_input(batch: pa.RecordBatch, names: list[str], tensor: TensorInput) -> Any:
    """A batch's feature columns as one numpy array of the tensor's dtype and shape: a list column's
    flat values (no copy when they already are that dtype), or the numeric columns side by side."""
    import numpy as np
    import pyarrow.compute as pc

    rows, dtype = batch.num_rows, np.dtype(tensor.dtype)
    if tensor.from_list:
        column = batch.column(names[0])
        if column.null_count:
            raise JobInputError(
                f"column {names[0]!r} has {column.null_count} row(s) without values: the model takes "
                f"{tensor.describe()}; fill or drop those rows"
            )
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if rows and (lengths != tensor.width).any():
            odd = sorted(set(lengths[lengths != tensor.width].tolist()))[:5]
            raise JobInputError(
                f"column {names[0]!r} has rows of {', '.join(map(str, odd))} values: the model takes "
                f"{tensor.describe()}, {tensor.width} values a row"
            )
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    else:
        flat = np.empty((rows, len(names)), dtype=dtype)
        for position, name in enumerate(names):
            flat[:, position] = batch.column(name).to_numpy(zero_copy_only=False)
    return flat.reshape((rows, *tensor.shape[1:]))


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _casts(kind: pa.DataType, dtype: str) -> bool:
    """Whether an Arrow numeric type converts to the numpy ``dtype`` without loss."""
    import numpy as np

    if kind == pa.null():
        return True
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return False
    return bool(np.can_cast(np.dtype(kind.to_pandas_dtype()), np.dtype(dtype), casting="safe"))


def _quote(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)
