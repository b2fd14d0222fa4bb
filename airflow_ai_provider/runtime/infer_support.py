"""The infer job's helpers: the cap on native threads, the unique-id check and the input's lineage entries."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime import Log, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import InferParams
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.uniqueness import DuplicateFinder


def files_of(units: list[storage.Unit]) -> list[int]:
    """The indexes of the files ``units`` read, in order."""
    return list(dict.fromkeys(unit.file_index for unit in units))


@contextlib.contextmanager
def thread_limit(threads: int | None, log: Log) -> Iterator[None]:
    """Cap the threads of the native libraries the model uses (OpenMP, BLAS) to ``threads``."""
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn depends on it; another flavor's image may lack it
        log(f"model_threads={threads} not applied: threadpoolctl is not installed in this environment")
        yield
        return
    with threadpool_limits(limits=threads):
        log(f"model threads capped to {threads}")
        yield


@contextlib.contextmanager
def unique_ids(params: InferParams, scratch: str) -> Iterator[DuplicateFinder | None]:
    """A duplicate finder over the id columns when ``check_unique_ids`` is set; its files go with it."""
    if not params.check_unique_ids:
        yield None
        return
    finder = DuplicateFinder(params.id_columns, scratch, "never")
    try:
        yield finder
    finally:
        shutil.rmtree(finder.folder, ignore_errors=True)


def id_frame(batch: pa.RecordBatch, id_columns: list[str]) -> Any:
    """The id columns as pandas, integers as nullable integers: a batch with a missing id must hash
    its other ids as a batch without one does."""
    import pandas as pd

    def nullable(kind: pa.DataType) -> Any:
        return pd.ArrowDtype(kind) if pa.types.is_integer(kind) else None

    return batch.select(id_columns).to_pandas(types_mapper=nullable)


def check_unique(
    unique: DuplicateFinder,
    metas: list[storage.FileMeta],
    units: list[storage.Unit],
    params: InferParams,
    spec: JobSpec,
    log: Log,
    rows: int,
) -> None:
    """Fail, before the part file is published, when some ids repeat in this shard."""
    candidates = unique.repeated_hashes()
    if not len(candidates):
        return
    log(f"repeated id hashes found; reading {', '.join(params.id_columns)} again to count duplicates")
    for batch in storage.iter_batches(metas, units, params.id_columns, {}, rows):
        unique.count_values(id_frame(batch, params.id_columns), candidates)
    repeated = unique.repeated()
    if not repeated:
        return  # a hash collision, not a duplicate
    value, count = repeated[0]
    example = dict(zip(params.id_columns, value if isinstance(value, tuple) else (value,), strict=True))
    extra = sum(times - 1 for _, times in repeated)
    raise JobInputError(
        f"id_columns {', '.join(params.id_columns)} are not unique in shard {spec.shard.index}/"
        f"{spec.shard.count}: {len(repeated)} id value(s) appear more than once ({extra} duplicate rows), e.g. "
        f"{example} {count} times: deduplicate the input, or drop check_unique_ids to score duplicates as they are"
    )


def input_entries(metas: list[storage.FileMeta], units: list[storage.Unit]) -> list[dict[str, Any]]:
    entries = []
    for index in files_of(units):
        meta = metas[index]
        entry: dict[str, Any] = {"uri": meta.file.uri, "bytes": meta.file.size, "format": meta.file.format}
        if meta.file.format == "parquet":
            groups = [unit.row_group for unit in units if unit.file_index == index]
            entry["row_groups"] = groups
            entry["rows"] = sum(meta.row_group_rows[group] for group in groups if group is not None)
        entries.append(entry)
    return entries


def schema_dict(metas: list[storage.FileMeta], units: list[storage.Unit]) -> dict[str, str]:
    if not units:
        return {}
    schema = metas[units[0].file_index].schema
    return storage.column_types(schema)
