"""The landing watcher on local folders, run for real with asyncio: settled files fire once, growing
files wait until they settle, temporary names never fire, a missing folder is waited for, a marker
completes a batch; and the trigger's arguments are checked and serialized as the triggerer needs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.triggers.landed_files import LandedFilesTrigger
from tests._support.trigger_events import landed_names, watch

FAST = {"poll_interval": 0.05, "settle_seconds": 0.4}


def _watch(landing: Path, scenario, **kwargs):
    """Run ``scenario(events)`` against a real trigger on ``landing``; return what it returns."""
    return watch(LandedFilesTrigger(landing=str(landing), **{**FAST, **kwargs}), scenario)


def test_a_settled_file_fires_one_event_naming_it_with_its_size(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "customers-0.parquet").write_bytes(b"x" * 100)

    async def scenario(events):
        return await events.next(10)

    payload = _watch(landing, scenario)
    assert payload["landing"] == f"file://{landing}"
    assert landed_names(payload) == ["customers-0.parquet"]
    assert payload["files"][0]["size"] == 100
    assert payload["marker"] is None


def test_a_file_still_being_written_fires_only_once_it_has_settled(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    path = landing / "customers-0.csv"
    written = {}

    async def writer():
        with path.open("w") as out:
            for row in range(30):  # 3 s of writing, a row every 0.1 s: never unchanged for 2 s meanwhile
                out.write(f"{row}\n")
                out.flush()
                await asyncio.sleep(0.1)
        written["at"] = time.monotonic()
        written["size"] = path.stat().st_size

    async def scenario(events):
        writing = asyncio.ensure_future(writer())
        payload = await events.next(15)
        fired = time.monotonic()
        await writing
        return fired, payload

    fired_by, payload = _watch(landing, scenario, settle_seconds=2.0)
    assert payload["files"][0]["size"] == written["size"]  # the whole file, not a part of it
    assert fired_by >= written["at"]


def test_temporary_and_hidden_names_never_fire_and_the_renamed_file_does(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("a.parquet.tmp", "a.parquet._COPYING_", "b.part", ".c.csv", "_SUCCESS", "notes.txt"):
        (landing / name).write_text("1\n")

    async def scenario(events):
        silent = await events.next(1.5)
        (landing / "a.parquet.tmp").rename(landing / "a.parquet")
        return silent, await events.next(10)

    silent, payload = _watch(landing, scenario)
    assert silent is None
    assert landed_names(payload) == ["a.parquet"]


def test_a_missing_landing_folder_is_waited_for_without_ending_the_trigger(tmp_path):
    landing = tmp_path / "not-yet" / "landing"

    async def scenario(events):
        silent = await events.next(1.0)
        assert not events.pending.done()  # still polling: no crash, no event
        landing.mkdir(parents=True)
        (landing / "a.csv").write_text("1\n")
        return silent, await events.next(10)

    silent, payload = _watch(landing, scenario)
    assert silent is None
    assert landed_names(payload) == ["a.csv"]


def test_announced_files_do_not_fire_again_and_the_next_batch_does(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("1\n")

    async def scenario(events):
        first = await events.next(10)
        again = await events.next(1.5)  # a.csv still there: the ingest run has not taken it yet
        (landing / "a.csv").unlink()
        (landing / "b.csv").write_text("2\n")
        return first, again, await events.next(10)

    first, again, second = _watch(landing, scenario)
    assert landed_names(first) == ["a.csv"]
    assert again is None
    assert landed_names(second) == ["b.csv"]


def test_more_files_than_max_files_fire_several_events(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for index in range(5):
        (landing / f"part-{index}.csv").write_text("1\n")

    async def scenario(events):
        return [await events.next(10), await events.next(5), await events.next(5)]

    payloads = _watch(landing, scenario, max_files=2)
    assert [landed_names(payload) for payload in payloads] == [
        ["part-0.csv", "part-1.csv"],
        ["part-2.csv", "part-3.csv"],
        ["part-4.csv"],
    ]


def test_with_a_marker_the_batch_fires_once_the_marker_is_there(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.csv").write_text("1\n")
    (landing / "b.csv").write_text("2\n")

    async def scenario(events):
        silent = await events.next(1.0)  # settled long ago, but no marker yet
        (landing / "_SUCCESS").write_text("")
        return silent, await events.next(10)

    silent, payload = _watch(landing, scenario, marker="_SUCCESS", settle_seconds=3600)
    assert silent is None
    assert landed_names(payload) == ["a.csv", "b.csv"]
    assert payload["marker"] == f"file://{landing}/_SUCCESS"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"landing": "gs://bucket/landing"}, "landing='gs://bucket/landing'"),
        ({"landing": "s3://"}, "landing='s3://'"),
        ({"landing": "/l", "poll_interval": 0}, "poll_interval=0"),
        ({"landing": "/l", "settle_seconds": -1}, "settle_seconds=-1"),
        ({"landing": "/l", "list_timeout": "soon"}, "list_timeout='soon'"),
        ({"landing": "/l", "marker": "a/_SUCCESS"}, "marker='a/_SUCCESS'"),
        ({"landing": "/l", "max_files": 0}, "max_files=0"),
    ],
)
def test_a_bad_argument_fails_at_dag_parse_in_one_line_naming_it(kwargs, named):
    with pytest.raises(AiProviderConfigError) as raised:
        LandedFilesTrigger(**kwargs)
    message = str(raised.value)
    assert named in message and "\n" not in message


def test_the_trigger_serializes_to_what_recreates_it_with_the_same_hash():
    from airflow.triggers.base import BaseEventTrigger

    trigger = LandedFilesTrigger(
        landing="/data/landing", settle_seconds=5, marker="_SUCCESS", aws_conn_id="aws"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_ai_provider.triggers.landed_files.LandedFilesTrigger"
    assert kwargs["landing"] == "file:///data/landing"
    again = LandedFilesTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(*again.serialize()) == BaseEventTrigger.hash(classpath, kwargs)
