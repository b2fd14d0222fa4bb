"""A model's output as typed, named output columns: scalars, strings, vectors and structs.

:func:`prediction_columns` turns what a pyfunc's ``predict`` returned into Arrow arrays, one per
model output: a vector of scalars stays one column (strings stay strings); a 2-D numeric array, a
list or Series of equal-length arrays (or tensors) becomes one ``fixed_size_list<float32>[d]`` column
built from the flat buffer; dicts per row become a ``struct`` column; a dict of outputs or a
DataFrame gives one column per output. :class:`OutputNaming` then names them (``output_columns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime.contract.errors import JobInputError, brief
from airflow_ai_provider.runtime.contract.params import CONTENT_HASH_COLUMN, InferParams

Columns = list[tuple[str, pa.Array]]
#: The name of a model's single, unnamed output (a vector, a matrix, a list).
SINGLE_OUTPUT = "prediction"


@dataclass(frozen=True)
class OutputNaming:
    """How model outputs become output columns: ``output_columns`` (a list renames the outputs in
    order, a dict maps model output name to column name and keeps only those), the element type of
    vector columns, and the input columns the outputs must not clash with."""

    output_columns: list[str] | dict[str, str] | None = None
    vector_type: str = "float32"
    reserved: tuple[str, ...] = ()

    @classmethod
    def of(cls, params: InferParams) -> OutputNaming:
        """The naming of an ``infer`` job: its ``output_columns`` and ``vector_type``; the id columns
        and ``content_hash`` (when content columns are hashed) are reserved."""
        hashed = (CONTENT_HASH_COLUMN,) if params.content_columns else ()
        return cls(params.output_columns, params.vector_type, (*params.id_columns, *hashed))

    def name(self, outputs: list[tuple[str, str, pa.Array]], received: str) -> Columns:
        """Name ``(model output name, default column name, array)`` triples as output columns."""
        given, names = self.output_columns, [output for output, _, _ in outputs]
        if given is None:
            columns = [(default, array) for _, default, array in outputs]
        elif isinstance(given, Mapping):
            unknown = [key for key in given if key not in names]
            if unknown:
                raise JobInputError(
                    f"output_columns names model output(s) {_quote(unknown)} that the model did not return: "
                    f"it returned {received} with output(s) {_quote(names)}; map those names in output_columns"
                )
            arrays = {output: array for output, _, array in outputs}
            columns = [(column, arrays[output]) for output, column in given.items()]
        else:
            if len(given) != len(outputs):
                raise JobInputError(
                    f"output_columns gives {len(given)} name(s) ({_quote(list(given))}) but the model returned "
                    f"{received} with {len(outputs)} output(s) ({_quote(names)}): give one name per output, "
                    "or a dict from model output name to column name to keep some of them"
                )
            columns = [(column, array) for column, (_, _, array) in zip(given, outputs, strict=True)]
        clashes = [column for column, _ in columns if column in self.reserved]
        if clashes:
            raise JobInputError(
                f"output column(s) {_quote(clashes)} clash with the id columns or {CONTENT_HASH_COLUMN!r}: "
                "rename the model outputs with output_columns"
            )
        return columns


def prediction_columns(output: Any, rows: int, naming: OutputNaming | None = None) -> Columns:
    """Name and type a pyfunc output: one output becomes ``prediction``; a table's or dict's outputs
    ``prediction_<name>`` (or ``prediction`` when there is one); ``naming`` renames them."""
    import numpy as np
    import pandas as pd

    naming = naming or OutputNaming()
    received = describe_output(output)
    output = _as_numpy(output)
    if isinstance(output, np.ndarray) and output.ndim == 2 and output.shape[1] == 1:
        output = output[:, 0]  # a column vector (e.g. a regressor's (n, 1) output) is one value a row
    try:
        if isinstance(output, Mapping):
            parts = [(str(name), values) for name, values in output.items()]
        elif isinstance(output, pd.DataFrame):
            if output.columns.duplicated().any():
                raise ValueError("its columns repeat a name")
            parts = [(str(name), output[name]) for name in output.columns]
        else:
            parts = [(SINGLE_OUTPUT, output)]
        if not parts:
            raise ValueError("it has no outputs")
        several = len(parts) > 1
        outputs = [
            (
                name,
                f"prediction_{name}" if several else SINGLE_OUTPUT,
                to_array(values, name, naming.vector_type),
            )
            for name, values in parts
        ]
        lengths = {name: len(array) for name, _, array in outputs}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name!r} {length}" for name, length in lengths.items())
            raise ValueError(f"its outputs have different lengths: {shown}")
    except (ValueError, TypeError, pa.ArrowException) as err:
        raise JobInputError(
            f"model returned {received}, which cannot be stored as prediction columns ({brief(err)}): "
            "the model must return one value per row, as a vector or a table with one row per input row"
        ) from None
    for _, _, array in outputs:
        if len(array) != rows:
            raise JobInputError(
                f"model returned {len(array)} predictions ({received}) for {rows} rows: the model must "
                "return one prediction per input row"
            )
    return naming.name(outputs, received)


def to_array(values: Any, name: str, vector_type: str = "float32") -> pa.Array:
    """One model output as an Arrow array: vectors as ``fixed_size_list``, dicts as ``struct``."""
    import numpy as np
    import pandas as pd

    values = _as_numpy(values)
    if isinstance(values, pd.Series):
        if values.dtype != object:
            return pa.Array.from_pandas(values)
        values = values.to_numpy()
    if isinstance(values, (list, tuple)):
        if values and isinstance(values[0], Mapping):
            return pa.array(list(values))
        if values and _is_vector(values[0]):
            return vector_array(_stack(values, name), name, vector_type)
        values = np.asarray(values)
    if not isinstance(values, np.ndarray):
        return pa.array(values)
    if values.ndim == 2:
        return vector_array(values, name, vector_type)
    if values.ndim != 1:
        raise ValueError(f"output {name!r} has {values.ndim} dimensions: return shape (rows,) or (rows, d)")
    if values.dtype == object and len(values):
        first = values[0]
        if isinstance(first, Mapping):
            return pa.array(list(values))
        if _is_vector(first):
            return vector_array(_stack(values, name), name, vector_type)
    return pa.array(values)


def vector_array(matrix: Any, name: str, vector_type: str = "float32") -> pa.FixedSizeListArray:
    """A (rows, d) numeric array as one ``fixed_size_list<vector_type>[d]`` array, from its flat buffer
    (no copy when it already is C-contiguous ``vector_type``); NaN or infinite values are refused."""
    import numpy as np

    if matrix.dtype.kind not in "fiub":
        raise JobInputError(
            f"model output {name!r} is a 2-D array of {matrix.dtype}: vector outputs must be numeric; "
            "return numbers, or one string or dict per row"
        )
    flat = np.ascontiguousarray(matrix, dtype=np.dtype(vector_type))
    if matrix.dtype.kind == "f":
        bad = ~np.isfinite(flat).all(axis=1)
        if bad.any():
            raise JobInputError(
                f"model output {name!r} has NaN or infinite values in {int(bad.sum())} of {len(flat)} "
                "vectors: a vector column holds finite numbers only; check those rows' input (e.g. empty "
                "text) or the model"
            )
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def describe_output(output: Any) -> str:
    """What a model returned, for messages: its type and, when it has one, its shape."""
    shape = getattr(output, "shape", None)
    kind = f"{type(output).__module__}.{type(output).__qualname__}".removeprefix("builtins.")
    return f"a {kind} of shape {tuple(shape)}" if shape is not None else f"a {kind}"


def _as_numpy(values: Any) -> Any:
    """A tensor (torch, TensorFlow...) as a numpy array; anything else unchanged."""
    import numpy as np
    import pandas as pd

    if isinstance(values, (np.ndarray, pd.Series, pd.DataFrame, Mapping, list, tuple, str)):
        return values
    if hasattr(values, "detach"):  # torch: off the autograd graph and the device first
        values = values.detach()
        values = values.cpu() if hasattr(values, "cpu") else values
    return values.numpy() if hasattr(values, "numpy") else values


def _is_vector(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (np.ndarray, list, tuple)) or hasattr(value, "detach")


def _stack(values: Any, name: str) -> Any:
    """Equal-length vectors, one per row, as one (rows, d) array; one line naming the lengths if not."""
    import numpy as np

    try:
        return np.stack([np.asarray(_as_numpy(value)) for value in values])
    except (ValueError, TypeError):
        lengths = sorted({len(value) if hasattr(value, "__len__") else -1 for value in values})
        shown = ", ".join("none" if length < 0 else str(length) for length in lengths[:5])
        raise JobInputError(
            f"model output {name!r} has vectors of unequal lengths ({shown}): a vector column needs the "
            "same number of values in every row; pad or truncate them in the model"
        ) from None


def _quote(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)
