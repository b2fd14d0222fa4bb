"""Rows per batch of the ``validate`` job, from the input's metadata and a memory budget.

An explicit ``batch_size`` is used as given. Otherwise a batch holds as many rows as fit in
``memory_budget_mb`` (default :data:`DEFAULT_BUDGET_MB`, or a quarter of the memory available to the
process if less: :func:`~airflow_ai_provider.runtime.memory.available_bytes`): one row's estimated working set is its Arrow width (:func:`row_width`) times
:data:`WORKING_SET_FACTOR` (the Arrow batch, its pandas frame and Great Expectations' masks and
temporaries). An input that fits is one batch, so Great Expectations' per-batch cost is paid once and
every expectation type works; a larger one is cut into equal batches no larger than the budget
allows, so memory follows the budget, not the input.

- Parquet: fixed-width columns count their byte width; text, binary and nested columns their
  column chunks' uncompressed size per row (at least the longer of the chunks' min/max statistics)
  plus a 4-byte offset. Columns that pandas turns into Python objects (decimals, dates, times,
  binary, nested) add :data:`PYTHON_OBJECT_BYTES` a value.
- CSV files carry no row counts or sizes per column: their inferred schema gives the fixed widths,
  text columns count :data:`CSV_TEXT_BYTES`; an input whose files' total size, times the factor,
  fits the budget is one batch whatever the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from airflow_ai_provider.runtime import memory, storage

#: Peak memory of validating a batch as a multiple of its Arrow size: the Arrow batch while it
#: converts, the pandas frame, and Great Expectations' per-expectation masks, filters and copies.
#: Measured with the churn suite (17 expectations, numbers and text, 82 Arrow bytes a row): 3.6 in
#: one batch, 4.5 over several (the uniqueness hashes of text values); rounded up.
WORKING_SET_FACTOR = 5.0
#: The default memory budget of one batch, in MiB (the validate pod's default request is 2 GiB).
DEFAULT_BUDGET_MB = 1024
#: Bytes a pandas object column adds per value: the pointer and a small Python object.
PYTHON_OBJECT_BYTES = 64
#: Bytes assumed per value of a CSV text column.
CSV_TEXT_BYTES = 32
#: Arrow's offset per value of a text, binary or list column.
OFFSET_BYTES = 4
#: The most rows one batch may hold when the input's row count is unknown (CSV read in one batch).
WHOLE_INPUT = 2**62


@dataclass(frozen=True)
class BatchPlan:
    """How many rows one batch holds and why.

    :param rows: rows per batch.
    :param row_bytes: estimated Arrow bytes per row (``None`` for an explicit ``batch_size``).
    :param budget_mb: the memory budget the rows were sized from (``None`` when explicit).
    """

    rows: int
    row_bytes: float | None = None
    budget_mb: int | None = None

    def describe(self) -> str:
        """A few words for the job log."""
        if self.budget_mb is None:
            return f"batches of {self.rows} rows (batch_size)"
        size = "the whole input" if self.rows >= WHOLE_INPUT else f"{self.rows} rows"
        return (
            f"batches of {size} (about {self.row_bytes:.0f} bytes a row in Arrow, "
            f"within a memory budget of {self.budget_mb} MiB)"
        )


def plan_batches(
    data: storage.InputData, columns: list[str], batch_size: int | None, budget_mb: int | None
) -> BatchPlan:
    """Rows per batch: ``batch_size`` when given, else sized from the metadata and ``budget_mb``."""
    if batch_size is not None:
        return BatchPlan(batch_size)
    if budget_mb is None:
        available = memory.available_bytes()
        budget_mb = DEFAULT_BUDGET_MB if available is None else min(DEFAULT_BUDGET_MB, available // 4 >> 20)
        budget_mb = max(1, budget_mb)
    budget = budget_mb * (1 << 20) / WORKING_SET_FACTOR
    width = max(1.0, row_width(data, columns))
    rows = max(1, int(budget // width))
    if data.metas[0].file.format == "parquet":
        total = max(1, sum(sum(meta.row_group_rows) for meta in data.metas))
        rows = -(-total // -(-total // rows))  # equal batches, none larger than the budget allows
    elif sum(meta.file.size for meta in data.metas) <= budget:
        rows = WHOLE_INPUT
    return BatchPlan(rows, width, budget_mb)


def row_width(data: storage.InputData, columns: list[str]) -> float:
    """Estimated bytes of one row of ``columns`` in Arrow (plus pandas objects), averaged over files."""
    schema = data.schema
    if data.metas[0].file.format != "parquet":
        return sum(_fixed_or(schema.field(name).type, CSV_TEXT_BYTES) for name in columns)
    sizes = dict.fromkeys(columns, 0.0)
    rows = 0
    for meta in data.metas:
        metadata = meta.parquet_metadata
        rows += metadata.num_rows
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
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
