"""Batches sized from Parquet metadata and a memory budget, and batches read ahead in a thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.storage import reading


def parquet_input(path: Path, rows: int, columns: int = 4, row_group_size: int | None = None) -> tuple:
    """A Parquet file of ``columns`` float64 columns, with its metadata and work units."""
    table = pa.table({f"c{i}": np.random.default_rng(i).random(rows) for i in range(columns)})
    pq.write_table(table, path, row_group_size=row_group_size)
    metas = storage.read_metadata(storage.list_inputs([str(path)]))
    return metas, storage.plan_units(metas), table.column_names


def row_bytes(metas: list, columns: list[str]) -> float:
    """Uncompressed bytes per row of ``columns``, as the metadata gives them."""
    meta = metas[0].parquet_metadata
    size = sum(
        meta.row_group(g).column(c).total_uncompressed_size
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
        if meta.row_group(g).column(c).path_in_schema in columns
    )
    return size / meta.num_rows


def test_an_input_that_fits_the_budget_is_one_batch_of_all_its_rows(tmp_path):
    metas, units, columns = parquet_input(tmp_path / "a.parquet", 5000, row_group_size=2000)

    rows = storage.auto_batch_rows(metas, units, columns, memory_bytes=64 << 20)

    assert rows == 5000
    assert [batch.num_rows for batch in storage.iter_batches(metas, units, columns, {}, rows)] == [5000]


def test_a_larger_input_is_cut_into_equal_batches_that_fit_the_budget(tmp_path):
    metas, units, columns = parquet_input(tmp_path / "a.parquet", 10_000)
    per_row = reading.COPIES_IN_FLIGHT * row_bytes(metas, columns)
    budget = int(3000 * per_row)  # room for 3000 rows in flight: 10,000 rows need 4 batches

    rows = storage.auto_batch_rows(metas, units, columns, memory_bytes=budget)

    assert rows == 2500
    assert rows * per_row <= budget
    assert [batch.num_rows for batch in storage.iter_batches(metas, units, columns, {}, rows)] == [2500] * 4


def test_reading_fewer_columns_allows_larger_batches(tmp_path):
    metas, units, columns = parquet_input(tmp_path / "a.parquet", 20_000, columns=8)
    budget = int(2000 * reading.COPIES_IN_FLIGHT * row_bytes(metas, columns))

    all_columns = storage.auto_batch_rows(metas, units, columns, memory_bytes=budget)
    two_columns = storage.auto_batch_rows(metas, units, columns[:2], memory_bytes=budget)

    assert all_columns <= 2000 < two_columns


def test_batch_rows_stay_within_their_bounds_and_stay_equal(tmp_path, monkeypatch):
    metas, units, columns = parquet_input(tmp_path / "a.parquet", 5000)

    # No room at all: batches of at most MIN_BATCH_ROWS (1024), evened out to 5 batches of 1000.
    assert storage.auto_batch_rows(metas, units, columns, memory_bytes=1) == 1000
    monkeypatch.setattr(reading, "MAX_BATCH_ROWS", 2000)
    # Room for everything, but at most 2000 rows a batch: 3 batches of 1667 (the last one 1666).
    assert storage.auto_batch_rows(metas, units, columns, memory_bytes=1 << 40) == 1667


def test_csv_input_gets_the_default_batch_rows(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")
    metas = storage.read_metadata(storage.list_inputs([str(tmp_path / "a.csv")]))

    rows = storage.auto_batch_rows(metas, storage.plan_units(metas), ["x", "y"], memory_bytes=64 << 20)

    assert rows == reading.DEFAULT_BATCH_ROWS


def test_read_ahead_reads_the_first_batch_before_it_is_asked_for():
    started = threading.Event()

    def batches():
        started.set()
        yield pa.record_batch({"x": [1]})

    reader = storage.ReadAhead(batches(), ["x"])
    try:
        assert started.wait(10), "the first batch was not read in the background"
        assert [batch.num_rows for batch in reader] == [1]
        assert reader.seconds > 0
    finally:
        reader.close()


def test_read_ahead_raises_a_reading_error_where_that_batch_is_taken():
    def batches():
        yield pa.record_batch({"x": [1]})
        raise OSError("disk gone")

    reader = storage.ReadAhead(batches())
    taken = []
    with pytest.raises(OSError, match="disk gone"):
        for batch in reader:
            taken.append(batch.num_rows)
    reader.close()

    assert taken == [1]


def test_closing_read_ahead_waits_for_the_read_in_flight_and_closes_the_batches():
    closed = threading.Event()
    reading_second = threading.Event()

    def batches():
        try:
            yield pa.record_batch({"x": [1]})
            reading_second.set()
            time.sleep(0.2)
            yield pa.record_batch({"x": [2]})
        finally:
            closed.set()

    reader = storage.ReadAhead(batches())
    next(iter(reader))
    assert reading_second.wait(10)

    reader.close()

    assert closed.is_set()
    assert not any(thread.name.startswith("reader") and thread.is_alive() for thread in threading.enumerate())


def test_a_shard_that_fits_as_one_batch_without_read_ahead_is_one_batch(tmp_path):
    metas, units, columns = parquet_input(tmp_path / "a.parquet", 5000)
    per_row = row_bytes(metas, columns)
    # Room for 4 copies of the whole shard but not for 6: one batch, since nothing is read ahead.
    between = int(5000 * per_row * (reading.COPIES_ONE_BATCH + reading.COPIES_IN_FLIGHT) / 2)
    short = int(5000 * per_row * (reading.COPIES_ONE_BATCH - 1))

    assert storage.auto_batch_rows(metas, units, columns, memory_bytes=between) == 5000
    assert storage.auto_batch_rows(metas, units, columns, memory_bytes=short) < 5000
