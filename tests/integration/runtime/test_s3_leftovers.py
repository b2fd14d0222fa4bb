"""Nothing left behind on S3 by the runtime command stopped with SIGTERM mid-upload: no incomplete
multipart upload, nothing published, no local copy (the S3 counterpart of
``tests/unit/runtime/test_leftovers.py``, against the moto server)."""

from __future__ import annotations

import signal

from tests._support.http_proxy import Rule, http_proxy
from tests.unit.runtime.test_leftovers import PART, big_input, finish, read_result, start_cli


def test_sigterm_during_an_s3_upload_leaves_no_incomplete_upload_and_no_local_copy(
    registry, s3_server, s3_env, s3_bucket, tmp_path
):
    big_input(tmp_path, rows=2_000_000)  # tens of MB of predictions: a multipart upload
    key = f"out/{PART}"
    spec = registry.spec("churn", str(tmp_path / "in"), f"s3://{s3_bucket}/out")
    args = ["infer", "--spec-json", spec.to_json(), "--result-path", str(tmp_path / "result.json")]
    client = s3_server.client()
    # The first part's upload is held at a loopback proxy in front of moto, so the signal always lands
    # while the multipart upload is incomplete (never just after it completed).
    first_part = Rule("PUT", key, "hold", seconds=60)
    with http_proxy(s3_server.endpoint_url, [first_part]) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        env.pop("AWS_ENDPOINT_URL_S3", None)
        process = start_cli(args, tmp_path, env=env)
        try:
            assert first_part.arrived.wait(120), f"no part upload started: {process.poll()}"
            assert client.list_multipart_uploads(Bucket=s3_bucket, Prefix=key).get("Uploads")
            process.send_signal(signal.SIGTERM)
            code, _, err = finish(process, timeout=30)
        finally:
            first_part.release()
            if process.poll() is None:
                process.kill()

    assert code == 128 + signal.SIGTERM, err
    assert read_result(tmp_path)["retryable"] is True
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "Contents" not in client.list_objects_v2(Bucket=s3_bucket, Prefix="out/"), "nothing published"
    assert list((tmp_path / "scratch").iterdir()) == [], "the local copy and the model copy are removed"
