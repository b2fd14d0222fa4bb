"""Landed files: which names count as data, when a file has settled, and taking a batch into a run's folder.

Upstream systems write files into a landing folder (``file://`` or ``s3://``). A file counts as
*landed* once its name is a data file's (a ``.parquet`` or ``.csv`` suffix, not hidden, not a
temporary name) and, unless a marker file says the batch is complete, its size and modification
time have stayed the same for a settle interval. The watcher trigger
(:mod:`airflow_ai_provider.triggers.landed_files`) announces landed files in an Asset event; the
ingest task of the DAG run that event starts takes exactly those files with :func:`take_landed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from airflow_ai_provider.storage import StoredFile, data_uri, list_files, move

#: The suffixes of data files taken from a landing folder.
DATA_SUFFIXES = (".parquet", ".csv")
#: Names that writers use while a file is incomplete (Hadoop, Spark, browsers, rsync-style tools).
TEMPORARY_SUFFIXES = (".tmp", "._copying_", ".part", ".partial", ".crdownload", ".inprogress", ".filepart")
#: The key of a landing event's payload that names its landing folder.
PAYLOAD_LANDING = "landing"


def base_name(uri: str) -> str:
    """The last part of a file URI: ``s3://b/landing/a.csv`` -> ``a.csv``."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def is_landed_name(name: str, suffixes: Iterable[str] = DATA_SUFFIXES) -> bool:
    """Whether a file name is a data file's: a data suffix, not hidden (``.``/``_``), not temporary.

    ``a.parquet`` is one; ``a.parquet.tmp``, ``.a.csv``, ``_SUCCESS`` and ``a.part`` are not.
    """
    name = base_name(name)
    lower = name.lower()
    if not name or name.startswith((".", "_")) or lower.endswith(TEMPORARY_SUFFIXES):
        return False
    return lower.endswith(tuple(suffix.lower() for suffix in suffixes))


def _key(file: StoredFile) -> tuple[str, int, float | None]:
    return (file.uri, file.size, file.modified)


class Settling:
    """Which listed files have kept their size and modification time over ``settle_seconds``.

    Feed it every listing of the landing folder with :meth:`observe`; it returns the files that have
    settled and were not announced yet. A file whose size or modification time changed starts its
    settle interval again; a file that has left the folder is forgotten, so a new file of the same
    name is announced again once it settles.

    :param settle_seconds: how long a file must stay unchanged (0: settled when first seen).
    :param clock: seconds from a monotonic clock.
    """

    def __init__(self, settle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._since: dict[str, tuple[tuple[int, float | None], float]] = {}
        self._announced: set[tuple[str, int, float | None]] = set()

    def observe(
        self, files: Iterable[StoredFile], *, listed: tuple[float, float] | None = None
    ) -> list[StoredFile]:
        """Record one listing; return its settled files that were not announced yet.

        :param listed: when the listing began and ended (on ``clock``); default: now. A file's state
            counts as seen from the end of the listing that first saw it, and as unchanged up to
            the beginning of the latest one, so a slow listing never makes a file settle sooner.
        """
        began, ended = listed or (self._clock(), self._clock())
        by_uri = {file.uri: file for file in files}
        for uri in set(self._since) - set(by_uri):
            del self._since[uri]
        self._announced = {key for key in self._announced if key[0] in by_uri}
        settled = []
        for uri, file in sorted(by_uri.items()):
            state = (file.size, file.modified)
            seen = self._since.get(uri)
            if seen is None or seen[0] != state:
                self._since[uri] = seen = (state, ended)
            unchanged = self.settle_seconds == 0 or began - seen[1] >= self.settle_seconds
            if unchanged and _key(file) not in self._announced:
                settled.append(file)
        return settled

    def announce(self, files: Iterable[StoredFile]) -> None:
        """Mark files as announced: :meth:`observe` does not return them again while they stay unchanged."""
        self._announced.update(_key(file) for file in files)


def event_payload(landing: str, files: Iterable[StoredFile], marker: StoredFile | None = None) -> dict:
    """The payload of a landing event: the folder, its landed files and the marker that completed them."""
    return {
        PAYLOAD_LANDING: landing,
        "files": [{"uri": f.uri, "size": f.size, "modified": f.modified} for f in files],
        "marker": None if marker is None else marker.uri,
    }


def announced_files(triggering_asset_events: Mapping[Any, Iterable[Any]] | None, landing: str) -> dict | None:
    """What the landing events that started this DAG run announced for ``landing``.

    :param triggering_asset_events: the task context's ``triggering_asset_events``.
    :return: ``None`` when no landing event started the run (a manual run), else
        ``{"files": [StoredFile, ...], "markers": [uri, ...]}`` over all its landing events.
    """
    files: dict[str, StoredFile] = {}
    markers: list[str] = []
    found = False
    for events in (triggering_asset_events or {}).values():
        for event in events:
            payload = (getattr(event, "extra", None) or {}).get("payload")
            if not isinstance(payload, dict) or payload.get(PAYLOAD_LANDING) != landing:
                continue
            found = True
            for item in payload.get("files") or []:
                files[item["uri"]] = StoredFile(item["uri"], int(item["size"]), item.get("modified"))
            if payload.get("marker"):
                markers.append(payload["marker"])
    if not found:
        return None
    return {"files": [files[uri] for uri in sorted(files)], "markers": sorted(set(markers))}


def take_landed(
    landing: str,
    target: str,
    *,
    announced: dict | None = None,
    suffixes: Iterable[str] = DATA_SUFFIXES,
    marker: str | None = None,
    aws_conn_id: str | None = None,
) -> list[str]:
    """Move landed files from ``landing`` into the run's folder ``target``; return the data files there.

    A manual run (``announced`` is ``None``) takes every landed data file; a run a landing event
    started takes only the files the event announced that are still there, unchanged (size and
    modification time), so a file re-landed under the same name while it is being written stays for
    the next event. A marker file (``marker``, e.g. ``_SUCCESS``) present in ``landing`` is moved
    along, so the next batch needs a new one. A retry finds what an earlier try moved already in
    ``target`` and goes on; the return value lists every data file in ``target``.
    """
    suffixes = tuple(suffixes)
    listed = list_files(landing, aws_conn_id=aws_conn_id, names=(marker,) if marker else ())
    taken = [file for file in listed if is_landed_name(file.uri, suffixes)]
    markers = [file.uri for file in listed if marker and base_name(file.uri) == marker]
    if announced is not None:
        wanted = {_key(file) for file in announced["files"]}
        taken = [file for file in taken if _key(file) in wanted]
        markers = [uri for uri in markers if uri in announced["markers"]]
    for uri in [file.uri for file in taken] + markers:
        move(uri, data_uri(target, base_name(uri)), aws_conn_id=aws_conn_id)
    in_target = list_files(target, aws_conn_id=aws_conn_id)
    return [file.uri for file in in_target if is_landed_name(file.uri, suffixes)]
