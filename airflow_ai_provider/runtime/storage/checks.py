"""Writability: scratch folder and bucket checks before any work, the one line when a write fails."""

from __future__ import annotations

import os

from airflow_ai_provider.runtime import scratch
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.storage.locations import (
    Location,
    s3_client,
    s3_error_code,
    storage_unreachable,
)


def not_writable(what: str, where: str, reason: object) -> JobInputError:
    """``<what> location is not writable: <where> (<reason>)``, the one line for a refused write."""
    return JobInputError(f"{what} location is not writable: {where} ({reason})")


def write_error(err: OSError, what: str, where: str, written: str, remedy: str) -> JobInputError:
    """A local write that failed: a :class:`~.scratch.StorageFullError` naming ``written`` (with
    ``remedy``) when a disk or quota is full, else :func:`not_writable` naming ``where``."""
    full = scratch.storage_full(err, written, remedy)
    if full is not None:
        return full
    return not_writable(what, where, err.strerror or one_line(err))


def check_scratch_dir(path: str | None) -> None:
    """Fail before any work when ``scratch_dir`` is not a writable folder."""
    if path is None:
        return
    if not os.path.isdir(path):
        raise JobInputError(
            f"scratch_dir {path} does not exist or is not a folder: create it or pass another"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise JobInputError(f"scratch_dir {path} is not writable: pass a folder this job may write")


def check_bucket(folder: Location, what: str) -> None:
    """Fail before any work when the bucket of the S3 ``folder`` (the job's ``what``: ``output``,
    ``report``) does not exist or refuses access; an unreachable store is retryable."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _ = folder.bucket_key
    try:
        s3_client().head_bucket(Bucket=bucket)
    except ClientError as err:
        code = s3_error_code(err)
        if code in ("404", "NoSuchBucket"):
            raise JobInputError(f"{what} bucket does not exist: {folder.uri}") from None
        raise not_writable(what, folder.uri, code or err) from None
    except BotoCoreError as err:
        raise storage_unreachable(err, f"{what} {folder.uri}") from None
