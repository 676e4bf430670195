"""The outbox to DigiMelding: send each stored `AnnotatieToevoegen`, retry, record the outcome.

The API commits a terugmelding and its request before answering 201 and then wakes this loop;
nothing is sent from the request itself, so a registry that is down only delays. The loop claims
due requests with a lease (two instances never send one request at once; a request whose
holder died is taken over when the lease ends), sends them concurrently, and records each
outcome, which only counts while the lease is still ours.

Faults: `DK0002` (not authorised), `DK0004` (not schema-valid), a `Client.` fault and HTTP
rejections are final: the transport status becomes `mislukt`. `DK0051` (time-out), a `Server.`
fault (`DK0050`) and transport errors are retried on the `RetryPolicy` schedule until it gives
up (then `mislukt` too). The decision is the client's (`DigimeldingError.retryable`,
`wus/dmks_faults.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

import structlog

from digibridge.clock import Clock, SystemClock
from digibridge.delivery.digimelding_clients import DmksClient
from digibridge.delivery.retry import RetryPolicy
from digibridge.events.terugmeldingen import transport_changed
from digibridge.mapping.reverse_types import AnnotatieToevoegen
from digibridge.store.types import (
    DmksOutcome,
    DmksOutcomeKind,
    DmksRequest,
    Store,
    SubscriptionMatcher,
)
from digibridge.wus.digimelding import DigimeldingError, DigimeldingFault

logger = structlog.get_logger("digibridge.terugmeldingen")

#: After the store itself failed, look again after this many seconds.
_STORE_ERROR_PAUSE = 1.0
#: History code of a failure without a DMKS fault code.
TRANSPORT = "transport"


class DmksOutbox:
    """Sends the store's pending DMKS requests; one per process (leases make more safe)."""

    def __init__(
        self,
        store: Store,
        clients: Mapping[str, DmksClient],
        *,
        policy: RetryPolicy,
        matcher: Callable[[str], SubscriptionMatcher],
        clock: Clock | None = None,
        owner: str | None = None,
        concurrency: int = 4,
        lease: timedelta = timedelta(minutes=10),
        idle_poll: float = 5.0,
    ) -> None:
        self._store = store
        self._clients = clients
        self._policy = policy
        #: Who may receive the events of a terugmelding, by its owner.
        self._matcher = matcher
        self._clock: Clock = clock or SystemClock()
        self.owner = owner or f"outbox-{uuid.uuid4()}"
        self._concurrency = concurrency
        self._lease = lease
        self._idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._stopping = False
        #: Called after outcomes were stored (new events: the dispatcher may have work).
        self.on_stored: Callable[[], None] = lambda: None
        #: Told each recorded transport status (`verzonden`, `mislukt`), for the metrics.
        self.on_status: Callable[[str, str], None] = lambda kind, status: None

    def wake(self) -> None:
        """A request was queued: look now."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Send until `stop()`; store failures are logged and retried, never fatal."""
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self.send_due()
            except Exception:
                logger.exception("dmks_outbox_store_error", owner=self.owner)
                delay = _STORE_ERROR_PAUSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def send_due(self) -> float:
        """Send what is due now (one claim's worth); the seconds to wait before looking again."""
        now = self._clock.now()
        claimed = await self._store.claim_dmks_requests(
            now=now, limit=self._concurrency, lease_until=now + self._lease, owner=self.owner
        )
        if claimed:
            await asyncio.gather(*(self._send(request) for request in claimed))
            self.on_stored()
            if len(claimed) == self._concurrency:
                return 0.0
        due = await self._store.next_dmks_due_at()
        if due is None:
            return self._idle_poll
        wait = (due - self._clock.now()).total_seconds()
        return min(max(wait, 0.0), self._idle_poll)

    async def _send(self, request: DmksRequest) -> None:
        log = logger.bind(
            terugmelding_id=request.terugmelding_id,
            request_id=request.id,
            kind=request.kind.value,
            registratie=request.registratie,
            attempt=request.attempts + 1,
        )
        outcome = await self._attempt(request)
        if outcome.kind is DmksOutcomeKind.SENT:
            log.info("dmks_request_sent", annotatie_uuid=outcome.annotatie_uuid)
        elif outcome.kind is DmksOutcomeKind.RETRY:
            log.warning("dmks_request_retry", code=outcome.code, error=outcome.error)
        else:
            log.warning("dmks_request_failed", code=outcome.code, error=outcome.error)
        record = await self._store.get_terugmelding(request.terugmelding_id)
        matcher = self._matcher(record.owner if record is not None else "")
        recorded = await self._store.complete_dmks_request(
            request, outcome, transport_changed, matcher
        )
        if not recorded:
            log.warning("dmks_outcome_ignored", reason="lease taken over")
        elif outcome.kind is DmksOutcomeKind.SENT:
            self.on_status(TRANSPORT, "verzonden")
        elif outcome.kind is DmksOutcomeKind.FAILED:
            self.on_status(TRANSPORT, "mislukt")

    async def _attempt(self, request: DmksRequest) -> DmksOutcome:
        client = self._clients.get(request.registratie)
        if client is None:
            return self._failure(
                request,
                code="configuratie",
                error=f"no DigiMelding endpoint is configured for {request.registratie}",
                retryable=True,
            )
        annotatie = AnnotatieToevoegen(
            oin_basisregistratie=request.oin_basisregistratie,
            registratie=request.registratie,
            annotatieboom=request.annotatieboom,
            root_uuid=request.root_uuid,
            uuids=request.uuids,
        )
        try:
            receipt = await client.annotatie_toevoegen(annotatie)
        except DigimeldingFault as fault:
            text = fault.faultstring
            if fault.detail:
                text = f"{text}: {fault.detail}"
            return self._failure(request, code=fault.code, error=text, retryable=fault.retryable)
        except DigimeldingError as exc:
            return self._failure(request, code=TRANSPORT, error=str(exc), retryable=exc.retryable)
        return DmksOutcome(
            kind=DmksOutcomeKind.SENT,
            at=self._clock.now(),
            annotatie_uuid=receipt.annotatie_uuid,
            tijdstempel=receipt.tijdstempel,
        )

    def _failure(
        self, request: DmksRequest, *, code: str, error: str, retryable: bool
    ) -> DmksOutcome:
        now = self._clock.now()
        retry_at = (
            self._policy.next_attempt(request.attempts + 1, request.created_at, now)
            if retryable
            else None
        )
        if retry_at is None:
            if retryable:
                error = f"{error} (gave up after {request.attempts + 1} attempts)"
            return DmksOutcome(kind=DmksOutcomeKind.FAILED, at=now, code=code, error=error)
        return DmksOutcome(
            kind=DmksOutcomeKind.RETRY, at=now, retry_at=retry_at, code=code, error=error
        )
