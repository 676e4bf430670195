"""The status poller: asks each registry (`Statusoverzicht`) how our open terugmeldingen stand.

Per registry, every `interval` seconds, it asks after the reports that were sent and are not in
an end state (Ingetrokken, Onvoldoende informatie, Afgehandeld), by their root uuids. A status
that differs from the stored one is recorded with the registry's time, a history line and a
`status-gewijzigd` event. A change the DMKS lifecycle does not allow (STANDARDS.md §3) is
recorded all the same, flagged `unexpected` and logged (`dmks_transition_unexpected`): the
registry is the authority, digibridge only reports. A failed poll doubles that registry's wait,
up to `max_backoff`; a good one resets it. Recording is compare-and-set on the previous status,
so two instances polling at once record a change once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import structlog

from digibridge.clock import Clock, SystemClock
from digibridge.delivery.digimelding_clients import DmksClient
from digibridge.events.terugmeldingen import status_changed
from digibridge.mapping.dmks import END_STATES, STATUSES, transition_allowed
from digibridge.mapping.reverse_types import StatusEntry
from digibridge.metrics import DMKS
from digibridge.store.types import (
    DmksStatusChange,
    OpenTerugmelding,
    Store,
    SubscriptionMatcher,
)
from digibridge.wus.digimelding import DigimeldingError

logger = structlog.get_logger("digibridge.terugmeldingen")

#: Root uuids asked after in one `Statusoverzicht` call.
BATCH = 100


class StatusPoller:
    """Polls every registry with a client on its own schedule; `poll(registry)` is one round."""

    def __init__(
        self,
        store: Store,
        clients: Mapping[str, DmksClient],
        *,
        interval: float,
        max_backoff: float,
        matcher: Callable[[str], SubscriptionMatcher],
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._clients = clients
        self._interval = interval
        self._max_backoff = max(max_backoff, interval)
        self._matcher = matcher
        self._clock: Clock = clock or SystemClock()
        self._stopping = asyncio.Event()
        #: Failed polls in a row, per registry.
        self.failures: dict[str, int] = defaultdict(int)
        #: Called after changes were stored (new events: the dispatcher may have work).
        self.on_stored: Callable[[], None] = lambda: None
        #: Told each recorded DMKS status, for the metrics.
        self.on_status: Callable[[str, str], None] = lambda kind, status: None

    async def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Poll every registry until `stop()`, each on its own schedule."""
        await asyncio.gather(*(self._run_registry(name) for name in self._clients))

    async def _run_registry(self, registry: str) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll(registry)
                self.failures[registry] = 0
            except DigimeldingError as exc:
                self.failures[registry] += 1
                logger.warning(
                    "dmks_poll_failed",
                    registratie=registry,
                    error=str(exc),
                    failures=self.failures[registry],
                )
            except Exception:
                self.failures[registry] += 1
                logger.exception("dmks_poll_error", registratie=registry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.next_wait(registry))

    def next_wait(self, registry: str) -> float:
        """Seconds until `registry` is polled again: the interval, doubled per failed poll in a
        row, at most `max_backoff`."""
        failures = self.failures[registry]
        if not failures:
            return self._interval
        backoff: float = self._interval * 2.0 ** min(failures, 30)
        return min(backoff, self._max_backoff)

    async def poll(self, registry: str) -> int:
        """Ask `registry` after its open terugmeldingen once; the number of changes recorded."""
        client = self._clients[registry]
        open_ones = [
            t
            for t in await self._store.open_terugmeldingen(end_states=END_STATES)
            if t.registratie == registry
        ]
        # One call per (registry OIN, reporting OIN): Statusoverzicht answers per melder.
        groups: dict[tuple[str, str], list[OpenTerugmelding]] = defaultdict(list)
        for terugmelding in open_ones:
            groups[terugmelding.oin_basisregistratie, terugmelding.oin_melder].append(terugmelding)
        changes = 0
        for (oin_basisregistratie, oin_melder), members in groups.items():
            for start in range(0, len(members), BATCH):
                batch = members[start : start + BATCH]
                entries = await client.statusoverzicht(
                    oin_basisregistratie,
                    oin_melder=oin_melder,
                    uuids=[t.root_uuid for t in batch],
                    registratie=registry,
                )
                changes += await self._record(batch, entries)
        if changes:
            self.on_stored()
        return changes

    async def _record(self, batch: Sequence[OpenTerugmelding], entries: list[StatusEntry]) -> int:
        by_uuid = {t.root_uuid: t for t in batch}
        changes = 0
        for entry in sorted(entries, key=lambda e: e.tijdstempel):
            terugmelding = by_uuid.get(entry.annotatie_uuid)
            if terugmelding is None or entry.status == terugmelding.dmks_status:
                continue
            if await self._change(terugmelding, entry):
                changes += 1
                by_uuid[entry.annotatie_uuid] = replace(terugmelding, dmks_status=entry.status)
        return changes

    async def _change(self, terugmelding: OpenTerugmelding, entry: StatusEntry) -> bool:
        record = await self._store.get_terugmelding(terugmelding.id)
        if record is None:  # pragma: no cover - terugmeldingen are not deleted
            return False
        previous = terugmelding.dmks_status
        unexpected = entry.status not in STATUSES or not transition_allowed(previous, entry.status)
        now = self._clock.now()
        log = logger.bind(
            terugmelding_id=terugmelding.id,
            registratie=terugmelding.registratie,
            previous=previous,
            status=entry.status,
        )
        if unexpected:
            log.warning("dmks_transition_unexpected", unexpected=True)
        event = status_changed(
            record,
            previous=previous,
            status=entry.status,
            registry_time=entry.tijdstempel,
            unexpected=unexpected,
            observed_at=now,
        )
        change = DmksStatusChange(
            terugmelding_id=terugmelding.id,
            previous=previous,
            status=entry.status,
            at=entry.tijdstempel,
            unexpected=unexpected,
            event=event,
        )
        recorded = await self._store.record_dmks_status(change, self._matcher(record.owner))
        if recorded:
            log.info("dmks_status_changed", unexpected=unexpected)
            self.on_status(DMKS, entry.status)
        return recorded
