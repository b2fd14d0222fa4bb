"""Locations: URIs resolve to a scheme and a path, unsupported URIs are refused in one line."""

from __future__ import annotations

import os

import pytest

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError
from airflow_ai_provider.runtime.storage.locations import storage_error


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
    ("uri", "bucket", "key"),
    [("s3://bucket/some/key.parquet", "bucket", "some/key.parquet"), ("s3://bucket", "bucket", "")],
)
def test_an_s3_location_splits_into_bucket_and_key(uri, bucket, key):
    assert storage.parse_uri(uri).bucket_key == (bucket, key)


def test_a_store_that_does_not_answer_is_retryable_and_a_refusal_is_bad_input():
    unreachable = storage_error(OSError("curlCode: 7, Couldn't connect to server"), "s3://b/k", "cannot read")
    refused = storage_error(OSError("AWS Error ACCESS_DENIED"), "s3://b/k", "cannot read input")

    assert isinstance(unreachable, JobServiceError) and str(unreachable).startswith(
        "s3://b/k: object storage"
    )
    assert isinstance(refused, JobInputError)
    assert str(refused) == "cannot read input: s3://b/k (AWS Error ACCESS_DENIED)"
