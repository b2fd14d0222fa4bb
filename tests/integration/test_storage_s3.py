"""The worker's object storage helper on S3: a real moto server, reached through the worker's AWS
environment or an Airflow AWS connection; unreachable and hung endpoints fail retryably in bounded
time."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider import storage
from airflow_ai_provider.exceptions import AiProviderConfigError, StorageUnavailableError
from tests._support.http_proxy import Rule, http_proxy
from tests._support.servers import S3Server, start_s3_server, stop_server

#: ``[ai_provider] service_timeout`` of the bounded-time tests.
TIMEOUT = 5
#: A generous bound: one try against a dead or hung endpoint (the budget is TIMEOUT).
BOUND = 6 * TIMEOUT


@pytest.fixture
def worker_s3(monkeypatch, s3_env, s3_bucket) -> str:
    """The worker's own AWS environment points at the moto server; returns the bucket."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    return s3_bucket


def _keys(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _put(s3_server: S3Server, bucket: str, key: str, body: bytes = b"data") -> None:
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=body)


def test_list_files_gives_the_prefixs_own_visible_files_with_a_suffix_sorted(worker_s3, s3_server):
    for key in (
        "landing/b.parquet",
        "landing/a.CSV",
        "landing/c.json",
        "landing/.x.tmp",
        "landing/sub/d.csv",
    ):
        _put(s3_server, worker_s3, key, b"123")

    listed = storage.list_files(f"s3://{worker_s3}/landing/", suffixes=(".parquet", ".csv"))

    assert [f.uri for f in listed] == [
        f"s3://{worker_s3}/landing/a.CSV",
        f"s3://{worker_s3}/landing/b.parquet",
    ]
    assert all(f.size == 3 and abs(f.modified - time.time()) < 600 for f in listed)
    assert len(storage.list_files(f"s3://{worker_s3}/landing")) == 3


def test_list_files_of_a_missing_prefix_is_empty(worker_s3):
    assert storage.list_files(f"s3://{worker_s3}/nothing/here") == []


def test_move_copies_then_deletes_and_a_retry_after_it_completed_does_nothing(worker_s3, s3_server):
    _put(s3_server, worker_s3, "landing/a.csv", b"rows")
    source, target = f"s3://{worker_s3}/landing/a.csv", f"s3://{worker_s3}/raw/2026/a.csv"

    storage.move(source, target)
    storage.move(source, target)  # the retry of a try that moved, then died

    assert storage.read_bytes(target) == b"rows"
    assert storage.list_files(f"s3://{worker_s3}/landing") == []
    # The emptied prefix keeps its folder marker (zero bytes), as a local folder stays.
    assert _keys(s3_server, worker_s3) == ["landing/", "raw/2026/a.csv"]


def test_a_retried_move_after_a_copy_without_its_delete_deletes_the_source(worker_s3, s3_server):
    _put(s3_server, worker_s3, "landing/a.csv", b"rows")
    _put(s3_server, worker_s3, "raw/a.csv", b"rows")  # the earlier try copied, then died

    storage.move(f"s3://{worker_s3}/landing/a.csv", f"s3://{worker_s3}/raw/a.csv")

    assert [f.uri for f in storage.list_files(f"s3://{worker_s3}/raw")] == [f"s3://{worker_s3}/raw/a.csv"]
    assert storage.list_files(f"s3://{worker_s3}/landing") == []


def test_moving_a_key_that_is_nowhere_fails_once_in_one_line(worker_s3, s3_server):
    with pytest.raises(AirflowFailException) as caught:
        storage.move(f"s3://{worker_s3}/landing/a.csv", f"s3://{worker_s3}/raw/a.csv")
    assert str(caught.value).startswith(f"cannot move s3://{worker_s3}/landing/a.csv: no such file")
    assert _keys(s3_server, worker_s3) == []


def test_write_bytes_replaces_the_object_whole_and_read_bytes_reads_it(worker_s3, s3_server):
    uri = f"s3://{worker_s3}/predictions/run/review/low_confidence.parquet"
    storage.write_bytes(uri, b"first")
    payload = os.urandom(6 << 20)  # more than one upload part
    storage.write_bytes(uri, payload)

    assert storage.read_bytes(uri) == payload
    assert _keys(s3_server, worker_s3) == ["predictions/run/review/low_confidence.parquet"]


def test_reading_a_missing_key_or_writing_to_a_missing_bucket_fails_once_naming_it(worker_s3):
    with pytest.raises(AirflowFailException, match=rf"^cannot read s3://{worker_s3}/none.csv: no such file$"):
        storage.read_bytes(f"s3://{worker_s3}/none.csv")
    with pytest.raises(AiProviderConfigError) as caught:
        storage.write_bytes("s3://no-such-bucket-here/x.csv", b"x")
    assert str(caught.value).startswith("cannot write s3://no-such-bucket-here/x.csv: ")
    assert "NO_SUCH_BUCKET" in str(caught.value) and "\n" not in str(caught.value)


def test_a_parquet_file_is_read_with_pyarrow_through_the_helpers_filesystem(worker_s3):
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri = f"s3://{worker_s3}/predictions/part-00000-of-00001.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"customer_id": ["a", "b"], "confidence": [0.4, 0.9]}), sink)
    storage.write_bytes(uri, sink.getvalue().to_pybytes())

    with storage.filesystem(uri, what="cannot read predictions") as (fs, path):
        table = pq.read_table(path, filesystem=fs)
    assert table.column("confidence").to_pylist() == [0.4, 0.9]


