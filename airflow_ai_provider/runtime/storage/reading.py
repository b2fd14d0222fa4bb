"""Reading inputs: streamed record batches, one column type across files, and whole inputs as InputData."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.storage.inputs import FileMeta, list_inputs, read_error, read_metadata
from airflow_ai_provider.runtime.storage.units import Unit, input_digest, plan_units, units_by_file

#: Read buffer per column: with ``pre_buffer=False`` Parquet is decoded page by page, so memory
#: follows the batch size, not the row-group size.
PARQUET_BUFFER_SIZE = 1 << 20

# --- streaming reads -------------------------------------------------------------------------------


def iter_batches(
    metas: list[FileMeta],
    units: list[Unit],
    columns: list[str],
    types: dict[str, pa.DataType],
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    """Stream the shard's units as record batches of ``columns``, as ``types`` where given (Parquet
    columns are cast, CSV columns parsed as those types)."""
    for file_index, row_groups in units_by_file(units).items():
        meta = metas[file_index]
        if meta.file.format == "parquet":
            batches = _parquet_batches(meta, [rg for rg in row_groups if rg is not None], columns, batch_size)
        else:
            batches = _csv_batches(meta, columns, types, batch_size)
        try:
            for batch in batches:
                yield cast_batch(batch, types)
        except (OSError, pa.ArrowException) as err:
            raise read_error(err, meta) from None


def _parquet_batches(meta: FileMeta, row_groups: list[int], columns: list[str], batch_size: int) -> Iterator:
    import pyarrow.parquet as pq

    with meta.file.location.fs.open_input_file(meta.file.location.path) as handle:
        parquet = pq.ParquetFile(
            handle, metadata=meta.parquet_metadata, buffer_size=PARQUET_BUFFER_SIZE, pre_buffer=False
        )
        yield from parquet.iter_batches(batch_size=batch_size, row_groups=row_groups, columns=columns)


def _csv_batches(
    meta: FileMeta, columns: list[str], types: dict[str, pa.DataType], batch_size: int
) -> Iterator:
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(include_columns=columns, column_types=types)
    block_size = max(1 << 20, min(64 << 20, batch_size * 256))
    with meta.file.location.fs.open_input_stream(meta.file.location.path) as stream:
        yield from pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(block_size=block_size), convert_options=convert
        )


class ReadAhead:
    """Iterates ``batches`` with the next batch already being read in a background thread, from the
    moment it is made: the first batch is read while the caller does other work (loads the model).

    A read's error is raised where that batch is taken. :meth:`close` waits for a read in flight and
    closes ``batches`` (and so its files); :attr:`seconds` is the time spent reading.

    :param batches: the record batches, e.g. from :func:`iter_batches`.
    :param columns: the columns ``batches`` holds, for the caller to check against what it needs.
    """

    _done = object()

    def __init__(self, batches: Iterator[pa.RecordBatch], columns: list[str] | None = None) -> None:
        self.columns = list(columns or [])
        self.seconds = 0.0
        self._batches = batches
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reader")
        self._upcoming = self._pool.submit(self._next)

    def _next(self) -> Any:
        begin = time.perf_counter()
        try:
            return next(self._batches, self._done)
        finally:
            self.seconds += time.perf_counter() - begin

    def then(self, work: Callable[[], Any]) -> Future:
        """Run ``work`` in the reader thread once the read in flight is done, before the next read
        (which starts when that batch is taken); closing the reader first cancels it."""
        return self._pool.submit(work)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while not self._closed:
            batch = self._upcoming.result()
            if batch is self._done:
                return
            self._upcoming = self._pool.submit(self._next)
            yield batch

    def close(self) -> None:
        """Stop reading: wait for a read in flight, then close the batch iterator."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._batches, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # best effort: its error was raised where it happened
                close()


def cast_batch(batch: pa.RecordBatch, types: dict[str, pa.DataType]) -> pa.RecordBatch:
    """``batch`` with its columns in ``types`` cast to those types (:class:`JobInputError` naming a
    column that does not convert)."""
    if all(
        name not in batch.schema.names or batch.schema.field(name).type == kind
        for name, kind in types.items()
    ):
        return batch
    arrays = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name in types and column.type != types[name]:
            try:
                column = column.cast(types[name])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise JobInputError(
                    f"column {name!r} ({column.type}) cannot be read as {types[name]}: {one_line(err)}"
                ) from None
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


