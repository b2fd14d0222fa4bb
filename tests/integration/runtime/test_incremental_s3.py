"""Incremental re-embedding and the vector index on a moto S3 server: the previous output read from S3,
the index files published next to the part file, nothing left in scratch or as incomplete uploads."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import storage
from tests.unit.runtime.vectors.test_incremental import corpus, embedded, models, run, texts_embedded

__all__ = ["embedded", "models"]


@pytest.fixture
def s3(s3_server, s3_env, monkeypatch):
    """The runtime pointed at the moto server through the standard AWS environment variables."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    storage.s3_filesystem.cache_clear()
    storage.s3_client.cache_clear()
    yield s3_server.client()
    storage.s3_filesystem.cache_clear()
    storage.s3_client.cache_clear()


def put(client, bucket: str, key: str, table) -> str:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


def test_an_s3_previous_output_is_reused_and_the_index_is_published_to_s3(
    models, s3, s3_bucket, tmp_path, embedded
):
    (tmp_path / "scratch").mkdir()
    first_input = put(s3, s3_bucket, "docs/v1.parquet", corpus())
    first = run(models, first_input, f"s3://{s3_bucket}/vectors/1/", scratch_dir=str(tmp_path / "scratch"))
    assert first.details["recompute_reason"] == "first run"
    texts_embedded(embedded)
    changed = {1: "one, changed", 30: "thirty, changed", 31: "thirty-one, changed"}
    second_input = put(s3, s3_bucket, "docs/v2.parquet", corpus(changed=changed))

    second = run(
        models, second_input, f"s3://{s3_bucket}/vectors/2/", previous_output=f"s3://{s3_bucket}/vectors/1",
        vector_index="embedding", index_check_queries=5, scratch_dir=str(tmp_path / "scratch"),
    )  # fmt: skip

    assert sorted(texts_embedded(embedded)[:3]) == sorted(changed.values())
    assert (second.metrics["rows_predicted"], second.metrics["rows_reused"]) == (3, 47)
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=s3_bucket, Prefix="vectors/2/")["Contents"])
    assert keys == [
        "vectors/2/index-00000-of-00001.faiss", "vectors/2/index-00000-of-00001.ids.parquet",
        "vectors/2/part-00000-of-00001.parquet",
    ]  # fmt: skip
    ids = pq.read_table(io.BytesIO(s3.get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read()))
    assert ids.column("doc_id").to_pylist() == list(range(50))
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert list((tmp_path / "scratch").iterdir()) == [], "scratch files are removed"