def test_an_aws_connection_gives_the_worker_the_runtimes_s3_access(aws_connection, s3_server, s3_bucket):
    """The worker itself has no AWS credentials (the fixture removes them): only the connection reaches S3."""
    uri = f"s3://{s3_bucket}/landing/a.csv"
    storage.write_bytes(uri, b"x", aws_conn_id=aws_connection)

    assert [f.uri for f in storage.list_files(f"s3://{s3_bucket}/landing", aws_conn_id=aws_connection)] == [
        uri
    ]
    storage.move(uri, f"s3://{s3_bucket}/raw/a.csv", aws_conn_id=aws_connection)
    assert storage.read_bytes(f"s3://{s3_bucket}/raw/a.csv", aws_conn_id=aws_connection) == b"x"


def test_a_missing_aws_connection_fails_once_naming_it(airflow_db, s3_bucket):
    with pytest.raises(AiProviderConfigError, match="aws_conn_id 'aws_nowhere': no such Airflow connection"):
        storage.list_files(f"s3://{s3_bucket}/landing", aws_conn_id="aws_nowhere")


# --- storage that does not answer: retryable, bounded, named, no secret ----------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service_timeout(monkeypatch) -> int:
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", str(TIMEOUT))
    return TIMEOUT


CALLS = {
    "list": lambda uri: storage.list_files(uri),
    "read": lambda uri: storage.read_bytes(f"{uri}/a.csv"),
    "write": lambda uri: storage.write_bytes(f"{uri}/a.csv", b"x"),
    "move": lambda uri: storage.move(f"{uri}/a.csv", f"{uri}/b.csv"),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_an_unreachable_endpoint_fails_retryably_in_bounded_time_naming_it(
    call, monkeypatch, service_timeout
):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    secret = "unreachable-test-secret-key"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)

    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        CALLS[call]("s3://some-bucket/landing")
    elapsed = time.monotonic() - started

    assert not isinstance(caught.value, AirflowFailException)  # Airflow retries it
    message = str(caught.value)
    assert "s3://some-bucket/landing" in message
    assert f": object storage at {endpoint} could not be reached: " in message
    assert secret not in message and "\n" not in message
    assert elapsed < BOUND


@pytest.mark.parametrize("call", list(CALLS))
def test_a_throttled_or_unavailable_store_fails_retryably_naming_it(
    call, monkeypatch, service_timeout, s3_server, s3_bucket
):
    """A loopback proxy in front of the moto server answers every request 503, as S3 does when it
    throttles (SlowDown) or is unavailable: that is worth a retry, never bad input."""
    s3_server.client().put_object(Bucket=s3_bucket, Key="throttled/a.csv", Body=b"a\n1\n")
    rules = [
        Rule(method, "", "fail", status=503, times=10_000)
        for method in ("GET", "HEAD", "PUT", "POST", "DELETE")
    ]
    with http_proxy(s3_server.endpoint_url, rules) as proxy:
        for name, value in {**s3_server.env(), "AWS_ENDPOINT_URL": proxy.url}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        with pytest.raises(StorageUnavailableError) as caught:
            CALLS[call](f"s3://{s3_bucket}/throttled")

    assert not isinstance(caught.value, AirflowFailException)  # Airflow retries it
    assert f"s3://{s3_bucket}/throttled" in str(caught.value)
    assert f"object storage at {proxy.url}" in str(caught.value)
    assert proxy.seen  # the requests reached the proxy, which answered 503


@pytest.fixture(scope="module")
def hung_s3(tmp_path_factory) -> Iterator[S3Server]:
    """A dedicated moto server (never the session's) with one bucket; tests stop it with SIGSTOP."""
    server = start_s3_server(tmp_path_factory.mktemp("hung-moto-worker"))
    try:
        server.client().create_bucket(Bucket="hung-bucket")
        server.client().put_object(Bucket="hung-bucket", Key="landing/a.csv", Body=b"x")
        yield server
    finally:
        os.killpg(server.pgid, signal.SIGCONT)
        stop_server(server)


@contextlib.contextmanager
def _stopped(server: S3Server) -> Iterator[None]:
    """SIGSTOP the server's process group: the kernel still accepts connections, nothing answers."""
    os.killpg(server.pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.pgid, signal.SIGCONT)


def test_a_hung_endpoint_fails_within_the_service_timeout_and_the_retry_succeeds(
    hung_s3, monkeypatch, service_timeout
):
    for name, value in hung_s3.env().items():
        monkeypatch.setenv(name, value)

    started = time.monotonic()
    with _stopped(hung_s3), pytest.raises(StorageUnavailableError) as caught:
        storage.list_files("s3://hung-bucket/landing")
    elapsed = time.monotonic() - started

    assert f"object storage at {hung_s3.endpoint_url} did not answer within {TIMEOUT} s" in str(caught.value)
    assert elapsed < BOUND
    assert [f.uri for f in storage.list_files("s3://hung-bucket/landing")] == [
        "s3://hung-bucket/landing/a.csv"
    ]
