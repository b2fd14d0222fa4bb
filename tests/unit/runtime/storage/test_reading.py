"""Reading inputs: one type per column across files, types that do not mix named, whole inputs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError


def test_files_that_disagree_on_a_numeric_type_are_read_in_the_wider_one(tmp_path):
    pq.write_table(pa.table({"x": pa.array([1, 2], pa.int64())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": pa.array([0.5], pa.float64())}), tmp_path / "b.parquet")

    data = storage.InputData.open([str(tmp_path)])

    assert data.schema.field("x").type == pa.float64()
    assert data.read_table().column("x").to_pylist() == [1.0, 2.0, 0.5]


def test_files_whose_column_types_do_not_mix_name_the_column_and_both_files(tmp_path):
    (tmp_path / "a.csv").write_text("id,amount\n1,2.5\n")
    (tmp_path / "b.csv").write_text("id,amount\n2,lots\n")

    with pytest.raises(JobInputError) as caught:
        storage.InputData.open([str(tmp_path)])

    assert str(caught.value) == (
        f"column 'amount' is double in file://{tmp_path}/a.csv but string in file://{tmp_path}/b.csv: "
        "write every input file with the same column types"
    )


def test_an_input_without_rows_is_refused_by_name(tmp_path):
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), tmp_path / "a.parquet")
    with pytest.raises(JobInputError, match=r"^input file://.*/a\.parquet has no rows$"):
        storage.InputData.open([str(tmp_path)]).read_table()


def test_missing_values_count_nulls_and_nan():
    assert storage.missing_values(pa.array([1.0, None, float("nan"), 2.0])) == 2
    assert storage.missing_values(pa.array([1, None, 3])) == 1
