"""A running event trigger's events, awaited for real with asyncio, without cancelling the trigger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger


class TriggerEvents:
    """The events of ``trigger.run()``: :meth:`next` waits for one without ever cancelling the
    trigger's generator (``asyncio.wait_for`` on ``__anext__`` would close it at its first timeout)."""

    def __init__(self, trigger: BaseTrigger) -> None:
        self._events: AsyncIterator = trigger.run()
        self.pending: asyncio.Future = asyncio.ensure_future(self._events.__anext__())  # runs from now

    async def next(self, timeout: float) -> Any:
        """The next event's payload, or ``None`` if the trigger fires none within ``timeout`` seconds."""
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            return None
        payload = self.pending.result().payload
        self.pending = asyncio.ensure_future(self._events.__anext__())
        return payload

    async def close(self) -> None:
        """Stop the trigger, as the triggerer does when it no longer needs it."""
        self.pending.cancel()
        await asyncio.gather(self.pending, return_exceptions=True)


def watch(trigger: BaseTrigger, scenario: Callable[[TriggerEvents], Awaitable[Any]]) -> Any:
    """Run ``trigger`` in a fresh event loop while ``scenario(events)`` runs; return its result."""

    async def main() -> Any:
        events = TriggerEvents(trigger)
        try:
            return await scenario(events)
        finally:
            await events.close()

    return asyncio.run(main())


def landed_names(payload: dict) -> list[str]:
    """The file names a landing event's payload announces (``LandedFilesTrigger``)."""
    return [item["uri"].rsplit("/", 1)[-1] for item in payload["files"]]
