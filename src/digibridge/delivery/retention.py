"""Keeps the store bounded: deliveries that succeeded, and the events and messages no delivery
needs any more, are deleted once older than the retention time (default 30 days). Dead letters
and pending deliveries (and their events) stay until handled.

Deleting a message also ends its duplicate detection: a DigiLevering message re-sent after the
retention time is accepted as new.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from digibridge.clock import Clock, SystemClock
from digibridge.store.types import PurgeResult, Store

DEFAULT_RETENTION = timedelta(days=30)
log = structlog.get_logger("digibridge.retention")


class Janitor:
    """Runs `Store.purge` now and then."""

    def __init__(
        self,
        store: Store,
        *,
        keep: timedelta = DEFAULT_RETENTION,
        interval: float = 3600.0,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._keep = keep
        self._interval = interval
        self._clock: Clock = clock or SystemClock()
        self._stop = asyncio.Event()

    async def run_once(self) -> PurgeResult:
        result = await self._store.purge(delivered_before=self._clock.now() - self._keep)
        if result.deliveries or result.events or result.messages:
            log.info(
                "store_purged",
                deliveries=result.deliveries,
                events=result.events,
                messages=result.messages,
            )
        return result

    async def run(self) -> None:
        """Purge at once, then every `interval` seconds until `stop()`; failures are logged."""
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("store_purge_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)

    def stop(self) -> None:
        self._stop.set()
