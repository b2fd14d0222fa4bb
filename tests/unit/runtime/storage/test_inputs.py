"""Input discovery and metadata: folders and globs expand to visible files of one format, named errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError


def _parquet(path, rows: int = 3, row_group_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(rows))}), path, row_group_size=row_group_size)


def test_a_folder_expands_to_its_visible_files_sorted(tmp_path):
    for name in ("b/2.parquet", "a.parquet", "_tmp/hidden.parquet", ".x.parquet", "c/_SUCCESS.parquet"):
        _parquet(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not data")

    files = storage.list_inputs([str(tmp_path)])

    assert [f.uri for f in files] == [f"file://{tmp_path}/a.parquet", f"file://{tmp_path}/b/2.parquet"]
    assert {f.format for f in files} == {"parquet"}


def test_the_same_file_given_twice_is_read_once(tmp_path):
    _parquet(tmp_path / "a.parquet")
    files = storage.list_inputs([str(tmp_path / "a.parquet"), f"{tmp_path}/*.parquet"])
    assert [f.uri for f in files] == [f"file://{tmp_path}/a.parquet"]


def test_a_glob_that_matches_nothing_is_named(tmp_path):
    with pytest.raises(JobInputError, match=r"^input glob matches no file: .*/\*\.csv$"):
        storage.list_inputs([f"{tmp_path}/*.csv"])


def test_mixed_formats_are_refused_with_an_example_of_each(tmp_path):
    _parquet(tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("x\n1\n")
    with pytest.raises(
        JobInputError, match=r"^inputs mix formats csv and parquet \(e\.g\. .*b\.csv, .*a\.parquet\)"
    ):
        storage.list_inputs([str(tmp_path)])


def test_parquet_metadata_holds_row_groups_and_a_footer_fingerprint(tmp_path):
    _parquet(tmp_path / "a.parquet", rows=10, row_group_size=4)

    (meta,) = storage.read_metadata(storage.list_inputs([str(tmp_path)]))

    assert meta.row_group_rows == [4, 4, 2] and meta.schema.names == ["x"]
    assert len(meta.fingerprint) == 64


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"just some bytes, no footer")
    with pytest.raises(JobInputError, match=r"^input file is not a Parquet file \(no PAR1 footer\): file://"):
        storage.read_metadata(storage.list_inputs([str(tmp_path)]))
