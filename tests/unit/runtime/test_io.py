"""Storage helpers: URI parsing, sharding of work units, part-file publishing."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError


@pytest.mark.parametrize(
    ("uri", "scheme", "path"),
    [
        ("file:///data/in.parquet", "file", "/data/in.parquet"),
        ("/data/in", "file", "/data/in"),
        ("s3://bucket/some/prefix/", "s3", "bucket/some/prefix"),
        ("s3://bucket", "s3", "bucket"),
    ],
)
def test_uris_resolve_to_scheme_and_path(uri, scheme, path):
    location = storage.parse_uri(uri)
    assert (location.scheme, location.path) == (scheme, path)


def test_relative_paths_become_absolute():
    assert storage.parse_uri("data/x.csv").path == os.path.join(os.getcwd(), "data/x.csv")


@pytest.mark.parametrize("uri", ["gs://bucket/x", "file://host/x", "s3:///key"])
def test_unsupported_uris_are_refused(uri):
    with pytest.raises(JobInputError):
        storage.parse_uri(uri)


@pytest.mark.parametrize(
    "weights", [[5] * 10, [1, 100, 1, 1, 50, 3], [0, 0, 0], [7], [1000, 1, 1, 1], [3, 0, 4, 0, 5]]
)
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_contiguous_disjoint_and_cover_every_unit(weights, count):
    units = [storage.Unit(file_index=0, row_group=i, weight=w) for i, w in enumerate(weights)]
    shards = [storage.shard_units(units, index, count) for index in range(count)]
    assert [unit for shard in shards for unit in shard] == units


def test_equal_row_groups_split_into_near_equal_shards():
    units = [storage.Unit(0, i, 100) for i in range(10)]
    assert [len(storage.shard_units(units, index, 3)) for index in range(3)] == [3, 4, 3]


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
