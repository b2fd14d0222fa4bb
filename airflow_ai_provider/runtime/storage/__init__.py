"""Storage access for the runtime: locations, input discovery, sharding, streamed reads and atomic writes.

Inputs and outputs are ``file://`` URIs, plain local paths or ``s3://bucket/key`` URIs. S3 credentials
come from the standard AWS environment variables or the default credential chain; the endpoint from
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (MinIO, moto); the region from ``AWS_DEFAULT_REGION`` or
``AWS_REGION`` (default ``us-east-1``).

- :mod:`.locations`: URIs, filesystems, the S3 client, storage errors;
- :mod:`.inputs`: listing input files, their metadata, unreadable-file errors;
- :mod:`.units`: work units, shards, the input digest;
- :mod:`.reading`: streamed batches, column types across files, :class:`InputData`;
- :mod:`.sizing`: rows per batch from the input's metadata and a memory budget;
- :mod:`.part_writer`: :class:`PartWriter`, one Parquet part file published atomically;
- :mod:`.checks`: scratch folder and bucket checks, write errors;
- :mod:`.publish`: one small file (a report) published atomically.
"""

from __future__ import annotations

from airflow_ai_provider.runtime.storage.checks import check_bucket, check_scratch_dir
from airflow_ai_provider.runtime.storage.inputs import FileMeta, InputFile, list_inputs, read_metadata
from airflow_ai_provider.runtime.storage.locations import (
    Location,
    parse_uri,
    s3_client,
    s3_filesystem,
    storage_error,
)
from airflow_ai_provider.runtime.storage.part_writer import PartWriter
from airflow_ai_provider.runtime.storage.reading import (
    InputData,
    ReadAhead,
    cast_batch,
    column_types,
    iter_batches,
    missing_values,
    unify_types,
)
from airflow_ai_provider.runtime.storage.units import (
    Unit,
    file_sha256,
    input_digest,
    plan_units,
    shard_units,
)

__all__ = [
    "FileMeta",
    "InputData",
    "InputFile",
    "Location",
    "PartWriter",
    "ReadAhead",
    "Unit",
    "cast_batch",
    "check_bucket",
    "check_scratch_dir",
    "column_types",
    "file_sha256",
    "input_digest",
    "iter_batches",
    "list_inputs",
    "missing_values",
    "parse_uri",
    "plan_units",
    "read_metadata",
    "s3_client",
    "s3_filesystem",
    "shard_units",
    "storage_error",
    "unify_types",
]
