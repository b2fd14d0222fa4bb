"""Where data lives: URIs as locations, the local and S3 filesystems, the S3 client, storage errors."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from airflow_ai_provider.runtime.contract import locations as contract
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError, one_line
from airflow_ai_provider.runtime.contract.timeouts import failure_text, process_bounds


@dataclass(frozen=True)
class Location:
    """A URI resolved to a filesystem and a path inside it."""

    scheme: str
    path: str

    @property
    def uri(self) -> str:
        return contract.join_uri(self.scheme, self.path)

    @property
    def fs(self) -> pafs.FileSystem:
        return s3_filesystem() if self.scheme == "s3" else local_filesystem()

    @property
    def bucket_key(self) -> tuple[str, str]:
        """``(bucket, key)`` of an S3 location (the key is ``""`` for a bucket itself)."""
        bucket, _, key = self.path.partition("/")
        return bucket, key

    def child(self, name: str) -> Location:
        return Location(self.scheme, f"{self.path.rstrip('/')}/{name}")


def parse_uri(uri: str) -> Location:
    """Resolve ``file:///abs``, ``/abs``, ``relative`` or ``s3://bucket/key`` to a :class:`Location`."""
    return Location(*contract.split_uri(uri))


@functools.lru_cache(maxsize=1)
def local_filesystem() -> pafs.FileSystem:
    return pafs.LocalFileSystem()


def s3_endpoint() -> str | None:
    """The S3 endpoint URL from the environment, or ``None`` for AWS itself."""
    return contract.s3_endpoint(os.environ)


def s3_region() -> str:
    return contract.s3_region(os.environ)


@functools.lru_cache(maxsize=1)
def s3_filesystem() -> pafs.FileSystem:
    """A pyarrow S3 filesystem configured from the environment (credentials from it or the default chain),
    its timeouts and attempts within ``$AI_PROVIDER_SERVICE_TIMEOUT``."""
    return pafs.S3FileSystem(**contract.s3_filesystem_options(os.environ, process_bounds()))


@functools.lru_cache(maxsize=1)
def s3_client() -> Any:
    """A boto3 S3 client configured from the environment, its timeouts and attempts within
    ``$AI_PROVIDER_SERVICE_TIMEOUT``."""
    import boto3

    config = process_bounds().botocore_config()
    return boto3.client("s3", endpoint_url=s3_endpoint(), region_name=s3_region(), config=config)


def s3_error_code(err: Any) -> str:
    """The error code S3 answered a boto3 ``ClientError`` with (``""`` when it gave none)."""
    return str(err.response.get("Error", {}).get("Code", ""))


def storage_unreachable(err: BaseException, subject: str) -> JobServiceError:
    """The retryable error for object storage that refused, failed or did not answer in time."""
    wait = process_bounds().s3_worst_case
    return JobServiceError(f"{subject}: object storage ({s3_endpoint() or 'AWS'}) {failure_text(err, wait)}")


def storage_error(err: Exception, uri: str, what: str) -> Exception:
    """Map a pyarrow storage error to a one-line job error: unreachable service or bad input."""
    if contract.is_unreachable(err):
        return storage_unreachable(err, uri)
    return JobInputError(f"{what}: {uri} ({one_line(err)})")
