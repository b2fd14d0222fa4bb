"""Rows per batch from the input's metadata and a memory budget, for every job that streams its input.

Three pieces, each user passing its own factor and rows:

- :func:`row_width`: one row's estimated bytes in memory. Parquet: fixed-width columns count their
  byte width from the Arrow type (a float64 column is 8 bytes whatever its Parquet encoding); text,
  binary and nested columns their column chunks' uncompressed size per row (at least the longer of
  the chunks' min/max statistics, so a dictionary-encoded word counts its length) plus Arrow's
  :data:`OFFSET_BYTES`; a leaf (``a.list.element``) counts for the longest column name it belongs
  to. Columns that pandas turns into Python objects (decimals, dates, times, binary, nested) add
  :data:`PYTHON_OBJECT_BYTES` a value. CSV: fixed widths from the inferred schema, text columns
  :data:`CSV_TEXT_BYTES`.
- :func:`memory_budget`: the budget a job's parameters set (``batch_memory_mb``), taken as given; else
  the job's default, capped at a quarter of the memory available to the process
  (:func:`~airflow_ai_provider.runtime.memory.available_bytes`).
- :func:`rows_that_fit` and :func:`equal_batches`: as many rows as fit ``budget / (copies × width)``
  within bounds, then the rows cut into batches of equal size (no small last batch).
"""

from __future__ import annotations

import pyarrow as pa

from airflow_ai_provider.runtime import memory
from airflow_ai_provider.runtime.storage.inputs import FileMeta

#: Bytes a pandas object column adds per value: the pointer and a small Python object.
PYTHON_OBJECT_BYTES = 64
#: Bytes assumed per value of a CSV text column.
CSV_TEXT_BYTES = 32
#: Arrow's offset per value of a text, binary or list column.
OFFSET_BYTES = 4
#: Row groups sampled, evenly spaced, for the bytes per row of a Parquet input.
SAMPLED_ROW_GROUPS = 16


def memory_budget(default_bytes: int, requested_mb: int | None = None) -> int:
    """``requested_mb`` MiB when set (a heavy model's own choice, not capped), else ``default_bytes``
    or a quarter of the memory available to the process if less."""
    if requested_mb is not None:
        return requested_mb << 20
    available = memory.available_bytes()
    return default_bytes if available is None else min(default_bytes, available // 4)


def lowest_rows(default_lowest: int, requested_mb: int | None = None) -> int:
    """The fewest rows of a sized batch: ``default_lowest``, or one row when the budget was set, so
    that a small ``batch_memory_mb`` gives small batches."""
    return default_lowest if requested_mb is None else 1


def rows_that_fit(
    width: float, budget: float, copies: float, lowest: int = 1, highest: int | None = None
) -> int:
    """The most rows of ``width`` bytes whose ``copies`` fit in ``budget`` bytes, within [lowest, highest]."""
    fit = max(int(budget / copies // max(width, 1.0)), lowest)
    return fit if highest is None else min(fit, highest)


def equal_batches(rows: int, largest: int) -> int:
    """Rows per batch when ``rows`` are cut into batches of equal size of at most ``largest`` rows."""
    rows = max(1, rows)
    return -(-rows // -(-rows // max(1, largest)))


def row_width(
    metas: list[FileMeta],
    schema: pa.Schema,
    columns: list[str],
    row_groups: list[tuple[int, int]] | None = None,
) -> float:
    """Estimated bytes of one row of ``columns`` in memory (Arrow, plus pandas objects).

    :param metas: the input files (Parquet files are sized from their metadata, CSV from ``schema``).
    :param schema: the columns' types as they are read.
    :param columns: the columns read.
    :param row_groups: ``(file index, row group)`` pairs to size from; default every row group of
        ``metas``. At most :data:`SAMPLED_ROW_GROUPS` of them, evenly spaced, are looked at.
    """
    if not metas or metas[0].file.format != "parquet":
        return sum(_fixed_or(schema.field(name).type, CSV_TEXT_BYTES) for name in columns)
    if row_groups is None:
        row_groups = [
            (index, group)
            for index, meta in enumerate(metas)
            for group in range(meta.parquet_metadata.num_row_groups)
        ]
    sizes = dict.fromkeys(columns, 0.0)
    rows = 0
    for file_index, position in row_groups[:: max(1, len(row_groups) // SAMPLED_ROW_GROUPS)]:
        group = metas[file_index].parquet_metadata.row_group(position)
        rows += group.num_rows
        for leaf in range(group.num_columns):
            chunk = group.column(leaf)
            name = _owner(chunk.path_in_schema, schema.names)
            if name in sizes:
                sizes[name] += max(chunk.total_uncompressed_size, _stats_bytes(chunk) * group.num_rows)
    per_row = {name: size / rows if rows else 0.0 for name, size in sizes.items()}
    return sum(_fixed_or(schema.field(name).type, per_row[name] + OFFSET_BYTES) for name in columns)


def _owner(path: str, names: list[str]) -> str | None:
    """The column of ``names`` a Parquet leaf ``path`` (``a``, ``a.list.element``) belongs to; the
    longest name wins, so a column named ``a.b`` is not taken for a leaf of column ``a``."""
    owners = [name for name in names if path == name or path.startswith(name + ".")]
    return max(owners, key=len) if owners else None


def _fixed_or(kind: pa.DataType, variable: float) -> float:
    """A value's bytes: the byte width of a fixed-width type, else ``variable``; plus the pandas
    object a value becomes when pandas has no array type for it."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    try:
        width = max(1.0, kind.bit_width / 8)
    except ValueError:  # text, binary, nested: no fixed width
        width = variable
    return width + (PYTHON_OBJECT_BYTES if _becomes_objects(kind) else 0)


def _becomes_objects(kind: pa.DataType) -> bool:
    return (
        pa.types.is_decimal(kind)
        or pa.types.is_date(kind)
        or pa.types.is_time(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or pa.types.is_nested(kind)
    )


def _stats_bytes(chunk: object) -> int:
    """The longer of a text chunk's min and max statistics, in bytes (0 when there are none)."""
    stats = getattr(chunk, "statistics", None)
    if stats is None or not stats.has_min_max:
        return 0
    values = [value.encode() if isinstance(value, str) else value for value in (stats.min, stats.max)]
    return max(len(value) if isinstance(value, bytes) else 0 for value in values)
