"""Landed files on local folders: which names count, when a file has settled, what an event announces,
and taking a batch into a run's folder (manual runs, event runs, retries, markers)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from airflow_ai_provider.landing import (
    Settling,
    announced_files,
    event_payload,
    is_landed_name,
    take_landed,
)
from airflow_ai_provider.storage import StoredFile, data_uri, list_files


def test_only_visible_data_files_count_as_landed_names():
    landed = ["a.parquet", "B.CSV", "customers-00001.parquet"]
    not_landed = [
        "a.parquet.tmp",
        "a.parquet._COPYING_",
        "a.part",
        "a.csv.part",
        ".a.parquet",
        "_SUCCESS",
        "_temporary",
        "notes.txt",
        "a.parquet.crdownload",
    ]
    assert [name for name in landed + not_landed if is_landed_name(name)] == landed
    assert is_landed_name("s3://bucket/landing/a.csv")
    assert not is_landed_name("a.csv", suffixes=(".parquet",))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_file_settles_only_after_its_size_and_mtime_stay_unchanged_for_the_interval():
    clock = _Clock()
    settling = Settling(10.0, clock=clock)
    growing = StoredFile("file:///l/a.parquet", 100, 1.0)
    assert settling.observe([growing]) == []
    clock.now = 8.0
    grown = StoredFile("file:///l/a.parquet", 200, 9.0)  # still being written: the interval restarts
    assert settling.observe([grown]) == []
    clock.now = 17.0
    assert settling.observe([grown]) == []
    clock.now = 18.0
    assert settling.observe([grown]) == [grown]


def test_a_slow_listing_does_not_make_a_file_settle_sooner():
    settling = Settling(10.0)
    file = StoredFile("s3://b/l/a.parquet", 100, 1.0)
    assert settling.observe([file], listed=(0.0, 1.0)) == []
    # began 5 s after the first ended, answered a minute later: unchanged for 4 s only, as far as known
    assert settling.observe([file], listed=(5.0, 65.0)) == []
    assert settling.observe([file], listed=(11.0, 11.5)) == [file]


def test_an_announced_file_is_not_announced_again_until_it_leaves_and_lands_anew():
    clock = _Clock()
    settling = Settling(0.0, clock=clock)
    first = StoredFile("file:///l/a.parquet", 100, 1.0)
    assert settling.observe([first]) == [first]
    settling.announce([first])
    assert settling.observe([first]) == []
    assert settling.observe([]) == []  # taken by the ingest run
    again = StoredFile("file:///l/a.parquet", 100, 1.0)
    assert settling.observe([again]) == [again]


def test_announced_files_are_read_from_the_landing_events_of_the_run_only():
    landing = "s3://b/landing"
    a = StoredFile(f"{landing}/a.csv", 10, 1.5)
    b = StoredFile(f"{landing}/b.csv", 20, None)
    events = {
        "landing-asset": [
            SimpleNamespace(extra={"from_trigger": True, "payload": event_payload(landing, [a])}),
            SimpleNamespace(extra={"from_trigger": True, "payload": event_payload(landing, [b, a], b)}),
        ],
        "other-asset": [
            SimpleNamespace(extra={"payload": event_payload("s3://b/elsewhere", [StoredFile("x", 1, 1)])}),
            SimpleNamespace(extra={"row_count": 3}),
        ],
    }
    assert announced_files(events, landing) == {"files": [a, b], "markers": [b.uri]}
    assert announced_files({}, landing) is None
    assert announced_files(None, landing) is None
    assert announced_files({"other-asset": events["other-asset"]}, landing) is None


def _land(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("id\n1\n")


def test_a_manual_run_takes_every_landed_data_file_and_leaves_temporary_ones(tmp_path):
    landing, target = tmp_path / "landing", data_uri(str(tmp_path), "raw", "run-1")
    _land(landing, "a.csv", "b.parquet", "c.parquet.tmp", ".d.csv", "notes.txt")

    taken = take_landed(str(landing), target)

    assert [uri.rsplit("/", 1)[-1] for uri in taken] == ["a.csv", "b.parquet"]
    assert sorted(os.listdir(landing)) == [".d.csv", "c.parquet.tmp", "notes.txt"]
    assert sorted(os.listdir(tmp_path / "raw" / "run-1")) == ["a.csv", "b.parquet"]


def test_a_retry_finds_the_files_an_earlier_try_moved_and_takes_the_rest(tmp_path):
    landing, target = tmp_path / "landing", data_uri(str(tmp_path), "raw", "run-1")
    _land(landing, "a.csv", "b.csv")
    (tmp_path / "raw" / "run-1").mkdir(parents=True)
    (landing / "a.csv").rename(tmp_path / "raw" / "run-1" / "a.csv")  # the first try died after one move

    assert [uri.rsplit("/", 1)[-1] for uri in take_landed(str(landing), target)] == ["a.csv", "b.csv"]
    assert [uri.rsplit("/", 1)[-1] for uri in take_landed(str(landing), target)] == ["a.csv", "b.csv"]
    assert os.listdir(landing) == []


def test_an_event_run_takes_only_the_announced_files_that_are_still_there_unchanged(tmp_path):
    landing, target = tmp_path / "landing", data_uri(str(tmp_path), "raw", "run-2")
    _land(landing, "a.csv", "b.csv", "c.csv")
    listed = {file.uri.rsplit("/", 1)[-1]: file for file in list_files(str(landing))}
    announced = {"files": [listed["a.csv"], listed["b.csv"]], "markers": []}
    (landing / "b.csv").write_text("id\n1\n2\n3\n")  # re-landed under the same name since the event

    taken = take_landed(str(landing), target, announced=announced)

    assert [uri.rsplit("/", 1)[-1] for uri in taken] == ["a.csv"]
    assert sorted(os.listdir(landing)) == ["b.csv", "c.csv"]


def test_an_event_run_whose_files_another_run_took_takes_nothing(tmp_path):
    landing = tmp_path / "landing"
    _land(landing, "a.csv")
    announced = {"files": list_files(str(landing)), "markers": []}
    take_landed(str(landing), data_uri(str(tmp_path), "raw", "run-1"))  # another run took them

    assert take_landed(str(landing), data_uri(str(tmp_path), "raw", "run-2"), announced=announced) == []
    assert not (tmp_path / "raw" / "run-2").exists()


def test_the_marker_goes_with_its_batch_so_the_next_batch_needs_a_new_one(tmp_path):
    landing, target = tmp_path / "landing", data_uri(str(tmp_path), "raw", "run-1")
    _land(landing, "a.csv", "_SUCCESS")

    taken = take_landed(str(landing), target, marker="_SUCCESS")

    assert [uri.rsplit("/", 1)[-1] for uri in taken] == ["a.csv"]
    assert os.listdir(landing) == []
    assert sorted(os.listdir(tmp_path / "raw" / "run-1")) == ["_SUCCESS", "a.csv"]
