"""The inbound DigiLevering endpoint: WUS request in, acknowledgement or SOAP Fault out.

The one rule: the acknowledgement is sent only after the message, its events and their
deliveries are committed to the store. A sender that gets no acknowledgement retries; the retry
is recognised as a duplicate (by `wsa:MessageID` or the DigiLevering kenmerk) and acknowledged
again without new events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from lxml import etree

from digibridge.clock import Clock
from digibridge.events.filters import subscription_matches
from digibridge.events.records import to_new_event
from digibridge.events.types import CloudEvent
from digibridge.mapping.engine import MappingSet
from digibridge.mapping.types import MappingError, NoMatchingMapping
from digibridge.metrics import ACCEPTED, DUPLICATE, REFUSED, Metrics
from digibridge.store.types import InboundMessage, IngestResult, Store, StoreError
from digibridge.tracing import LocalSpans, Spans, TraceContext, new_trace, with_trace
from digibridge.wus.access import InboundSecurity
from digibridge.wus.addressing import new_message_id
from digibridge.wus.digilevering import build_acknowledgement, operation_for, parse_levering
from digibridge.wus.envelope import (
    SoapRequest,
    parse_request,
    response_envelope,
    version_from_content_type,
)
from digibridge.wus.faults import DkCode, SoapFault, SoapVersion, render_fault
from digibridge.wus.tls import NO_PEER, PeerIdentity

log = structlog.get_logger("digibridge.wus")


@dataclass(frozen=True)
class SoapAnswer:
    status: int
    content_type: str
    body: bytes


@dataclass
class _Handling:
    """What is known of a request so far, for its metrics (filled in as parsing gets further)."""

    started: float = field(default_factory=time.perf_counter)
    registry: str | None = None


class DigileveringEndpoint:
    """Accepts DigiLevering messages over WUS and stores them durably before answering."""

    def __init__(
        self,
        *,
        store: Store,
        mappings: Callable[[], MappingSet],
        clock: Clock,
        on_stored: Callable[[], None],
        max_body_bytes: int,
        max_depth: int,
        security: InboundSecurity | None = None,
        metrics: Metrics | None = None,
        spans: Spans | None = None,
    ) -> None:
        self._store = store
        self._mappings = mappings
        self._clock = clock
        self._on_stored = on_stored
        self.max_body_bytes = max_body_bytes
        self._max_depth = max_depth
        self._security = security or InboundSecurity.off(clock)
        self.metrics = metrics or Metrics()
        self._spans: Spans = spans or LocalSpans()

    async def handle(
        self,
        data: bytes,
        *,
        content_type: str | None,
        soap_action: str | None,
        peer: PeerIdentity = NO_PEER,
        trace: TraceContext | None = None,
        started: float | None = None,
    ) -> SoapAnswer:
        """Process one request body; never raises for bad input, always answers.

        `peer` is the client certificate the request came with (mutual TLS), if any; `trace`
        its `traceparent` (a new trace when None); `started` when reading it began
        (`time.perf_counter`), for the latency metric.
        """
        version = version_from_content_type(content_type)
        trace = trace or new_trace()
        handling = _Handling() if started is None else _Handling(started)
        # Every line logged for this request carries its trace and, once known, its MessageID.
        tokens = dict(structlog.contextvars.bind_contextvars(trace_id=trace.trace_id))
        try:
            request = parse_request(
                data,
                content_type=content_type,
                soap_action=soap_action,
                max_depth=self._max_depth,
                ws_security=self._security.ws_security_enabled,
            )
            version = request.version
            tokens.update(
                structlog.contextvars.bind_contextvars(message_id=request.addressing.message_id)
            )
            return await self._accept(
                request.version, request, data, peer, trace=trace, handling=handling
            )
        except SoapFault as fault:
            log.warning(
                "soap_refused",
                code=fault.code.value,
                reason=fault.reason,
                element=fault.element,
            )
            self.refused(fault, handling.started, handling.registry)
            return fault_answer(fault, version)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _store_events(
        self, message: InboundMessage, events: list[CloudEvent], trace: TraceContext
    ) -> IngestResult:
        """Commit the message and its events, as one hop of the trace. The events name that hop
        as their parent; they are stored only when the message is new, so a re-sent message (a
        duplicate, perhaps in another trace) never changes them."""
        attributes = {
            "messaging.message.id": message.message_id,
            "digibridge.registry": message.basisregistratie,
        }
        with self._spans.span("digilevering.ingest", trace, attributes) as hop:
            try:
                return await self._store.ingest(
                    message,
                    [to_new_event(with_trace(event, hop)) for event in events],
                    subscription_matches,
                )
            except StoreError as exc:
                log.error("store_unavailable", error=str(exc))
                raise SoapFault(
                    DkCode.SERVICE_UNAVAILABLE,
                    "the message could not be stored; nothing was accepted, please retry later",
                    client=False,
                ) from None

    def refused(self, fault: SoapFault, started: float, registry: str | None = None) -> None:
        """Count a request answered with `fault`."""
        self.metrics.inbound_message(
            registry=registry,
            result=REFUSED,
            seconds=time.perf_counter() - started,
            fault_code=fault.code.value,
        )

    async def _accept(
        self,
        version: SoapVersion,
        request: SoapRequest,
        data: bytes,
        peer: PeerIdentity,
        *,
        trace: TraceContext,
        handling: _Handling,
    ) -> SoapAnswer:
        addressing = request.addressing
        operation = operation_for(request.body_child)
        if addressing.action != operation.action:
            raise SoapFault(
                DkCode.WRONG_HEADER_VALUE,
                f"wsa:Action {addressing.action!r} does not fit a {operation.name} body "
                f"(expected {operation.action!r})",
            )
        levering = parse_levering(request.body_child)
        handling.registry = levering.basisregistratie
        sender = self._security.check(request, levering.basisregistratie, peer)
        received_at = self._clock.now()
        try:
            events = self._mappings().map(levering)
        except NoMatchingMapping as exc:
            raise SoapFault(
                DkCode.PROCESSING_ERROR,
                f"no mapping for this message: {exc.message}",
                client=False,
                element="gebeurtenissoort",
            ) from None
        except MappingError as exc:
            raise SoapFault(
                DkCode.PROCESSING_ERROR,
                f"the message could not be mapped: {exc.message}",
                client=False,
                element=etree.QName(levering.payload).localname,
            ) from None
        message = InboundMessage(
            message_id=addressing.message_id,
            kenmerk=levering.kenmerk,
            basisregistratie=levering.basisregistratie,
            gebeurtenissoort=levering.gebeurtenissoort,
            received_at=received_at,
            sender_oin=sender.oin,
            raw=data,
        )
        result = await self._store_events(message, events, trace)
        self.metrics.inbound_message(
            registry=levering.basisregistratie,
            result=DUPLICATE if result.duplicate else ACCEPTED,
            seconds=time.perf_counter() - handling.started,
        )
        if result.duplicate:
            log.info(
                "soap_duplicate",
                message_id=addressing.message_id,
                original_message_id=result.original_message_id,
                kenmerk=levering.kenmerk,
            )
        else:
            log.info(
                "soap_accepted",
                message_id=addressing.message_id,
                kenmerk=levering.kenmerk,
                basisregistratie=levering.basisregistratie,
                event_ids=list(result.event_ids),
                deliveries=result.deliveries_created,
            )
            self.metrics.events_stored(event.type for event in events)
            # New events: deliveries may be due, and feed streams are waiting even for events
            # nobody subscribed to.
            self._on_stored()
        acknowledgement = build_acknowledgement(
            levering,
            duplicate=result.duplicate,
            event_ids=result.event_ids,
            received_at=received_at,
        )
        body = response_envelope(
            version,
            acknowledgement,
            action=operation.response_action,
            relates_to=addressing.message_id,
            message_id=new_message_id(),
            secure=(lambda envelope: self._security.sign_answer(envelope, sender))
            if sender.signature is not None
            else None,
        )
        return SoapAnswer(200, version.content_type, body)


def fault_answer(fault: SoapFault, version: SoapVersion) -> SoapAnswer:
    return SoapAnswer(fault.http_status, version.content_type, render_fault(fault, version))
