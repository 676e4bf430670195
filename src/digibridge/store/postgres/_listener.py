"""`LISTEN/NOTIFY`: how one instance hears, within milliseconds, that another made work due.

Transactions that make deliveries due or store events (ingest, replay, retry, released leases,
terugmeldingen) run `pg_notify('digibridge_wake', <schema>)`; PostgreSQL delivers it at commit,
once per transaction. Each store keeps one dedicated connection listening on that channel and
calls its listeners (the dispatcher's and the feed's wake-ups) for notifications of its own
schema. Polling stays the fallback: a lost connection is reopened with a back-off, and until
then the dispatcher's `idle_poll` still finds the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import psycopg
import structlog

from digibridge.store.postgres._connection import Connection, named

CHANNEL = "digibridge_wake"
#: Seconds between attempts to reopen a lost listening connection (doubling up to the cap).
_RETRY_FIRST, _RETRY_CAP = 0.2, 5.0

log = structlog.get_logger("digibridge.store")


async def notify_wake(c: Connection) -> None:
    """Tell every instance on this schema, at commit, that work may be due."""
    await c.execute("SELECT pg_notify(%s, current_schema())", (CHANNEL,))


class Listener:
    """Runs `LISTEN` on its own connection and calls `callbacks` on each notification."""

    def __init__(self, url: str, callbacks: list[Callable[[], None]]) -> None:
        self._url = url
        self._callbacks = callbacks
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self, *, timeout: float) -> None:
        """Start listening; returns once `LISTEN` is in place (or after `timeout`, polling)."""
        self._task = asyncio.create_task(self._run(), name="digibridge-pg-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=timeout)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as error:
                self._listening.clear()
                log.warning("store_listen_lost", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP)
            else:  # pragma: no cover - notifies() ends only when the connection does
                delay = _RETRY_FIRST

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(named(self._url), autocommit=True)
        async with connection:
            cursor = await connection.execute("SELECT current_schema()")
            row = await cursor.fetchone()
            schema = None if row is None else row[0]
            await connection.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            # Work made due while we were not listening is found by the first poll.
            self._wake()
            async for notification in connection.notifies():
                if notification.payload == schema:
                    self._wake()

    def _wake(self) -> None:
        for callback in self._callbacks:
            callback()
