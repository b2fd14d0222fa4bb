"""The shared batch-sizing estimate: a row's width from the Parquet metadata or the CSV schema, the
budget capped by the memory available, and equal batches of the rows that fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from airflow_ai_provider.runtime import memory, storage
from airflow_ai_provider.runtime.storage import sizing
from tests.unit.runtime.conftest import write_csv, write_parquet

MIB = 1 << 20


def _numbers_and_text(rows: int, text: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "count": np.arange(rows, dtype=np.int64),
            "price": np.linspace(0.0, 1.0, rows),
            "label": [text[i % len(text)] for i in range(rows)],
        }
    )


def _width(path: Path, columns: list[str], row_groups: list[tuple[int, int]] | None = None) -> float:
    data = storage.InputData.open([str(path)])
    return sizing.row_width(data.metas, data.schema, columns, row_groups)


def test_row_width_counts_fixed_widths_and_text_bytes_whatever_the_compression(tmp_path):
    frame = _numbers_and_text(20_000, [f"id-{i:06d}" for i in range(20_000)])  # 9 bytes each, all distinct
    for codec in ("none", "zstd"):
        path = tmp_path / codec / "data.parquet"
        path.parent.mkdir()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression=codec)

        assert _width(path, ["count", "price"]) == 16
        # text: 9 bytes and Arrow's 4-byte offset, plus what Parquet itself adds per value
        assert 9 + 4 <= _width(path, ["label"]) <= 9 + 4 + 6


def test_a_float_column_counts_eight_bytes_whatever_its_parquet_encoding(tmp_path):
    """A constant column takes almost nothing in Parquet (dictionary or RLE) but 8 bytes a row in memory."""
    path = write_parquet(tmp_path / "f.parquet", pd.DataFrame({"x": np.zeros(50_000)}))

    assert pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size < 50_000
    assert _width(path, ["x"]) == 8


def test_row_width_of_dictionary_encoded_text_uses_its_statistics(tmp_path):
    """Three repeated words take about a byte a row in Parquet, but every row holds a word in memory."""
    path = write_parquet(tmp_path / "d.parquet", _numbers_and_text(50_000, ["bronze", "silver", "gold"]))

    assert _width(path, ["label"]) >= len("bronze") + 4


def test_row_width_of_nested_and_dotted_columns_counts_their_own_leaves(tmp_path):
    table = pa.table(
        {
            "tags": pa.array([["red", "green", "blue"]] * 5_000),
            "a": pa.array(["x"] * 5_000),
            "a.b": pa.array([f"long-value-{i:08d}" for i in range(5_000)]),
        }
    )
    path = tmp_path / "n.parquet"
    pq.write_table(table, path, use_dictionary=False)

    assert _width(path, ["a.b"]) >= len("long-value-00000000") + 4
    assert _width(path, ["a"]) < 12
    assert _width(path, ["tags"]) >= len("redgreenblue") + sizing.PYTHON_OBJECT_BYTES


def test_row_width_counts_only_the_columns_read_and_the_row_groups_given(tmp_path):
    short = _numbers_and_text(4_000, ["ab"])
    long = _numbers_and_text(4_000, ["a much longer text value " * 8])
    path = write_parquet(tmp_path / "g.parquet", pd.concat([short, long], ignore_index=True), 4_000)

    assert _width(path, ["count"]) == 8 < _width(path, ["count", "label"])
    first, second = _width(path, ["label"], [(0, 0)]), _width(path, ["label"], [(0, 1)])
    assert first < 2 + 4 + 6 < 200 < second
    assert first < _width(path, ["label"]) < second  # every row group by default


def test_csv_row_width_comes_from_the_schema(tmp_path):
    path = write_csv(tmp_path / "c.csv", _numbers_and_text(100, ["x"]))

    assert _width(path, ["count", "price", "label"]) == 8 + 8 + sizing.CSV_TEXT_BYTES


def test_budget_is_the_default_or_a_quarter_of_the_memory_available(monkeypatch):
    """The available memory is replaced (a container limit cannot be set here)."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * MIB)
    assert sizing.memory_budget(160 * MIB) == 2 * MIB
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 1024 * MIB)
    assert sizing.memory_budget(160 * MIB) == 160 * MIB
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert sizing.memory_budget(160 * MIB) == 160 * MIB


def test_rows_that_fit_divide_the_budget_by_the_copies_within_bounds():
    assert sizing.rows_that_fit(width=100, budget=6_000_000, copies=6) == 10_000
    assert sizing.rows_that_fit(width=100, budget=6_000_000, copies=5) == 12_000
    assert sizing.rows_that_fit(width=100, budget=1, copies=6) == 1
    assert sizing.rows_that_fit(width=100, budget=1, copies=6, lowest=1024) == 1024
    assert sizing.rows_that_fit(width=1, budget=1 << 40, copies=6, highest=2000) == 2000


def test_rows_are_cut_into_equal_batches_no_larger_than_allowed():
    assert sizing.equal_batches(10_000, 3_000) == 2_500
    assert sizing.equal_batches(5_000, 2_000) == 1_667  # 3 batches, the last one 1666
    assert sizing.equal_batches(5_000, 5_000) == sizing.equal_batches(5_000, 10**9) == 5_000
    assert sizing.equal_batches(0, 100) == 1
