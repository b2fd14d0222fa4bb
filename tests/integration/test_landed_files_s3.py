"""The landing watcher and the landed-batch move on S3: a real moto server reached through an Airflow
AWS connection, run for real with asyncio; an unreachable or hung endpoint is logged and retried at
the next poll, in bounded time, without ending the trigger."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from airflow_ai_provider.landing import announced_files, take_landed
from airflow_ai_provider.triggers.landed_files import LandedFilesTrigger
from tests._support.servers import S3Server
from tests._support.trigger_events import landed_names, watch

#: ``[ai_provider] service_timeout`` of the bounded-time tests.
TIMEOUT = 3


def _put(s3_server: S3Server, bucket: str, key: str, body: bytes = b"data") -> None:
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=body)


def _keys(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    # pyarrow keeps an emptied prefix as a "folder/" marker object: not a file
    return sorted(item["Key"] for item in listing.get("Contents", []) if not item["Key"].endswith("/"))


def test_objects_that_settled_under_the_landing_prefix_fire_through_the_aws_connection(
    aws_connection, s3_server, s3_bucket
):
    landing = f"s3://{s3_bucket}/landing/customers"
    for key in ("a.parquet", "b.csv", "c.parquet.tmp", ".d.csv", "_SUCCESS", "sub/e.csv"):
        _put(s3_server, s3_bucket, f"landing/customers/{key}", b"12345")
    trigger = LandedFilesTrigger(
        landing=landing, aws_conn_id=aws_connection, poll_interval=0.1, settle_seconds=0.5
    )

    async def scenario(events):
        first = await events.next(20)
        again = await events.next(1.5)
        _put(s3_server, s3_bucket, "landing/customers/f.csv", b"1")
        return first, again, await events.next(20)

    first, again, second = watch(trigger, scenario)
    assert first["landing"] == landing
    assert landed_names(first) == ["a.parquet", "b.csv"]
    assert [item["size"] for item in first["files"]] == [5, 5]
    assert again is None
    assert landed_names(second) == ["f.csv"]


def test_an_event_run_moves_the_announced_objects_into_the_run_prefix_and_a_retry_finds_them(
    aws_connection, s3_server, s3_bucket
):
    landing = f"s3://{s3_bucket}/landing/customers"
    _put(s3_server, s3_bucket, "landing/customers/a.csv", b"id\n1\n")
    _put(s3_server, s3_bucket, "landing/customers/b.csv", b"id\n2\n")
    trigger = LandedFilesTrigger(
        landing=landing, aws_conn_id=aws_connection, poll_interval=0.1, settle_seconds=0
    )
    payload = watch(trigger, lambda events: events.next(20))
    _put(s3_server, s3_bucket, "landing/customers/c.csv", b"id\n3\n")  # landed after the event
    event = type("Event", (), {"extra": {"from_trigger": True, "payload": payload}})()
    announced = announced_files({"landing": [event]}, landing)
    target = f"s3://{s3_bucket}/raw/customers/run-1"

    taken = take_landed(landing, target, announced=announced, aws_conn_id=aws_connection)
    retried = take_landed(landing, target, announced=announced, aws_conn_id=aws_connection)

    assert taken == retried == [f"{target}/a.csv", f"{target}/b.csv"]
    assert _keys(s3_server, s3_bucket) == [
        "landing/customers/c.csv",
        "raw/customers/run-1/a.csv",
        "raw/customers/run-1/b.csv",
    ]


# --- storage that does not answer: logged, retried at the next poll, the trigger goes on --------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts TCP connections and never answers (a hung S3)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def s3_at(monkeypatch):
    """Point the worker's own AWS environment at ``endpoint``, with ``service_timeout`` lowered."""

    def point(endpoint: str) -> None:
        monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", str(TIMEOUT))
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "trigger-test-secret-key",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)

    return point


def test_an_unreachable_endpoint_is_logged_at_each_poll_and_the_trigger_keeps_polling(s3_at, capfd):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    s3_at(endpoint)
    trigger = LandedFilesTrigger(landing="s3://some-bucket/landing", poll_interval=0.2, list_timeout=30)

    async def scenario(events):
        silent = await events.next(4 * TIMEOUT)
        return silent, events.pending.done()

    silent, ended = watch(trigger, scenario)
    out = capfd.readouterr().out
    failures = [line for line in out.splitlines() if "s3://some-bucket/landing: cannot list" in line]
    assert silent is None and not ended  # no event, no crash: still polling
    assert len(failures) >= 2  # each listing failed within the bound, and the next poll tried again
    assert f"object storage at {endpoint} could not be reached" in failures[0]
    assert "trigger-test-secret-key" not in out


def test_a_hung_endpoint_is_waited_for_within_the_listing_bound_never_listed_twice_at_once(
    s3_at, silent_endpoint, capfd
):
    s3_at(silent_endpoint)
    trigger = LandedFilesTrigger(landing="s3://some-bucket/landing", poll_interval=0.1, list_timeout=0.5)

    async def scenario(events):
        silent = await events.next(2.5)
        return silent, events.pending.done()

    silent, ended = watch(trigger, scenario)
    lines = capfd.readouterr().out.splitlines()
    waits = [line for line in lines if "the listing did not answer within 0.5s" in line]
    assert silent is None and not ended
    assert len(waits) >= 3  # bounded: the trigger got control back every 0.5 s, and polled again
