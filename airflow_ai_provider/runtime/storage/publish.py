"""Publishing one small file (a report) into a folder atomically, after checking it can be written."""

from __future__ import annotations

import os

from airflow_ai_provider.runtime import scratch
from airflow_ai_provider.runtime.contract.errors import JobServiceError, one_line
from airflow_ai_provider.runtime.storage.checks import check_bucket, not_writable, write_error
from airflow_ai_provider.runtime.storage.locations import Location, s3_client


def check_writable(folder: Location) -> None:
    """Fail before validating when the report folder cannot be written."""
    if folder.scheme == "s3":
        check_bucket(folder, "report")
        return
    existing = folder.path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise not_writable("report", folder.uri, f"{existing} is not a writable folder")


def publish(folder: Location, name: str, payload: bytes, content_type: str) -> str:
    """Write one report file atomically (temporary file + rename locally, one PUT on S3)."""
    target = folder.child(name)
    if folder.scheme == "s3":
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = target.bucket_key
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=payload, ContentType=content_type)
        except (BotoCoreError, ClientError) as err:
            raise JobServiceError(f"upload of report {target.uri} failed: {one_line(err)}") from None
        return target.uri
    try:
        scratch.write_atomic(target.path, payload)
    except OSError as err:
        raise write_error(
            err,
            "report",
            folder.uri,
            f"report {target.uri}",
            "free space there or choose another report location",
        ) from None
    return target.uri
