"""The part writer: atomic publish with a checksum, nothing published without rows, one schema."""

from __future__ import annotations

import os

import pyarrow as pa

from airflow_ai_provider.runtime import storage


def test_part_writer_publishes_atomically_with_checksum(tmp_path):
    writer = storage.PartWriter(str(tmp_path / "out"), "part-00000-of-00001.parquet")
    temp = writer.temp_path
    assert os.path.basename(temp).startswith(".part-00000-of-00001.parquet.")
    writer.write(pa.record_batch({"x": [1, 2, 3]}))
    assert not (tmp_path / "out" / "part-00000-of-00001.parquet").exists()

    output = writer.publish()

    assert not os.path.exists(temp)
    target = tmp_path / "out" / "part-00000-of-00001.parquet"
    assert output.uri == f"file://{target}" and output.rows == 3 and output.bytes == target.stat().st_size
    assert output.sha256 == storage.file_sha256(storage.parse_uri(str(target)))
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_part_writer_without_rows_publishes_nothing(tmp_path):
    writer = storage.PartWriter(str(tmp_path / "out"), "part-00000-of-00001.parquet")
    assert writer.publish() is None
    assert list((tmp_path / "out").iterdir()) == []


def test_part_writer_casts_later_batches_to_the_first_schema(tmp_path):
    writer = storage.PartWriter(str(tmp_path), "p.parquet")
    writer.write(pa.record_batch({"x": pa.array([1.5])}))
    writer.write(pa.record_batch({"x": pa.array([2], pa.int64())}))
    assert writer.publish().rows == 2


def test_a_new_part_writer_removes_the_temporary_files_an_earlier_try_left(tmp_path):
    stale = tmp_path / ".p.parquet.0123456789abcdef.tmp"
    other = tmp_path / ".q.parquet.0123456789abcdef.tmp"
    stale.write_bytes(b"killed try")
    other.write_bytes(b"another part")

    writer = storage.PartWriter(str(tmp_path), "p.parquet")

    assert not stale.exists() and other.exists(), "only this part's leftovers go"
    writer.discard()
    assert sorted(path.name for path in tmp_path.iterdir()) == [other.name]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
