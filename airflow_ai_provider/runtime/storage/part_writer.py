"""The part writer: record batches streamed into one Parquet part file, published atomically (local or S3)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime import log_line, scratch
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError, one_line
from airflow_ai_provider.runtime.contract.spec import OutputFile
from airflow_ai_provider.runtime.storage.checks import check_bucket, write_error
from airflow_ai_provider.runtime.storage.locations import (
    Location,
    parse_uri,
    s3_client,
    s3_error_code,
    storage_unreachable,
)
from airflow_ai_provider.runtime.storage.units import file_sha256

#: Seconds between two checks of a running upload, so that a stop signal is handled at once.
UPLOAD_WAIT_STEP_S = 0.2
#: Listing pages of incomplete multipart uploads read when a part is written again.
MAX_UPLOAD_PAGES = 10


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: not floats or integers (probabilities and ids are nearly all
    distinct, and trying a dictionary on them first cost 3x the write time), except ``prediction``."""
    numeric = (pa.types.is_floating, pa.types.is_integer)
    return [
        field.name
        for field in schema
        if field.name == "prediction" or not any(check(field.type) for check in numeric)
    ]


class PartWriter:
    """Streams record batches into one Parquet part file and publishes it atomically.

    The file is written to a temporary file first: next to the target for local output (a hidden
    ``.<part name>.<token>.tmp``, renamed with :func:`os.replace`), or in ``scratch_dir`` (default
    ``$TMPDIR``) for S3, uploaded with boto3 ``upload_file``, which completes a multipart upload or
    aborts it. Readers never see a partial file and a retry replaces the same name. Creating the
    writer checks that the output location is writable, before any expensive work, and removes what
    an earlier try of the same part left: its temporary files and, on S3, its incomplete multipart
    uploads. :meth:`discard` removes the temporary file; a full disk or quota is a
    :class:`~.scratch.StorageFullError` naming the location, with the temporary file removed.

    :param output_uri: the output folder (``file://``, a local path or ``s3://``).
    :param name: the part file's name in that folder.
    :param scratch_dir: where the local copy of an S3 part is written (default ``$TMPDIR``).
    :param metadata: key-value pairs stored in the file's Parquet metadata (readable from the footer
        alone); :attr:`metadata` may also be set before the first :meth:`write`.
    """

    def __init__(
        self,
        output_uri: str,
        name: str,
        scratch_dir: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.folder = parse_uri(output_uri)
        self.target = self.folder.child(name)
        self.rows = 0
        self.metadata = dict(metadata or {})
        self._writer: Any = None
        if self.folder.scheme == "s3":
            check_bucket(self.folder, "output")
            temp_dir = scratch_dir or tempfile.gettempdir()
            # The scratch folder may serve other outputs: the tag keeps this target's files apart.
            tag = hashlib.sha256(self.target.uri.encode()).hexdigest()[:12]
            self.where = f"scratch folder {temp_dir} (the local copy of {self.target.uri})"
            self.remedy = "free space there or set scratch_dir to a folder with room"
            self._abort_uploads()
        else:
            self.where = f"output {self.folder.uri}"
            self.remedy = "free space there or choose another output location"
            temp_dir, tag = self._ensure_local_folder(), ""
        try:
            self.temp_path = scratch.fresh_temp(temp_dir, name, tag)
        except OSError as err:
            raise self._write_error(err) from None

    def _ensure_local_folder(self) -> str:
        try:
            os.makedirs(self.folder.path, exist_ok=True)
        except OSError as err:
            raise self._write_error(err) from None
        return self.folder.path

    def _write_error(self, err: OSError) -> JobInputError:
        """Out of space, or else not writable: one line naming the location."""
        return write_error(err, "output", self.where.removeprefix("output "), self.where, self.remedy)

    def _abort_uploads(self) -> int:
        """Abort the incomplete multipart uploads of this part's key (left by a killed try).

        Bounded: at most ``MAX_UPLOAD_PAGES`` listings, each call under the client's timeouts. A store
        that refuses the listing (no ``s3:ListBucketMultipartUploads``) is skipped with a log line.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self.target.bucket_key
        client, aborted, page_args = s3_client(), 0, {}
        try:
            for _ in range(MAX_UPLOAD_PAGES):
                page = client.list_multipart_uploads(Bucket=bucket, Prefix=key, **page_args)
                for upload in page.get("Uploads", []):
                    if upload.get("Key") == key:
                        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                        aborted += 1
                if not page.get("IsTruncated"):
                    break
                page_args = {
                    "KeyMarker": page.get("NextKeyMarker", ""),
                    "UploadIdMarker": page.get("NextUploadIdMarker", ""),
                }
        except ClientError as err:
            code = s3_error_code(err)
            if code in ("AccessDenied", "NotImplemented", "MethodNotAllowed"):
                log_line(f"cannot list incomplete uploads of {self.target.uri} ({code}): not cleaned")
                return aborted
            raise JobServiceError(
                f"cannot abort earlier incomplete uploads of {self.target.uri}: {one_line(err)}"
            ) from None
        except BotoCoreError as err:
            raise storage_unreachable(err, f"output {self.folder.uri}") from None
        if aborted:
            log_line(f"aborted {aborted} incomplete upload(s) of {self.target.uri} left by an earlier try")
        return aborted

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch``; later batches are cast to the first batch's schema."""
        try:
            self._write(batch)
        except OSError as err:
            self.discard()
            raise self._write_error(err) from None

    def _write(self, batch: pa.RecordBatch) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            schema = batch.schema.with_metadata({**(batch.schema.metadata or {}), **self.metadata})
            self._writer = pq.ParquetWriter(
                self.temp_path, schema, use_dictionary=_dictionary_columns(batch.schema)
            )
        if batch.schema != self._writer.schema:
            try:
                table = pa.Table.from_batches([batch]).cast(self._writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
                raise JobInputError(
                    f"model output types changed between batches: {batch.schema} vs {self._writer.schema} "
                    f"({one_line(err)})"
                ) from None
            self._writer.write_table(table)
        else:
            self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def publish(self) -> OutputFile | None:
        """Close the file and move it into place; ``None`` (and nothing published) when no row was written."""
        if self._writer is None:
            self.discard()
            return None
        try:
            self._writer.close()
            self._writer = None
        except OSError as err:
            self.discard()
            raise self._write_error(err) from None
        return self.publish_file(self.rows)

    def publish_file(self, rows: int) -> OutputFile:
        """Move :attr:`temp_path` into place as :meth:`publish` does, when another writer filled it
        (a file that is not Parquet, e.g. a vector index); ``rows`` is what its entry reports."""
        try:
            size = os.path.getsize(self.temp_path)
            sha256 = file_sha256(Location("file", self.temp_path))
            if self.target.scheme == "file":
                os.replace(self.temp_path, self.target.path)
        except OSError as err:
            self.discard()
            raise self._write_error(err) from None
        if self.target.scheme == "s3":
            self._upload()
        return OutputFile(uri=self.target.uri, rows=rows, bytes=size, sha256=sha256)

    def _upload(self) -> None:
        """Upload the local copy. The transfer runs in a thread that this one waits for in short,
        interruptible steps: stopped mid-upload (SIGTERM), the multipart upload is aborted at once,
        without waiting for parts still in flight (boto3 would wait for them, past the stop deadline)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self.target.bucket_key
        failure: list[BaseException] = []

        def send() -> None:
            try:
                s3_client().upload_file(self.temp_path, bucket, key)
            except BaseException as err:  # handed to the waiting thread
                failure.append(err)

        sender = threading.Thread(target=send, name="part-upload", daemon=True)
        try:
            sender.start()
            while sender.is_alive():
                sender.join(UPLOAD_WAIT_STEP_S)
            if failure:
                raise failure[0]
        except (BotoCoreError, ClientError, S3UploadFailedError) as err:
            raise JobServiceError(f"upload of {self.target.uri} failed: {one_line(err)}") from None
        except BaseException:
            # Stopped mid-upload: the transfer thread may still be sending parts.
            with contextlib.suppress(Exception):
                self._abort_uploads()
            raise
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the temporary file; nothing is published."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # best effort on a failure path
                self._writer.close()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.temp_path)
