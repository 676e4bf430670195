"""The reverse path's workers, built from configuration and run by the app's lifespan.

One place that turns settings into the reverse mappings, a DigiMelding client per configured
registry, the outbox and the status poller, so `app.py` only starts and stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from digibridge.clock import Clock
from digibridge.config import ConfigError, Settings
from digibridge.delivery.digimelding_clients import build_clients
from digibridge.delivery.dmks_outbox import DmksOutbox
from digibridge.delivery.dmks_poller import StatusPoller
from digibridge.delivery.retry import RetryPolicy
from digibridge.events.terugmeldingen import for_owner
from digibridge.mapping.reverse import ReverseMappings
from digibridge.mapping.types import MappingError
from digibridge.store.types import Store, process_owner

log = structlog.get_logger("digibridge.terugmeldingen")


@dataclass
class DmksWorkers:
    reverse: ReverseMappings
    outbox: DmksOutbox
    poller: StatusPoller
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, store: Store, *, release_leases: bool) -> None:
        """Start both loops. With `release_leases` (a SQLite file, this process's alone, so no
        live sender holds one) leases left by a killed process go back to the queue first; on a
        shared database they must stand: a live instance may hold them, a dead one's expire."""
        if release_leases:
            released = await store.release_dmks_leases()
            if released:
                log.info("dmks_leases_released", count=released)
        self._tasks = [
            asyncio.create_task(self.outbox.run(), name="digibridge-dmks-outbox"),
            asyncio.create_task(self.poller.run(), name="digibridge-dmks-poller"),
        ]

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop both loops, letting a send or poll in flight finish for up to `timeout` seconds;
        one cancelled after that is sent again after the next start (its lease is released)."""
        await self.outbox.stop()
        await self.poller.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


def dmks_workers(
    settings: Settings, store: Store, clock: Clock, on_stored: Callable[[], None]
) -> DmksWorkers:
    """The reverse mappings and workers `settings` ask for; ConfigError when unusable."""
    try:
        reverse = ReverseMappings.load(Path(settings.mappings))
    except MappingError as exc:
        raise ConfigError(f"terugmelding mappings: {exc}") from None
    clients = build_clients(settings, reverse, clock)
    if clients and settings.oin is None:
        raise ConfigError("oin: sending terugmeldingen (digimelding) needs the reporting OIN")
    try:
        policy = (
            RetryPolicy.parse(settings.digimelding_retry_schedule)
            if settings.digimelding_retry_schedule
            else RetryPolicy()
        )
    except ValueError as exc:
        raise ConfigError(f"digimelding_retry_schedule: {exc}") from None
    outbox = DmksOutbox(
        store,
        clients,
        policy=policy,
        matcher=for_owner,
        clock=clock,
        owner=process_owner(),
    )
    poller = StatusPoller(
        store,
        clients,
        interval=settings.digimelding_poll_interval,
        max_backoff=settings.digimelding_poll_max_backoff,
        matcher=for_owner,
        clock=clock,
    )
    outbox.on_stored = on_stored
    poller.on_stored = on_stored
    return DmksWorkers(reverse, outbox, poller)
