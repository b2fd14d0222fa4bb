"""The infer job against a moto S3 server: S3 inputs and outputs, missing buckets."""

from __future__ import annotations

import hashlib
import io as bytes_io

import pandas as pd
import pytest

from airflow_ai_provider.runtime import infer, storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from tests.unit.runtime.conftest import customers


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


def put_parquet(client, bucket: str, key: str, frame: pd.DataFrame) -> None:
    buffer = bytes_io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=400)
    client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def test_s3_folder_input_and_output_round_trip(registry, s3, s3_bucket, tmp_path):
    frames = [customers(1000, seed=i, start_id=10_000 * i) for i in range(2)]
    put_parquet(s3, s3_bucket, "in/day=1/a.parquet", frames[0])
    put_parquet(s3, s3_bucket, "in/day=2/b.parquet", frames[1])
    put_parquet(s3, s3_bucket, "in/_tmp/ignored.parquet", customers(5, seed=9))
    spec = registry.spec(
        "churn",
        f"s3://{s3_bucket}/in",
        f"s3://{s3_bucket}/out/",
        shard={"index": 0, "count": 2},
        params={"scratch_dir": str(tmp_path)},
    )

    result = infer.run(spec, log=print)

    key = "out/part-00000-of-00002.parquet"
    assert result.outputs[0].uri == f"s3://{s3_bucket}/{key}"
    body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    written = pd.read_parquet(bytes_io.BytesIO(body))
    assert written["customer_id"].tolist() == frames[0]["customer_id"].tolist()
    assert result.outputs[0].bytes == len(body)
    assert [entry["uri"] for entry in result.inputs] == [f"s3://{s3_bucket}/in/day=1/a.parquet"]
    assert list(tmp_path.iterdir()) == [], "scratch files are removed"


def test_missing_output_bucket_is_detected_before_loading_the_model(registry, s3, s3_bucket):
    put_parquet(s3, s3_bucket, "in.parquet", customers(10))
    spec = registry.spec("no-such-model", f"s3://{s3_bucket}/in.parquet", "s3://no-such-bucket/out")

    with pytest.raises(JobInputError, match=r"^output bucket does not exist: s3://no-such-bucket/out$"):
        infer.run(spec, log=print)


def test_missing_s3_input_is_named(registry, s3, s3_bucket, tmp_path):
    spec = registry.spec("churn", f"s3://{s3_bucket}/nothing/here.parquet", tmp_path / "out")

    with pytest.raises(JobInputError, match=rf"^input not found: s3://{s3_bucket}/nothing/here.parquet$"):
        infer.run(spec, log=print)


def test_a_retry_aborts_the_incomplete_multipart_upload_an_earlier_try_left(
    registry, s3, s3_bucket, tmp_path
):
    put_parquet(s3, s3_bucket, "in/a.parquet", customers(800, seed=4))
    # What a try killed during its upload leaves: a multipart upload of its part key, never completed.
    key, other = "out/part-00000-of-00002.parquet", "out/part-00001-of-00002.parquet"
    for name in (key, other):
        upload = s3.create_multipart_upload(Bucket=s3_bucket, Key=name)
        s3.upload_part(
            Bucket=s3_bucket, Key=name, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024
        )
    # ... and its local copy in the scratch folder, named as the writer names it.
    tag = hashlib.sha256(f"s3://{s3_bucket}/{key}".encode()).hexdigest()[:12]
    (tmp_path / f".part-00000-of-00002.parquet.{tag}.0123456789abcdef.tmp").write_bytes(b"partial")
    spec = registry.spec(
        "churn",
        f"s3://{s3_bucket}/in",
        f"s3://{s3_bucket}/out",
        shard={"index": 0, "count": 2},
        params={"scratch_dir": str(tmp_path)},
    )

    infer.run(spec, log=print)

    pending = s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [upload["Key"] for upload in pending] == [other], "only this shard's own upload is aborted"
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket, Prefix="out/")["Contents"]] == [key]
    assert list(tmp_path.iterdir()) == [], "the earlier local copy is removed too"
