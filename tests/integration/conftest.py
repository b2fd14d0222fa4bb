"""Fixtures shared by the integration tests of templates deployed on S3."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest


@pytest.fixture
def s3_root(aws_connection, mlflow_connection, s3_server) -> Iterator[str]:
    """The S3 data root the adapted templates of ``tests/dags/adapted_template_dags.py`` fix, its
    bucket created empty and removed afterwards; the worker itself has no AWS credentials
    (``aws_connection`` removes them)."""
    from tests.dags.adapted_template_dags import S3_DATA_ROOT

    client = s3_server.client()
    bucket = urlsplit(S3_DATA_ROOT).netloc
    client.create_bucket(Bucket=bucket)
    try:
        yield S3_DATA_ROOT
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
