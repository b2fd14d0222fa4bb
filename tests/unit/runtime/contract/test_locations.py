"""The S3 settings both planes derive from environment variables, and the URI split they share."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.locations import (
    is_unreachable,
    join_uri,
    s3_filesystem_options,
    split_uri,
)
from airflow_ai_provider.runtime.contract.timeouts import ServiceBounds


def test_options_carry_endpoint_region_bounds_and_a_key_pair():
    environ = {
        "AWS_ENDPOINT_URL": "http://ignored:1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
    }
    options = s3_filesystem_options(environ, ServiceBounds(30))
    assert options["region"] == "eu-west-1"
    assert (options["scheme"], options["endpoint_override"]) == ("http", "127.0.0.1:9000")
    assert (options["connect_timeout"], options["request_timeout"]) == (5, 14)
    assert (options["access_key"], options["secret_key"], options["session_token"]) == (
        "key",
        "secret",
        "token",
    )


def test_options_without_a_key_pair_leave_credentials_to_the_default_chain():
    options = s3_filesystem_options({"AWS_ACCESS_KEY_ID": "key-alone"}, ServiceBounds(5))
    assert options["region"] == "us-east-1"
    assert not {"access_key", "secret_key", "session_token", "endpoint_override"} & set(options)
    hostname_only = s3_filesystem_options({"AWS_ENDPOINT_URL": "minio:9000"}, ServiceBounds(5))
    assert (hostname_only["scheme"], hostname_only["endpoint_override"]) == ("https", "minio:9000")


def test_the_runtime_filesystem_is_built_from_these_options(monkeypatch):
    from airflow_ai_provider.runtime.storage import locations

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    locations.s3_filesystem.cache_clear()
    try:
        assert locations.s3_filesystem().region == "eu-central-1"
        assert locations.s3_endpoint() == "http://127.0.0.1:9"
    finally:
        locations.s3_filesystem.cache_clear()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b/", ("s3", "bucket/a/b")),
        ("s3://bucket", ("s3", "bucket")),
        ("file:///tmp/x/", ("file", "/tmp/x")),
        ("/tmp/x", ("file", "/tmp/x")),
    ],
)
def test_split_and_join_round_trip(uri, expected):
    assert split_uri(uri) == expected
    assert split_uri(join_uri(*expected)) == expected


def test_a_bad_uri_is_bad_input():
    with pytest.raises(JobInputError, match="unsupported URI scheme 'gs'"):
        split_uri("gs://bucket/x")


def test_unreachable_is_told_apart_from_a_refused_request():
    refused = OSError("AWS Error ACCESS_DENIED during HeadObject operation: Access Denied")
    down = OSError("AWS Error NETWORK_CONNECTION during ListObjectsV2 operation: curlCode: 7")
    assert not is_unreachable(refused)
    assert is_unreachable(down)
    try:
        try:
            raise down
        except OSError as err:
            raise RuntimeError("listing failed") from err
    except RuntimeError as wrapped:
        assert is_unreachable(wrapped)
