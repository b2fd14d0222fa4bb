"""Nothing left behind on S3 by the runtime command stopped with SIGTERM mid-upload: no incomplete
multipart upload, nothing published, no local copy (the S3 counterpart of
``tests/unit/runtime/test_leftovers.py``, against the moto server)."""

from __future__ import annotations

import signal

from tests._support.system import wait_for
from tests.unit.runtime.test_leftovers import PART, big_input, finish, read_result, start_cli


def test_sigterm_during_an_s3_upload_leaves_no_incomplete_upload_and_no_local_copy(
    registry, s3_server, s3_env, s3_bucket, tmp_path
):
    big_input(tmp_path, rows=2_000_000)  # tens of MB of predictions: a multipart upload
    key = f"out/{PART}"
    spec = registry.spec("churn", str(tmp_path / "in"), f"s3://{s3_bucket}/out")
    args = ["infer", "--spec-json", spec.to_json(), "--result-path", str(tmp_path / "result.json")]
    client = s3_server.client()
    process = start_cli(args, tmp_path, env=s3_env)

    def uploading() -> bool:
        assert process.poll() is None, f"the job ended before it was stopped: {process.communicate()}"
        return bool(client.list_multipart_uploads(Bucket=s3_bucket, Prefix=key).get("Uploads"))

    wait_for(uploading, timeout=120, what="the multipart upload to start")
    process.send_signal(signal.SIGTERM)
    code, _, err = finish(process, timeout=30)

    assert code == 128 + signal.SIGTERM, err
    assert read_result(tmp_path)["retryable"] is True
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "Contents" not in client.list_objects_v2(Bucket=s3_bucket, Prefix="out/"), "nothing published"
    assert list((tmp_path / "scratch").iterdir()) == [], "the local copy and the model copy are removed"
