"""The landing watcher: an event trigger that fires when data files have landed and settled in a folder.

Why an Asset watcher and not a deferrable sensor: in Airflow 3 an ``AssetWatcher`` runs its
:class:`~airflow.triggers.base.BaseEventTrigger` in the triggerer for as long as the DAG scheduled
on the Asset is active and unpaused (the DAG processor registers it when it parses the DAG file).
Each event the trigger yields becomes an Asset event, and the scheduler starts the DAG run; the
trigger keeps running. Nothing holds a worker slot, no DAG run exists while nothing has landed, and
no schedule decides how late a batch is noticed. A deferrable sensor on a schedule would start a
DAG run per tick that waits (or fails) when nothing came, and notice a batch only from the next
tick on.

The trigger lists the landing folder every ``poll_interval`` seconds, in a thread (the listing is
blocking storage I/O), each listing bounded by ``list_timeout``. A file is announced once, when it
has kept its size and modification time over ``settle_seconds`` (or, with ``marker``, when the
marker file is there), and temporary or hidden names are never announced
(:func:`airflow_ai_provider.landing.is_landed_name`). Storage errors, a missing folder or a missing
connection are logged and retried at the next poll: the trigger does not end, so the triggerer does
not restart it in a loop. A landing URI that cannot be parsed fails at DAG parse, in one line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, NamedTuple

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.landing import DATA_SUFFIXES, Settling, base_name, event_payload, is_landed_name
from airflow_ai_provider.runtime.contract.errors import clip, one_line
from airflow_ai_provider.storage import StoredFile, data_uri, list_files


class Listing(NamedTuple):
    """One listing of the landing folder, and when it began and ended (monotonic seconds)."""

    files: list[StoredFile]
    span: tuple[float, float]


def _positive(name: str, value: float, *, zero: bool = False) -> float:
    """``value`` as a float, or a one-line error naming the argument."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number >= 0 if zero else number > 0):
        bound = ">= 0" if zero else "> 0"
        raise AiProviderConfigError(
            f"LandedFilesTrigger {name}={value!r}: expected a number {bound} of seconds"
        )
    return number


class LandedFilesTrigger(BaseEventTrigger):
    """Fire an event each time data files have landed and settled in ``landing``.

    Use it in an ``AssetWatcher`` of the Asset a DAG is scheduled on. The event's payload (the Asset
    event's ``extra["payload"]``) names the folder, the files (URI, size, modification time) and the
    marker; :func:`airflow_ai_provider.landing.take_landed` takes exactly those files.

    :param landing: the landing folder: a local path, ``file://...`` or ``s3://bucket/prefix``.
    :param suffixes: data file suffixes to watch.
    :param settle_seconds: how long a file's size and modification time must stay the same before it
        counts as landed (ignored with ``marker``).
    :param poll_interval: seconds between two listings.
    :param marker: name of a file (e.g. ``_SUCCESS``) that upstream writes last: when set, the files
        in the folder count as landed once it is there.
    :param aws_conn_id: Airflow ``aws`` connection for ``s3://`` (resolved in the triggerer at each
        listing); ``None``: the triggerer's own AWS environment.
    :param list_timeout: bound of one listing, in seconds; a listing that takes longer is logged and
        awaited again at the next poll, never started twice.
    :param max_files: most files one event names; more files make more events.
    """

    def __init__(
        self,
        *,
        landing: str,
        suffixes: Iterable[str] = DATA_SUFFIXES,
        settle_seconds: float = 30.0,
        poll_interval: float = 15.0,
        marker: str | None = None,
        aws_conn_id: str | None = None,
        list_timeout: float = 60.0,
        max_files: int = 1000,
    ) -> None:
        super().__init__()
        try:
            self.landing = data_uri(landing)
        except AiProviderConfigError as err:
            raise AiProviderConfigError(f"LandedFilesTrigger landing={landing!r}: {err}") from None
        self.suffixes = [str(suffix) for suffix in suffixes]
        self.settle_seconds = _positive("settle_seconds", settle_seconds, zero=True)
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.list_timeout = _positive("list_timeout", list_timeout)
        if marker is not None and (not marker or "/" in marker):
            raise AiProviderConfigError(
                f"LandedFilesTrigger marker={marker!r}: expected a file name such as '_SUCCESS'"
            )
        self.marker = marker
        self.aws_conn_id = aws_conn_id or None
        if not isinstance(max_files, int) or max_files < 1:
            raise AiProviderConfigError(
                f"LandedFilesTrigger max_files={max_files!r}: expected an integer >= 1"
            )
        self.max_files = max_files

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "landing": self.landing,
                "suffixes": list(self.suffixes),
                "settle_seconds": self.settle_seconds,
                "poll_interval": self.poll_interval,
                "marker": self.marker,
                "aws_conn_id": self.aws_conn_id,
                "list_timeout": self.list_timeout,
                "max_files": self.max_files,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """List the folder every ``poll_interval`` seconds and yield one event per landed batch, forever."""
        settling = Settling(0.0 if self.marker else self.settle_seconds)
        pending: asyncio.Task | None = None
        self.log.info(
            "watching %s for %s files (poll every %ss, settle %ss, marker %s)",
            self.landing,
            "/".join(self.suffixes),
            self.poll_interval,
            self.settle_seconds,
            self.marker,
        )
        while True:
            listed, pending = await self._listing(pending)
            for payload in self._landed(listed, settling) if listed is not None else ():
                names = ", ".join(base_name(item["uri"]) for item in payload["files"])
                self.log.info("%s: %d file(s) landed: %s", self.landing, len(payload["files"]), clip(names))
                yield TriggerEvent(payload)
            await asyncio.sleep(self.poll_interval)

    async def _listing(self, pending: asyncio.Task | None) -> tuple[Listing | None, asyncio.Task | None]:
        """One bounded listing: ``(listing, None)``, or ``(None, task)`` while it has not answered."""
        task = pending or asyncio.ensure_future(asyncio.to_thread(self._list))
        done, _ = await asyncio.wait({task}, timeout=self.list_timeout)
        if not done:
            self.log.warning(
                "%s: the listing did not answer within %ss; waiting for it again at the next poll",
                self.landing,
                self.list_timeout,
            )
            return None, task
        try:
            return task.result(), None
        except Exception as error:
            self.log.warning(
                "%s: cannot list (%s); next try in %ss",
                self.landing,
                clip(one_line(error)),
                self.poll_interval,
            )
            return None, None

    def _list(self) -> Listing:
        """List the landing folder (blocking: runs in a thread), with when the listing began and ended."""
        began = time.monotonic()
        names = (self.marker,) if self.marker else ()
        files = list_files(self.landing, aws_conn_id=self.aws_conn_id, names=names)
        return Listing(files, (began, time.monotonic()))

    def _landed(self, listing: Listing, settling: Settling) -> list[dict]:
        """The payloads of the events this listing fires (none, or one per ``max_files`` files)."""
        files = listing.files
        data = [file for file in files if is_landed_name(file.uri, self.suffixes)]
        if self.marker:
            marker = next((file for file in files if base_name(file.uri) == self.marker), None)
            if marker is None or not settling.observe([marker], listed=listing.span):
                return []  # no marker, or one whose batch was announced already
            settling.announce([marker])
            landed = data
        else:
            marker = None
            landed = settling.observe(data, listed=listing.span)
            settling.announce(landed)
            if not landed:
                return []
        batches = [landed[start : start + self.max_files] for start in range(0, len(landed), self.max_files)]
        return [event_payload(self.landing, batch, marker) for batch in batches or [[]]]