# --- columns across files --------------------------------------------------------------------------


def unify_types(metas: list[FileMeta], names: list[str]) -> dict[str, pa.DataType]:
    """The one type each of ``names`` is read as when the files disagree (e.g. int64 in one, double
    in another); :class:`JobInputError` naming the column and two files when the types do not mix."""
    targets: dict[str, pa.DataType] = {}
    for name in names:
        seen = {meta.schema.field(name).type: meta.file.uri for meta in metas if name in meta.schema.names}
        if len(seen) < 2:
            continue
        try:
            unified = (
                pa.unify_schemas([pa.schema([(name, kind)]) for kind in seen], promote_options="permissive")
                .field(name)
                .type
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            (first, first_uri), (other, other_uri) = list(seen.items())[:2]
            raise JobInputError(
                f"column {name!r} is {first} in {first_uri} but {other} in {other_uri}: write every input "
                "file with the same column types"
            ) from None
        targets[name] = unified
    return targets


def check_same_columns(metas: list[FileMeta], names: list[str]) -> None:
    """Every file has every column in ``names`` (those of the first file): one error naming a file."""
    for meta in metas[1:]:
        missing = [name for name in names if name not in meta.schema.names]
        if missing:
            message = (
                f"input file {meta.file.uri} lacks column(s) {', '.join(map(repr, missing))} that "
                f"{metas[0].file.uri} has: write every input file with the same columns"
            )
            raise JobInputError(with_look_alikes(message, missing, meta.schema.names))


def missing_values(column: pa.ChunkedArray | pa.Array) -> int:
    """Null values, plus NaN for floating point columns."""
    import pyarrow.compute as pc

    missing = column.null_count
    if pa.types.is_floating(column.type):
        missing += pc.sum(pc.is_nan(column)).as_py() or 0
    return int(missing)


def column_types(schema: pa.Schema) -> dict[str, str]:
    """Column name to Arrow type name, as recorded in results for lineage."""
    return {name: str(kind) for name, kind in zip(schema.names, schema.types, strict=True)}


# --- whole inputs, for jobs that need all rows (training, evaluation, drift) ------------------------


@dataclass
class InputData:
    """All files behind some input URIs: their metadata, work units, digest and a batch reader.

    :param uris: input URIs (files, folders or globs).
    :param input_format: ``parquet`` or ``csv``; default from the file suffixes.
    """

    metas: list[FileMeta]
    units: list[Unit]
    digest: str
    types: dict[str, pa.DataType] = field(default_factory=dict)

    @classmethod
    def open(cls, uris: list[str], input_format: str | None = None) -> InputData:
        """List and check the files: every file has the first file's columns, in types that mix."""
        metas = read_metadata(list_inputs(uris, input_format))
        names = list(metas[0].schema.names)
        check_same_columns(metas, names)
        types = unify_types(metas, names)
        units = plan_units(metas)
        return cls(metas, units, input_digest(metas, units), types)

    @property
    def schema(self) -> pa.Schema:
        """The first file's columns, in the types every file is read as."""
        first = self.metas[0].schema
        return pa.schema([(f.name, self.types.get(f.name, f.type)) for f in first], metadata=first.metadata)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def batches(self, columns: list[str] | None = None, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream the rows as record batches (memory stays bounded whatever the input size)."""
        names = columns or self.columns
        types = {name: kind for name, kind in self.types.items() if name in names}
        return iter_batches(self.metas, self.units, names, types, batch_size)

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        """Read every row into one Arrow table; raise a clear error when there are none."""
        names = columns or self.columns
        schema = pa.schema([self.schema.field(name) for name in names])
        table = pa.Table.from_batches(list(self.batches(names)), schema=schema)
        if table.num_rows == 0:
            raise JobInputError(f"input {self.metas[0].file.uri} has no rows")
        return table
